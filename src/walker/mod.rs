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
    /// Blocking mode could not pause the target (ptrace failed).
    Pause,
}

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalkError::Read => write!(f, "memory read failed (torn or freed)"),
            WalkError::BadPointer(what) => write!(f, "invalid pointer ({what})"),
            WalkError::Cycle(what) => write!(f, "{what} list loops"),
            WalkError::TooManyThreads => write!(f, "too many threads"),
            WalkError::BadCode(what) => write!(f, "invalid code object ({what})"),
            WalkError::Pause => write!(f, "could not pause the target"),
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

/// Highest user-space address on x86-64 (and the other 64-bit targets with 47-bit or
/// 48-bit address spaces): anything above cannot be an object of the target.
const MAX_USER_ADDR: u64 = 0x0000_ffff_ffff_ffff;

fn check_ptr(p: u64, what: &'static str) -> Result<u64, WalkError> {
    if p < 0x1000 || p % 8 != 0 || p > MAX_USER_ADDR {
        return Err(WalkError::BadPointer(what));
    }
    Ok(p)
}

/// `base + off` for a pointer read from the target (never overflows: checked pointers
/// are below 2^48).
fn at(base: u64, off: u32) -> u64 {
    base.wrapping_add(off as u64)
}

/// A little-endian integer at `off` of a locally copied struct.
fn field_u64(buf: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(buf.get(off..off + 8)?.try_into().ok()?))
}

/// Local copies of the target's memory made during one walk (3.11+: the thread's
/// data-stack chunks), so frames inside them cost no system call.
#[derive(Default)]
pub struct Regions {
    regions: Vec<(u64, Vec<u8>)>,
}

impl Regions {
    pub fn clear(&mut self) {
        self.regions.clear();
    }

    fn get(&self, addr: u64, len: usize) -> Option<&[u8]> {
        self.regions.iter().find_map(|(start, data)| {
            let off = addr.checked_sub(*start)? as usize;
            data.get(off..off.checked_add(len)?)
        })
    }

    fn add(&mut self, start: u64, data: Vec<u8>) {
        self.regions.push((start, data));
    }

    /// Bytes copied in this walk (bounded by `MAX_REGION_BYTES`).
    fn bytes(&self) -> usize {
        self.regions.iter().map(|r| r.1.len()).sum()
    }
}

/// Largest data-stack chunk we copy, and most bytes copied per thread.
const MAX_CHUNK_BYTES: u64 = 4 << 20;
const MAX_REGION_BYTES: usize = 16 << 20;
/// Most previous chunks followed per thread.
const MAX_CHUNKS: usize = 1024;

/// Where the fields the walker reads sit in a struct: one read covers them all.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn of(offsets: &[u32], last_len: u32) -> Span {
        let start = offsets.iter().copied().min().unwrap_or(0);
        let end = offsets.iter().copied().max().unwrap_or(0) + last_len;
        Span {
            start,
            len: end - start,
        }
    }
}

/// The walker for one interpreter runtime.
pub struct Walker {
    pub layout: Layout,
    pub interp_head_addr: u64,
    pub max_depth: usize,
    tstate_span: Span,
    frame_span: Span,
    chunks: std::cell::RefCell<Regions>,
}

impl Walker {
    pub fn new(rt: &PythonRuntime, max_depth: usize) -> Walker {
        Walker::from_layout(rt.layout.clone(), rt.interp_head_addr, max_depth)
    }

    pub fn from_layout(layout: Layout, interp_head_addr: u64, max_depth: usize) -> Walker {
        let l = &layout;
        let tstate_fields: Vec<u32> = [l.tstate_thread_id, l.tstate_frame]
            .into_iter()
            .chain(l.tstate_native_thread_id)
            .chain(l.tstate_datastack_chunk)
            .chain(l.tstate_datastack_top)
            .collect();
        let mut frame_fields = vec![l.frame_back, l.frame_code, l.frame_instr];
        frame_fields.extend(l.frame_owner);
        Walker {
            tstate_span: Span::of(&tstate_fields, 8),
            frame_span: Span::of(&frame_fields, 8),
            layout,
            interp_head_addr,
            max_depth: max_depth.max(1),
            chunks: Default::default(),
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
            let next = ptr(mem, at(interp, self.layout.interp_next))?;
            if next == 0 {
                return Ok(interp);
            }
            if next == interp {
                return Err(WalkError::Cycle("interpreter"));
            }
            interp = next;
        }
        Err(WalkError::Cycle("interpreter"))
    }

