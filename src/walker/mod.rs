//! The walker: interpreters → thread states → frames, as raw addresses.
//!
//! One generic code path over a `Layout`; the only branch on *shape* is `FrameKind`
//! (heap frame objects ≤3.10, interpreter frames 3.11+). Every loop is bounded and
//! frame and thread lists are checked for cycles; a bad pointer is an error for this
//! sample, never a crash.

use crate::process::{Memory, MemoryError};
use crate::runtime::layout::{FrameKind, Layout};
use crate::runtime::PythonRuntime;
use std::fmt;

/// Most thread states we follow in one interpreter before calling the list corrupt.
pub const MAX_THREADS: usize = 100_000;
/// Most interpreters we follow.
pub const MAX_INTERPRETERS: usize = 1_000;

/// One frame as the walker sees it: addresses only, decoded by `code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawFrame {
    pub frame: u64,
    pub code: u64,
    /// ≤3.10: `f_lasti` (sign-extended int); 3.11+: the instruction pointer.
    pub instr: u64,
    /// 3.11+: the frame's owner (0 thread, 1 generator, 2 frame object, ...).
    pub owner: u8,
}

/// One thread's stack, leaf first.
#[derive(Clone, Debug, Default)]
pub struct RawThread {
    pub tstate: u64,
    /// `thread_id` (pthread_t).
    pub thread_id: u64,
    /// The OS thread id (3.11+), when known.
    pub native_id: Option<u64>,
    pub frames: Vec<RawFrame>,
    /// The stack was deeper than the maximum depth: the root-most frames are missing.
    pub truncated: bool,
}

/// Why one sample could not be taken. Counted per reason, never fatal.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WalkError {
    /// A read failed: memory freed or unmapped while we read it (a torn read).
    Read,
    /// A pointer that cannot be right (null where one is required, misaligned).
    BadPointer(&'static str),
    /// A frame or thread list that loops.
    Cycle(&'static str),
    /// More threads than `MAX_THREADS`.
    TooManyThreads,
    /// A code object that does not look like one.
    BadCode(&'static str),
}

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalkError::Read => write!(f, "memory read failed (torn or freed)"),
            WalkError::BadPointer(what) => write!(f, "invalid pointer ({what})"),
            WalkError::Cycle(what) => write!(f, "{what} list loops"),
            WalkError::TooManyThreads => write!(f, "too many threads"),
            WalkError::BadCode(what) => write!(f, "invalid code object ({what})"),
        }
    }
}

impl From<MemoryError> for WalkError {
    fn from(_: MemoryError) -> Self {
        WalkError::Read
    }
}

fn ptr(mem: &dyn Memory, addr: u64) -> Result<u64, WalkError> {
    Ok(mem.read_u64(addr)?)
}

fn check_ptr(p: u64, what: &'static str) -> Result<u64, WalkError> {
    if p < 0x1000 || p % 8 != 0 {
        return Err(WalkError::BadPointer(what));
    }
    Ok(p)
}

/// The walker for one interpreter runtime.
pub struct Walker {
    pub layout: Layout,
    pub interp_head_addr: u64,
    pub max_depth: usize,
}

impl Walker {
    pub fn new(rt: &PythonRuntime, max_depth: usize) -> Walker {
        Walker {
            layout: rt.layout.clone(),
            interp_head_addr: rt.interp_head_addr,
            max_depth: max_depth.max(1),
        }
    }

    /// The main interpreter (head of the list; 0 when Python is not initialised yet).
    pub fn main_interpreter(&self, mem: &dyn Memory) -> Result<u64, WalkError> {
        // The list is newest first: the main interpreter is the last one.
        let mut interp = ptr(mem, self.interp_head_addr)?;
        if interp == 0 {
            return Ok(0);
        }
        for _ in 0..MAX_INTERPRETERS {
            check_ptr(interp, "interpreter")?;
            let next = ptr(mem, interp + self.layout.interp_next as u64)?;
            if next == 0 {
                return Ok(interp);
            }
            interp = next;
        }
        Err(WalkError::Cycle("interpreter"))
    }