    /// Thread states of an interpreter, in list order (newest first).
    pub fn thread_states(&self, mem: &dyn Memory, interp: u64) -> Result<Vec<u64>, WalkError> {
        let l = &self.layout;
        let mut out = Vec::new();
        let mut t = ptr(mem, at(interp, l.interp_tstate_head))?;
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
            let next = ptr(mem, at(t, l.tstate_next))?;
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
        let f = ptr(mem, at(tstate, l.tstate_frame))?;
        match l.cframe_current_frame {
            Some(off) if f != 0 => {
                check_ptr(f, "cframe")?;
                Ok(ptr(mem, at(f, off))?)
            }
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
        check_ptr(tstate, "thread state")?;
        // One read for every field of the thread state we need.
        let span = self.tstate_span;
        let mut ts = [0u8; 512];
        let ts = ts
            .get_mut(..span.len as usize)
            .ok_or(WalkError::BadPointer("layout"))?;
        mem.read(at(tstate, span.start), ts)?;
        let f = |off: u32| field_u64(ts, (off - span.start) as usize).unwrap_or(0);
        out.thread_id = f(l.tstate_thread_id);
        out.native_id = l.tstate_native_thread_id.map(f);
        let mut frame = f(l.tstate_frame);
        if let (Some(off), true) = (l.cframe_current_frame, frame != 0) {
            check_ptr(frame, "cframe")?;
            frame = ptr(mem, at(frame, off))?;
        }
        let mut chunks = self.chunks.borrow_mut();
        chunks.clear();
        // 3.11+: the frames of a thread live in its data-stack chunks: copy the current
        // chunk's used part in one read, and walk the frames locally.
        let mut prev_chunk = 0;
        if let (Some(c), Some(t), Some(data)) = (
            l.tstate_datastack_chunk,
            l.tstate_datastack_top,
            l.chunk_data,
        ) {
            let (chunk, top) = (f(c), f(t));
            if chunk != 0
                && top > chunk
                && top - chunk <= MAX_CHUNK_BYTES
                && check_ptr(chunk, "chunk").is_ok()
            {
                let mut buf = vec![0u8; (top - chunk) as usize];
                if mem.read(chunk, &mut buf).is_ok() && buf.len() >= data as usize {
                    prev_chunk = l
                        .chunk_previous
                        .and_then(|p| field_u64(&buf, p as usize))
                        .unwrap_or(0);
                    chunks.add(chunk, buf);
                }
            }
        }
        let mut chunks_read = 0;
        let mut visited: Vec<u64> = Vec::new();
        let mut kept = 0usize;
        while frame != 0 {
            check_ptr(frame, "frame")?;
            if kept >= self.max_depth || visited.len() >= self.max_depth.saturating_mul(4) {
                if has_duplicates(&visited) {
                    return Err(WalkError::Cycle("frame"));
                }
                out.truncated = true;
                break;
            }
            visited.push(frame);
            // Follow older chunks when the frame is not in the ones copied so far.
            while chunks
                .get(
                    frame,
                    self.frame_span.len as usize + self.frame_span.start as usize,
                )
                .is_none()
                && prev_chunk != 0
                && chunks_read < MAX_CHUNKS
                && chunks.bytes() < MAX_REGION_BYTES
            {
                chunks_read += 1;
                prev_chunk = self.copy_chunk(mem, prev_chunk, &mut chunks).unwrap_or(0);
            }
            let (raw, back) = self.read_frame(mem, frame, &chunks)?;
            if back == frame {
                return Err(WalkError::Cycle("frame"));
            }
            if let Some(raw) = raw {
                out.frames.push(raw);
                kept += 1;
            }
            frame = back;
        }
        Ok(())
    }

    /// Copy a previous data-stack chunk (its used part); returns the one before it.
    fn copy_chunk(&self, mem: &dyn Memory, chunk: u64, chunks: &mut Regions) -> Option<u64> {
        let l = &self.layout;
        check_ptr(chunk, "chunk").ok()?;
        let mut head = [0u8; 24];
        let (prev_off, top_off) = (l.chunk_previous?, l.chunk_top?);
        let need = (prev_off.max(top_off) + 8) as usize;
        mem.read(chunk, head.get_mut(..need)?).ok()?;
        let prev = field_u64(&head, prev_off as usize)?;
        let top = field_u64(&head, top_off as usize)?;
        // `top` of a chunk that is not current is an index (3.11+: in PyObject* slots)
        // from `data`, or a pointer, depending on the version: accept either.
        let data = l.chunk_data? as u64;
        let end = if top > chunk && top - chunk <= MAX_CHUNK_BYTES {
            top
        } else if top <= MAX_CHUNK_BYTES / 8 {
            chunk + data + top * 8
        } else {
            return Some(prev);
        };
        let mut buf = vec![0u8; (end - chunk) as usize];
        if mem.read(chunk, &mut buf).is_ok() {
            chunks.add(chunk, buf);
        }
        Some(prev)
    }

    /// Read one frame (from a local copy when it has one): the frame, None for frames
    /// that are not Python code (C-stack shims), and the next frame's address.
    fn read_frame(
        &self,
        mem: &dyn Memory,
        frame: u64,
        chunks: &Regions,
    ) -> Result<(Option<RawFrame>, u64), WalkError> {
        let l = &self.layout;
        let span = self.frame_span;
        let mut local = [0u8; 512];
        let buf: &[u8] = match chunks.get(at(frame, span.start), span.len as usize) {
            Some(b) => b,
            None => {
                let b = local
                    .get_mut(..span.len as usize)
                    .ok_or(WalkError::BadPointer("layout"))?;
                mem.read(at(frame, span.start), b)?;
                b
            }
        };
        let f = |off: u32| field_u64(buf, (off - span.start) as usize).unwrap_or(0);
        let back = f(l.frame_back);
        let raw = match l.frame_kind {
            FrameKind::Object => Some(RawFrame {
                frame,
                code: f(l.frame_code),
                instr: f(l.frame_instr) as u32 as i32 as i64 as u64,
                owner: 0,
            }),
            FrameKind::Interpreter => {
                let owner = l.frame_owner.map(|o| f(o) as u8).unwrap_or(0);
                if l.owner_cstack == Some(owner) || l.owner_interpreter == Some(owner) {
                    None
                } else {
                    Some(RawFrame {
                        frame,
                        // 3.14+: f_executable is a tagged _PyStackRef.
                        code: f(l.frame_code) & !(l.frame_code_tag_mask as u64),
                        instr: f(l.frame_instr),
                        owner,
                    })
                }
            }
        };
        Ok((raw, back))
    }
}

fn has_duplicates(v: &[u64]) -> bool {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.windows(2).any(|w| w[0] == w[1])
}