    /// Thread states of an interpreter, in list order (newest first).
    pub fn thread_states(&self, mem: &dyn Memory, interp: u64) -> Result<Vec<u64>, WalkError> {
        let l = &self.layout;
        let mut out = Vec::new();
        let mut t = ptr(mem, interp + l.interp_tstate_head as u64)?;
        while t != 0 {
            check_ptr(t, "thread state")?;
            if out.len() >= MAX_THREADS {
                return Err(if has_duplicates(&out) {
                    WalkError::Cycle("thread")
                } else {
                    WalkError::TooManyThreads
                });
            }
            out.push(t);
            // Cheap cycle check: a list that returns to its head or to itself.
            let next = ptr(mem, t + l.tstate_next as u64)?;
            if next == t || Some(&next) == out.first() {
                return Err(WalkError::Cycle("thread"));
            }
            t = next;
        }
        if out.len() > 64 && has_duplicates(&out) {
            return Err(WalkError::Cycle("thread"));
        }
        Ok(out)
    }

    /// The top frame of a thread state (0 if the thread runs no Python code).
    pub fn top_frame(&self, mem: &dyn Memory, tstate: u64) -> Result<u64, WalkError> {
        let l = &self.layout;
        let f = ptr(mem, tstate + l.tstate_frame as u64)?;
        match l.cframe_current_frame {
            Some(off) if f != 0 => Ok(ptr(mem, f + off as u64)?),
            _ => Ok(f),
        }
    }

    /// Walk one thread's stack into `out` (leaf first).
    pub fn walk_thread(
        &self,
        mem: &dyn Memory,
        tstate: u64,
        out: &mut RawThread,
    ) -> Result<(), WalkError> {
        let l = &self.layout;
        out.tstate = tstate;
        out.frames.clear();
        out.truncated = false;
        out.thread_id = ptr(mem, tstate + l.tstate_thread_id as u64)?;
        out.native_id = match l.tstate_native_thread_id {
            Some(off) => Some(mem.read_u64(tstate + off as u64)?),
            None => None,
        };
        let mut frame = self.top_frame(mem, tstate)?;
        let mut seen = 0usize;
        while frame != 0 {
            check_ptr(frame, "frame")?;
            if seen >= self.max_depth {
                if has_duplicates_frames(&out.frames) {
                    return Err(WalkError::Cycle("frame"));
                }
                out.truncated = true;
                break;
            }
            seen += 1;
            let raw = self.read_frame(mem, frame)?;
            let back = ptr(mem, frame + l.frame_back as u64)?;
            if back == frame {
                return Err(WalkError::Cycle("frame"));
            }
            if let Some(raw) = raw {
                out.frames.push(raw);
            }
            frame = back;
        }
        Ok(())
    }

    /// Read one frame; None for frames that are not Python code (C-stack shims).
    fn read_frame(&self, mem: &dyn Memory, frame: u64) -> Result<Option<RawFrame>, WalkError> {
        let l = &self.layout;
        match l.frame_kind {
            FrameKind::Object => {
                let code = ptr(mem, frame + l.frame_code as u64)?;
                let lasti = mem.read_i32(frame + l.frame_instr as u64)?;
                Ok(Some(RawFrame {
                    frame,
                    code,
                    instr: lasti as i64 as u64,
                    owner: 0,
                }))
            }
            FrameKind::Interpreter => {
                let owner = match l.frame_owner {
                    Some(off) => mem.read_u8(frame + off as u64)?,
                    None => 0,
                };
                if l.owner_cstack == Some(owner) || l.owner_interpreter == Some(owner) {
                    return Ok(None);
                }
                // 3.14+: f_executable is a tagged _PyStackRef; the low bits are flags.
                let code = ptr(mem, frame + l.frame_code as u64)? & !3;
                let instr = ptr(mem, frame + l.frame_instr as u64)?;
                Ok(Some(RawFrame {
                    frame,
                    code,
                    instr,
                    owner,
                }))
            }
        }
    }
}

fn has_duplicates(v: &[u64]) -> bool {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.windows(2).any(|w| w[0] == w[1])
}

fn has_duplicates_frames(v: &[RawFrame]) -> bool {
    has_duplicates(&v.iter().map(|f| f.frame).collect::<Vec<_>>())
}
