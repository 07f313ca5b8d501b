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
    /// 3.14+ free-threaded: the frame's `tlbc_index`, which copy of the code object's
    /// bytecode it executes (0: the code object's own `co_code_adaptive`).
    pub tlbc_index: u32,
    /// Where that copy starts (`co_tlbc->entries[tlbc_index]`), filled in by
    /// [`Walker::resolve_bytecode`] for a non-zero `tlbc_index`; 0 means the code object's
    /// own bytecode. The instruction pointer points into this copy.
    pub bytecode: u64,
    /// The root-most frame of one C call of the eval loop (`_PyEval_EvalFrameDefault`):
    /// every frame ≤3.10; 3.11's `is_entry`; on 3.12+ the frame a C-stack shim follows.
    /// With `--native`, the Python frames between two such boundaries replace one native
    /// eval-loop frame.
    pub entry: bool,
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
    /// `Walker::check_moved`: the walk mixed reads of two instants (a snapshot's batch and
    /// later live reads, for bytes the batch did not hold): the read sampler reads the
    /// stack again, in one batch, before it keeps such a stack.
    pub moved: bool,
    /// `Walker::check_moved`: the top frame (or its caller) moved during the one batch
    /// the stack was read in. Kept as read, and counted: reading again until a read
    /// settles would favour the frames that stay put (long calls), which biases far more
    /// than the rare stack of two instants.
    pub unsettled: bool,
    /// Where the thread was executing at the sample (its user instruction pointer), when
    /// the sampler saw its registers (bpf, ptrace): in the interpreter, or in native code
    /// the leaf instruction called.
    pub ip: Option<u64>,
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
    /// bpf: the kernel sampled a thread not yet in its thread map (a thread that just
    /// started; the map is updated at the next tick).
    UnknownThread,
    /// bpf: the ring buffer was full and the kernel dropped the sample.
    RingBufferFull,
    /// A thread not on a CPU ran while it was read, again on the retry.
    RanDuringRead,
    /// The thread's top frame changed while its frames were read (plain reads of a
    /// running thread), the stack read again still moving: a retry's reason, never a
    /// failure (the first stack read is kept, `RawThread::moved`).
    Moved,
    /// `--async-aware`: the asyncio task graph of a thread running an event loop could
    /// not be read (why).
    Asyncio(&'static str),
    /// Not an error: a thread `Walker::walk_some` was asked not to walk.
    NotWalked,
    /// A thread state known from an earlier list read is gone (or reused by another
    /// thread): not counted, the list is read again.
    ThreadGone,
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
            WalkError::UnknownThread => write!(f, "thread not yet known to the bpf sampler"),
            WalkError::RingBufferFull => write!(f, "lost: bpf ring buffer full"),
            WalkError::RanDuringRead => write!(f, "idle thread ran while it was read"),
            WalkError::Moved => write!(f, "stack changed while it was read"),
            WalkError::Asyncio(what) => write!(f, "asyncio: {what}"),
            WalkError::NotWalked => write!(f, "not walked"),
            WalkError::ThreadGone => write!(f, "thread ended"),
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

/// A non-null, plausible pointer read at `addr`, or None.
fn ptr_ok(mem: &dyn Memory, addr: u64) -> Option<u64> {
    let p = mem.read_u64(addr).ok()?;
    check_ptr(p, "pointer").ok()
}

fn check_ptr(p: u64, what: &'static str) -> Result<u64, WalkError> {
    if p < 0x1000 || !p.is_multiple_of(8) || p > MAX_USER_ADDR {
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
#[derive(Default, Clone)]
pub struct Regions {
    regions: Vec<(u64, Vec<u8>)>,
    /// Buffers of earlier walks, reused: a deep stack's chunk is tens of KB, copied at
    /// every tick, and neither allocated nor zeroed again.
    spare: Vec<Vec<u8>>,
}

impl Regions {
    pub fn clear(&mut self) {
        let Regions { regions, spare } = self;
        for (_, b) in regions.drain(..) {
            Regions::keep(spare, b);
        }
    }

    /// Keep a buffer for reuse, a few at most and none very large.
    fn keep(spare: &mut Vec<Vec<u8>>, b: Vec<u8>) {
        if spare.len() < 8 && b.capacity() <= 1 << 20 {
            spare.push(b);
        }
    }

    /// A buffer of `len` bytes to read into (its contents are stale until then).
    fn buffer(&mut self, len: usize) -> Vec<u8> {
        let mut b = self.spare.pop().unwrap_or_default();
        // (Only bytes beyond the old length are written here; a read overwrites them all.)
        b.resize(len, 0);
        b
    }

    /// Give back a buffer that was not added.
    fn give_back(&mut self, b: Vec<u8>) {
        Regions::keep(&mut self.spare, b);
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

/// A thread state's fields, read before its frames are walked.
struct ThreadStart {
    tstate: u64,
    thread_id: u64,
    native_id: Option<u64>,
    /// The top frame (0 until `cframe` is followed, on 3.11/3.12).
    frame: u64,
    /// 3.11/3.12: the address of `cframe->current_frame`.
    cframe: Option<u64>,
    /// 3.11+: the current data-stack chunk and the length of its used part.
    chunk: Option<(u64, usize)>,
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

/// Where to find the thread state that holds the GIL.
#[derive(Clone, Copy, Debug)]
enum GilSource {
    /// 3.7–3.11: `_PyRuntime.ceval.gil` (addresses of `locked` and `last_holder`).
    Runtime { locked: u64, holder: u64 },
    /// 3.12+: `interp->ceval.gil`, a pointer to the interpreter's GIL.
    Interp { ptr: u32, locked: u32, holder: u32 },
    /// 2.7, 3.6: `_PyThreadState_Current` (null when no thread holds the GIL).
    Current(u64),
    /// Free-threaded builds, or nothing known.
    None,
}

/// The walker for one interpreter runtime.
#[derive(Clone)]
pub struct Walker {
    pub layout: Layout,
    pub interp_head_addr: u64,
    gil: GilSource,
    pub max_depth: usize,
    tstate_span: Span,
    frame_span: Span,
    chunks: std::cell::RefCell<Regions>,
    /// Read each thread's top-frame pointer again after its frames (`Memory::read_late`)
    /// and fail the walk with `WalkError::Moved` if it changed: for reads of a target that
    /// runs meanwhile. Off where the threads read are paused (ptrace).
    pub check_moved: bool,
}

impl Walker {
    pub fn new(rt: &PythonRuntime, max_depth: usize) -> Walker {
        let mut w = Walker::from_layout(rt.layout.clone(), rt.interp_head_addr, max_depth);
        let l = &rt.layout;
        w.gil = match (
            rt.runtime_addr,
            l.runtime_gil_locked,
            l.runtime_gil_last_holder,
            l.interp_gil_ptr,
            l.gil_locked,
            l.gil_last_holder,
        ) {
            _ if l.free_threaded => GilSource::None,
            (Some(rt_addr), Some(locked), Some(holder), _, _, _) => GilSource::Runtime {
                locked: at(rt_addr, locked),
                holder: at(rt_addr, holder),
            },
            (_, _, _, Some(ptr), Some(locked), Some(holder)) => GilSource::Interp {
                ptr,
                locked,
                holder,
            },
            _ => match rt.thread_state_current {
                Some(a) => GilSource::Current(a),
                None => GilSource::None,
            },
        };
        w
    }

    /// The thread state holding the GIL now (None if no thread holds it, or unknown).
    pub fn gil_holder(&self, mem: &dyn Memory, interp: u64) -> Option<u64> {
        let (locked, holder) = match self.gil {
            GilSource::Runtime { locked, holder } => (locked, holder),
            GilSource::Interp {
                ptr,
                locked,
                holder,
            } => {
                let gil = ptr_ok(mem, at(interp, ptr))?;
                (at(gil, locked), at(gil, holder))
            }
            GilSource::Current(a) => return ptr_ok(mem, a),
            GilSource::None => return None,
        };
        // `locked` is an int (3.7–3.12: _Py_atomic_int; 3.13+: int): non-zero while held.
        if mem.read_u32(locked).ok()? == 0 {
            return None;
        }
        ptr_ok(mem, holder)
    }

    /// Where the GIL's `locked` flag and `last_holder` pointer are, for a reader that
    /// checks them itself (the bpf sampler). None when there is no GIL to observe. On
    /// 2.7/3.6 the holder is `_PyThreadState_Current` (null when nobody holds the GIL):
    /// `locked` is then 0.
    pub fn gil_addresses(&self, mem: &dyn Memory, interp: u64) -> Option<(u64, u64)> {
        match self.gil {
            GilSource::Runtime { locked, holder } => Some((locked, holder)),
            GilSource::Interp {
                ptr,
                locked,
                holder,
            } => {
                let gil = ptr_ok(mem, at(interp, ptr))?;
                Some((at(gil, locked), at(gil, holder)))
            }
            GilSource::Current(a) => Some((0, a)),
            GilSource::None => None,
        }
    }

    /// Every thread state of an interpreter with its ids, `(tstate, thread_id,
    /// native_thread_id)`, in list order, without walking frames.
    pub fn thread_ids(
        &self,
        mem: &dyn Memory,
        interp: u64,
    ) -> Result<Vec<(u64, u64, Option<u64>)>, WalkError> {
        let l = &self.layout;
        let tstates = self.thread_states(mem, interp)?;
        let mut out = Vec::with_capacity(tstates.len());
        let span = self.tstate_span;
        let mut buf = vec![0u8; span.len as usize];
        for t in tstates {
            mem.read(at(t, span.start), &mut buf)?;
            let f = |off: u32| field_u64(&buf, (off - span.start) as usize).unwrap_or(0);
            out.push((t, f(l.tstate_thread_id), l.tstate_native_thread_id.map(f)));
        }
        Ok(out)
    }

    /// Does this runtime have a GIL we can observe?
    /// Is `f` the frame of coroutine (or generator) object `coro`? 3.11+: the frame lives
    /// inside the coroutine object (`gi_iframe`); ≤3.10: `gi_frame`, the field after the
    /// object header, points to it.
    pub fn is_frame_of(&self, mem: &dyn Memory, f: &RawFrame, coro: u64) -> bool {
        match self.layout.frame_kind {
            FrameKind::Interpreter => f.frame > coro && f.frame < coro.saturating_add(256),
            FrameKind::Object => {
                ptr_ok(mem, coro.wrapping_add(self.layout.ob_type as u64 + 8)) == Some(f.frame)
            }
        }
    }

    pub fn has_gil(&self) -> bool {
        !matches!(self.gil, GilSource::None)
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
        frame_fields.extend(l.frame_is_entry);
        frame_fields.extend(l.frame_tlbc_index);
        Walker {
            gil: GilSource::None,
            tstate_span: Span::of(&tstate_fields, 8),
            frame_span: Span::of(&frame_fields, 8),
            layout,
            interp_head_addr,
            max_depth: max_depth.max(1),
            chunks: Default::default(),
            check_moved: true,
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
        let mut seen = std::collections::HashSet::new();
        let mut t = ptr(mem, at(interp, l.interp_tstate_head))?;
        while t != 0 {
            check_ptr(t, "thread state")?;
            if out.len() >= MAX_THREADS {
                return Err(WalkError::TooManyThreads);
            }
            if !seen.insert(t) {
                return Err(WalkError::Cycle("thread"));
            }
            out.push(t);
            t = ptr(mem, at(t, l.tstate_next))?;
        }
        Ok(out)
    }

    /// Walk one thread's stack into `out` (leaf first).
    pub fn walk_thread(
        &self,
        mem: &dyn Memory,
        tstate: u64,
        out: &mut RawThread,
    ) -> Result<(), WalkError> {
        check_ptr(tstate, "thread state")?;
        mem.read_thread_begins();
        let span = self.tstate_span;
        let mut ts = vec![0u8; span.len as usize];
        mem.read(at(tstate, span.start), &mut ts)?;
        let mut state = self.thread_start(tstate, &ts)?;
        if let Some(cf) = state.cframe {
            state.frame = ptr(mem, cf)?;
        }
        let mut chunks = self.chunks.borrow_mut();
        chunks.clear();
        if let Some((chunk, len)) = state.chunk {
            let mut buf = chunks.buffer(len);
            if mem.read(chunk, &mut buf).is_ok() {
                chunks.add(chunk, buf);
            } else {
                chunks.give_back(buf);
            }
        }
        self.walk_frames(mem, &state, &mut chunks, out)?;
        let mut one = [Ok(std::mem::take(out))];
        self.resolve_bytecode(mem, &mut one);
        let [result] = one;
        *out = result?;
        Ok(())
    }

    /// Walk every thread of an interpreter, batching what can be batched: one read per
    /// thread state (its list link and every field we need), then the `cframe` links
    /// and the data-stack chunks of all threads in one `process_vm_readv` each. The
    /// frames are then walked from the copies. One result per thread, in list order;
    /// `tstates` gets the thread states' addresses, in the same order.
    pub fn walk_all(
        &self,
        mem: &dyn Memory,
        interp: u64,
        out: &mut Vec<Result<RawThread, WalkError>>,
        tstates: &mut Vec<u64>,
    ) -> Result<(), WalkError> {
        self.walk_some(mem, interp, out, tstates, &|_, _, _| true)
    }

    /// `walk_all`, walking the frames only of the threads `want(tstate, thread_id,
    /// native_id)` accepts: the others cost their thread-state read only, and come out as
    /// `Err(WalkError::NotWalked)`.
    pub fn walk_some(
        &self,
        mem: &dyn Memory,
        interp: u64,
        out: &mut Vec<Result<RawThread, WalkError>>,
        tstates: &mut Vec<u64>,
        want: &dyn Fn(u64, u64, Option<u64>) -> bool,
    ) -> Result<(), WalkError> {
        let l = &self.layout;
        out.clear();
        tstates.clear();
        // 1. The thread list, reading each thread state's fields with its link.
        let span = Span::of(
            &[
                self.tstate_span.start,
                self.tstate_span.start + self.tstate_span.len - 8,
                l.tstate_next,
            ],
            8,
        );
        let mut states: Vec<Result<ThreadStart, WalkError>> = Vec::new();
        // Every thread state seen: a list that comes back to any of them loops, found
        // at once (not after MAX_THREADS steps and their allocations).
        let mut seen: std::collections::HashSet<u64> = std::collections::HashSet::new();
        let mut t = ptr(mem, at(interp, l.interp_tstate_head))?;
        let mut buf = vec![0u8; span.len as usize];
        while t != 0 {
            check_ptr(t, "thread state")?;
            if seen.len() >= MAX_THREADS {
                return Err(WalkError::TooManyThreads);
            }
            if !seen.insert(t) {
                return Err(WalkError::Cycle("thread"));
            }
            tstates.push(t);
            mem.read(at(t, span.start), &mut buf)?;
            let next = field_u64(&buf, (l.tstate_next - span.start) as usize).unwrap_or(0);
            let own = &buf[(self.tstate_span.start - span.start) as usize..]
                [..self.tstate_span.len as usize];
            let start = self.thread_start(t, own);
            states.push(match start {
                Ok(ts) if !want(t, ts.thread_id, ts.native_id) => Err(WalkError::NotWalked),
                other => other,
            });
            t = next;
        }
        self.walk_states(mem, states, out);
        Ok(())
    }

    /// Walk the threads `known` — (thread state, the `thread_id` and `native_thread_id`
    /// it had when the list was last read) — without following the thread list: for
    /// ticks between list reads. A thread state whose ids changed (the thread ended and
    /// its memory was reused) fails with `WalkError::ThreadGone`, as does one that cannot
    /// be read.
    pub fn walk_listed(
        &self,
        mem: &dyn Memory,
        known: &[(u64, u64, Option<u64>)],
        out: &mut Vec<Result<RawThread, WalkError>>,
    ) {
        out.clear();
        let span = self.tstate_span;
        let reqs: Vec<(u64, usize)> = known
            .iter()
            .map(|&(t, _, _)| (at(t, span.start), span.len as usize))
            .collect();
        let mut all = vec![0u8; reqs.len() * span.len as usize];
        let ok = mem.read_scatter(&reqs, &mut all);
        let states: Vec<Result<ThreadStart, WalkError>> = known
            .iter()
            .enumerate()
            .map(|(i, &(t, thread_id, native_id))| {
                if !ok[i] || check_ptr(t, "thread state").is_err() {
                    return Err(WalkError::ThreadGone);
                }
                let own = &all[i * span.len as usize..][..span.len as usize];
                let start = self.thread_start(t, own)?;
                if start.thread_id != thread_id || start.native_id != native_id {
                    return Err(WalkError::ThreadGone);
                }
                Ok(start)
            })
            .collect();
        self.walk_states(mem, states, out);
    }

    /// The frames of threads whose thread states have been read: the `cframe` links and
    /// the data-stack chunks of all of them in one batched read each, then each thread
    /// walked from the copies.
    fn walk_states(
        &self,
        mem: &dyn Memory,
        mut states: Vec<Result<ThreadStart, WalkError>>,
        out: &mut Vec<Result<RawThread, WalkError>>,
    ) {
        // 2. 3.11/3.12: every `cframe->current_frame` in one batch.
        let cframes: Vec<(usize, u64)> = states
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i, s.as_ref().ok()?.cframe?)))
            .collect();
        if !cframes.is_empty() {
            let reqs: Vec<(u64, usize)> = cframes.iter().map(|&(_, a)| (a, 8)).collect();
            let mut vals = vec![0u8; reqs.len() * 8];
            let ok = mem.read_scatter(&reqs, &mut vals);
            for (k, &(i, _)) in cframes.iter().enumerate() {
                if let Ok(s) = &mut states[i] {
                    if ok[k] {
                        s.frame = field_u64(&vals, k * 8).unwrap_or(0);
                    } else {
                        states[i] = Err(WalkError::Read);
                    }
                }
            }
        }
        // 3. 3.11+: every thread's current data-stack chunk in one batch.
        let wanted: Vec<(usize, u64, usize)> = states
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let (c, n) = s.as_ref().ok()?.chunk?;
                Some((i, c, n))
            })
            .collect();
        let mut chunks = self.chunks.borrow_mut();
        chunks.clear();
        let mut copies: Vec<Option<Vec<u8>>> = vec![None; states.len()];
        if !wanted.is_empty() {
            let total: usize = wanted.iter().map(|w| w.2).sum();
            if total <= MAX_REGION_BYTES.saturating_mul(4) {
                let reqs: Vec<(u64, usize)> = wanted.iter().map(|&(_, c, n)| (c, n)).collect();
                if let [(i, _, _)] = wanted[..] {
                    // One thread (the usual case): read straight into its buffer.
                    let mut buf = chunks.buffer(total);
                    if mem.read_scatter(&reqs, &mut buf)[0] {
                        copies[i] = Some(buf);
                    } else {
                        chunks.give_back(buf);
                    }
                } else {
                    let mut all = chunks.buffer(total);
                    let ok = mem.read_scatter(&reqs, &mut all);
                    let mut pos = 0;
                    for (k, &(i, _, n)) in wanted.iter().enumerate() {
                        if ok[k] {
                            let mut b = chunks.buffer(n);
                            b.copy_from_slice(&all[pos..pos + n]);
                            copies[i] = Some(b);
                        }
                        pos += n;
                    }
                    chunks.give_back(all);
                }
            }
        }
        // 4. Walk each thread's frames from the copies.
        for (i, state) in states.into_iter().enumerate() {
            let result = state.and_then(|state| {
                mem.read_thread_begins();
                chunks.clear();
                if let (Some((chunk, _)), Some(copy)) = (state.chunk, copies[i].take()) {
                    chunks.add(chunk, copy);
                }
                let mut raw = RawThread::default();
                self.walk_frames(mem, &state, &mut chunks, &mut raw)
                    .map(|()| raw)
            });
            out.push(result);
        }
        drop(chunks);
        // 5. 3.14+ free-threaded: where each thread's copy of the bytecode is.
        self.resolve_bytecode(mem, out);
    }

    /// 3.14+ free-threaded builds: each thread executes its own copy of a code object's
    /// bytecode, `co_tlbc->entries[frame->tlbc_index]` (CPython's `_PyFrame_GetBytecode`).
    /// Fill in `RawFrame::bytecode` for every frame with a non-zero `tlbc_index`, in two
    /// batched reads for all threads: the `co_tlbc` pointers, then each array's size and
    /// entry. A thread whose copy cannot be found (a torn read: the array grew or the copy
    /// was freed while we read) fails with `WalkError::Read`, as any torn read does.
    /// Any backend that copied `tlbc_index` into its raw frames can call this.
    pub fn resolve_bytecode(&self, mem: &dyn Memory, threads: &mut [Result<RawThread, WalkError>]) {
        let l = &self.layout;
        let (Some(tlbc_off), Some(size_off), Some(entries_off)) =
            (l.code_tlbc, l.code_array_size, l.code_array_entries)
        else {
            return;
        };
        // Distinct (code object, index) pairs.
        let mut pairs: Vec<(u64, u32)> = Vec::new();
        for t in threads.iter().flatten() {
            for f in &t.frames {
                if f.tlbc_index != 0 && !pairs.contains(&(f.code, f.tlbc_index)) {
                    pairs.push((f.code, f.tlbc_index));
                }
            }
        }
        if pairs.is_empty() {
            return;
        }
        // 1. Every code object's co_tlbc pointer.
        let reqs: Vec<(u64, usize)> = pairs.iter().map(|&(c, _)| (at(c, tlbc_off), 8)).collect();
        let mut vals = vec![0u8; reqs.len() * 8];
        let ok = mem.read_scatter(&reqs, &mut vals);
        // 2. Each array's size and the entry at the index.
        let mut reqs: Vec<(u64, usize)> = Vec::with_capacity(pairs.len() * 2);
        let mut asked: Vec<usize> = Vec::with_capacity(pairs.len());
        for (k, &(_, idx)) in pairs.iter().enumerate() {
            let array = field_u64(&vals, k * 8).unwrap_or(0);
            if !ok[k] || check_ptr(array, "co_tlbc").is_err() || idx as usize >= MAX_THREADS {
                continue;
            }
            asked.push(k);
            reqs.push((at(array, size_off), 8));
            reqs.push((at(array, entries_off).wrapping_add(8 * idx as u64), 8));
        }
        let mut base: Vec<u64> = vec![0; pairs.len()];
        if !reqs.is_empty() {
            let mut got = vec![0u8; reqs.len() * 8];
            let ok = mem.read_scatter(&reqs, &mut got);
            for (j, &k) in asked.iter().enumerate() {
                if !(ok[2 * j] && ok[2 * j + 1]) {
                    continue;
                }
                let size = field_u64(&got, 16 * j).unwrap_or(0);
                let entry = field_u64(&got, 16 * j + 8).unwrap_or(0);
                // The bytecode is 2-aligned inside its allocation; no stronger claim.
                if (pairs[k].1 as u64) < size && (0x1000..=MAX_USER_ADDR).contains(&entry) {
                    base[k] = entry;
                }
            }
        }
        for t in threads.iter_mut() {
            let Ok(raw) = t else { continue };
            let mut failed = false;
            for f in raw.frames.iter_mut().filter(|f| f.tlbc_index != 0) {
                match pairs.iter().position(|&p| p == (f.code, f.tlbc_index)) {
                    Some(k) if base[k] != 0 => f.bytecode = base[k],
                    _ => failed = true,
                }
            }
            if failed {
                *t = Err(WalkError::Read);
            }
        }
    }

    /// What a thread state's fields say: ids, top frame (or the cframe to follow), chunk.
    fn thread_start(&self, tstate: u64, ts: &[u8]) -> Result<ThreadStart, WalkError> {
        let l = &self.layout;
        let span = self.tstate_span;
        let f = |off: u32| field_u64(ts, (off - span.start) as usize).unwrap_or(0);
        let frame = f(l.tstate_frame);
        let cframe = match (l.cframe_current_frame, frame) {
            (Some(_), 0) => None,
            (Some(off), cf) => {
                check_ptr(cf, "cframe")?;
                Some(at(cf, off))
            }
            (None, _) => None,
        };
        let mut chunk = None;
        if let (Some(c), Some(t), Some(data)) = (
            l.tstate_datastack_chunk,
            l.tstate_datastack_top,
            l.chunk_data,
        ) {
            let (c, top) = (f(c), f(t));
            if c != 0
                && top > c
                && top - c <= MAX_CHUNK_BYTES
                && top - c >= data as u64
                && check_ptr(c, "chunk").is_ok()
            {
                chunk = Some((c, (top - c) as usize));
            }
        }
        Ok(ThreadStart {
            tstate,
            thread_id: f(l.tstate_thread_id),
            native_id: l.tstate_native_thread_id.map(f),
            frame: if cframe.is_some() { 0 } else { frame },
            cframe,
            chunk,
        })
    }

    /// Where the thread's top-frame pointer is: `cframe->current_frame` (3.11/3.12),
    /// else the thread state's `frame` / `current_frame`.
    fn leaf_at(&self, state: &ThreadStart) -> u64 {
        state
            .cframe
            .unwrap_or_else(|| at(state.tstate, self.layout.tstate_frame))
    }

    /// Walk the frames of one thread from `state.frame`, using (and extending) `chunks`.
    /// With `check_moved`, the top-frame pointer, the top frame's code object and its
    /// caller's instruction are read again once the frames are read, after every other
    /// read (`Memory::read_late`): if any changed, the walk saw frames of more than one
    /// instant: `out.moved` (the read sampler reads again, and keeps this stack if it
    /// cannot do better). A thread whose function returned and whose caller went on, to
    /// another call or to the same one again, is caught this way; one whose caller came
    /// back to the very same instruction within the read (a loop of one call) is not.
    fn walk_frames(
        &self,
        mem: &dyn Memory,
        state: &ThreadStart,
        chunks: &mut Regions,
        out: &mut RawThread,
    ) -> Result<(), WalkError> {
        self.walk_frames_once(mem, state, chunks, out)?;
        if !self.check_moved || state.frame == 0 {
            return Ok(());
        }
        let late = |addr: u64| {
            let mut b = [0u8; 8];
            mem.read_late(addr, &mut b).map(|()| u64::from_le_bytes(b))
        };
        // (A late read that fails: the walk mixed the batch with later live reads.)
        let Ok(leaf) = late(self.leaf_at(state)) else {
            out.moved = true;
            return Ok(());
        };
        if leaf != state.frame {
            out.unsettled = true;
            return Ok(());
        }
        // 3.11+ reuses a returned frame's slot of the data stack for the next call:
        // the same top-frame address may hold another function's frame by now.
        if let Some(top) = out.frames.first().filter(|f| f.frame == state.frame) {
            let mask = !(self.layout.frame_code_tag_mask as u64);
            match late(at(top.frame, self.layout.frame_code)) {
                Err(_) => {
                    out.moved = true;
                    return Ok(());
                }
                Ok(c) if c & mask != top.code => {
                    out.unsettled = true;
                    return Ok(());
                }
                Ok(_) => {}
            }
        }
        // A function called again in a loop: the same frame address (a reused slot, or
        // ≤3.10 the code object's cached frame) holds the next call, and only the caller
        // shows that time passed: where it is in its code.
        if let Some(caller) = out.frames.get(1) {
            match late(at(caller.frame, self.layout.frame_instr)) {
                Err(_) => out.moved = true,
                Ok(v) => {
                    let instr = match self.layout.frame_kind {
                        FrameKind::Object => v as u32 as i32 as i64 as u64,
                        FrameKind::Interpreter => v,
                    };
                    if instr != caller.instr {
                        out.unsettled = true;
                    }
                }
            }
        }
        Ok(())
    }

    fn walk_frames_once(
        &self,
        mem: &dyn Memory,
        state: &ThreadStart,
        chunks: &mut Regions,
        out: &mut RawThread,
    ) -> Result<(), WalkError> {
        let l = &self.layout;
        out.tstate = state.tstate;
        out.thread_id = state.thread_id;
        out.native_id = state.native_id;
        out.frames.clear();
        out.truncated = false;
        out.moved = false;
        out.unsettled = false;
        let mut frame = state.frame;
        let mut prev_chunk = match (state.chunk, l.chunk_previous) {
            (Some((c, _)), Some(p)) => chunks
                .get(at(c, p), 8)
                .and_then(|b| field_u64(b, 0))
                .unwrap_or(0),
            _ => 0,
        };
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
                prev_chunk = self.copy_chunk(mem, prev_chunk, chunks).unwrap_or(0);
            }
            let (raw, back) = self.read_frame(mem, frame, chunks)?;
            if back == frame {
                return Err(WalkError::Cycle("frame"));
            }
            match raw {
                Some(raw) => {
                    out.frames.push(raw);
                    kept += 1;
                }
                // A shim: the eval loop's C call that ran the frames above it began here.
                None => {
                    if let Some(last) = out.frames.last_mut() {
                        last.entry = true;
                    }
                }
            }
            frame = back;
        }
        if let Some(root) = out.frames.last_mut() {
            root.entry = true;
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
        let mut buf = chunks.buffer((end - chunk) as usize);
        if mem.read(chunk, &mut buf).is_ok() {
            chunks.add(chunk, buf);
        } else {
            chunks.give_back(buf);
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
                tlbc_index: 0,
                bytecode: 0,
                entry: true,
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
                        // An int32 (its low 4 bytes, little-endian).
                        tlbc_index: l.frame_tlbc_index.map_or(0, |o| f(o) as u32),
                        bytecode: 0,
                        entry: l.frame_is_entry.is_some_and(|o| f(o) as u8 != 0),
                    })
                }
            }
        };
        Ok((raw, back))
    }
}

impl Walker {
    /// The frame of generator or coroutine `gen` while it is suspended (or created and
    /// not started), and the object on top of its value stack: what a coroutine
    /// suspended in an `await` awaits (another coroutine, a generator, a future's
    /// iterator), or 0 when its stack is empty.
    pub fn suspended_frame(&self, mem: &dyn Memory, gen: u64) -> Result<GenState, WalkError> {
        let l = &self.layout;
        check_ptr(gen, "coroutine")?;
        let frame = match l.frame_kind {
            FrameKind::Object => {
                let frame = ptr(mem, at(gen, l.gen_frame))?;
                if frame == 0 {
                    return Ok(GenState::Gone);
                }
                check_ptr(frame, "frame")?;
                if let (Some(o), Some(x)) = (l.frame_state, l.gen_executing) {
                    if mem.read_u8(at(frame, o))? == x {
                        return Ok(GenState::Executing);
                    }
                } else if l.frame_valuestack.is_some() && ptr(mem, at(frame, l.frame_stack))? == 0 {
                    return Ok(GenState::Executing);
                }
                frame
            }
            FrameKind::Interpreter => {
                if let (Some(o), Some(first), Some(last)) = (
                    l.gen_frame_state,
                    l.gen_suspended_first,
                    l.gen_suspended_last,
                ) {
                    let state = mem.read_u8(at(gen, o))?;
                    if Some(state) == l.gen_executing {
                        return Ok(GenState::Executing);
                    }
                    if !(first as i8..=last as i8).contains(&(state as i8)) {
                        return Ok(GenState::Gone);
                    }
                }
                at(gen, l.gen_frame)
            }
        };
        let (Some(raw), _) = self.read_frame(mem, frame, &Regions::default())? else {
            return Ok(GenState::Gone);
        };
        check_ptr(raw.code, "code object")?;
        // The value stack's top, when the stack holds anything above the locals.
        let top = match l.frame_kind {
            FrameKind::Object => {
                let base = match l.frame_valuestack {
                    Some(o) => ptr(mem, at(frame, o))?,
                    None => 0,
                };
                if (raw.instr as i64) < 0 || base == 0 {
                    0
                } else if l.major == 3 && l.minor == 10 {
                    let depth = mem.read_i32(at(frame, l.frame_stack))?;
                    if depth > 0 && depth < 1 << 20 {
                        ptr(mem, base + 8 * (depth as u64 - 1))?
                    } else {
                        0
                    }
                } else {
                    let top = ptr(mem, at(frame, l.frame_stack))?;
                    if top == 0 {
                        return Ok(GenState::Executing); // it started since
                    }
                    if top > base && top - base < 8 << 20 {
                        ptr(mem, top - 8)?
                    } else {
                        0
                    }
                }
            }
            FrameKind::Interpreter => {
                let nlocals = mem.read_i32(at(raw.code, l.code_nlocals))?.max(0) as u64;
                let base = at(frame, l.frame_localsplus) + 8 * nlocals;
                let top = if l.major == 3 && l.minor < 14 {
                    let index = mem.read_i32(at(frame, l.frame_stack))?;
                    (index > 0).then(|| at(frame, l.frame_localsplus) + 8 * index as u64)
                } else {
                    Some(ptr(mem, at(frame, l.frame_stack))?)
                };
                match top {
                    Some(top) if top > base && top - base < 8 << 20 => {
                        // 3.14+: a _PyStackRef, whose low bits are tags. 3.15 suspends
                        // with the value to send (a tagged NULL) above the awaited
                        // object: a NULL at the top is passed over.
                        let mask = !(l.frame_code_tag_mask as u64);
                        match ptr(mem, top - 8)? & mask {
                            0 if top - base >= 16 && mask != !0 => ptr(mem, top - 16)? & mask,
                            v => v,
                        }
                    }
                    _ => 0,
                }
            }
        };
        Ok(GenState::Suspended(raw, top))
    }
}

/// What [`Walker::suspended_frame`] found of a generator or coroutine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GenState {
    /// Suspended: its frame, and the object on top of its value stack (0: none).
    Suspended(RawFrame, u64),
    /// Running now (on some thread's stack).
    Executing,
    /// Finished, not started, or not readable as suspended.
    Gone,
}

pub fn has_duplicates(v: &[u64]) -> bool {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.windows(2).any(|w| w[0] == w[1])
}

#[cfg(test)]
mod tlbc_tests {
    //! Thread-local bytecode (3.14t+) over an in-memory image: which copy a frame runs,
    //! and clean failures on target data that cannot be right.
    use super::*;
    use crate::process::FakeMemory;
    use crate::runtime::layouts::builtin;

    const CODE: u64 = 0x7f00_0000_0000;
    const ARRAY: u64 = 0x7f00_0001_0000;
    const COPY: u64 = 0x7f00_0002_0000;

    fn image(l: &Layout, size: u64, entry1: u64) -> FakeMemory {
        let mut mem = FakeMemory::new();
        let mut code = vec![0u8; 4096];
        let off = l.code_tlbc.unwrap() as usize;
        code[off..off + 8].copy_from_slice(&ARRAY.to_le_bytes());
        mem.map(CODE, code);
        let mut array = vec![0u8; 64];
        let (s, e) = (
            l.code_array_size.unwrap() as usize,
            l.code_array_entries.unwrap() as usize,
        );
        array[s..s + 8].copy_from_slice(&size.to_le_bytes());
        let main = CODE + l.code_adaptive.unwrap() as u64;
        array[e..e + 8].copy_from_slice(&main.to_le_bytes());
        array[e + 8..e + 16].copy_from_slice(&entry1.to_le_bytes());
        mem.map(ARRAY, array);
        mem
    }

    fn thread(tlbc_index: u32) -> Result<RawThread, WalkError> {
        Ok(RawThread {
            frames: vec![RawFrame {
                frame: 0x7f00_0003_0000,
                code: CODE,
                instr: COPY + 6,
                owner: 0,
                tlbc_index,
                bytecode: 0,
                entry: true,
            }],
            ..Default::default()
        })
    }

    #[test]
    fn each_thread_runs_its_own_copy() {
        for minor in [14, 15] {
            let l = builtin(3, minor, true).expect("3.14t+ table").clone();
            let w = Walker::from_layout(l.clone(), 0, 100);
            let mem = image(&l, 2, COPY);
            let mut threads = vec![thread(1), thread(0)];
            w.resolve_bytecode(&mem, &mut threads);
            let t1 = threads[0].as_ref().expect("index 1 resolves");
            assert_eq!(t1.frames[0].bytecode, COPY, "3.{minor}t: entries[1]");
            let t0 = threads[1]
                .as_ref()
                .expect("index 0 is the code object's own");
            assert_eq!(t0.frames[0].bytecode, 0, "3.{minor}t: co_code_adaptive");
        }
    }

    #[test]
    fn bad_target_data_fails_the_thread_cleanly() {
        let l = builtin(3, 14, true).expect("3.14t table").clone();
        let w = Walker::from_layout(l.clone(), 0, 100);
        for (what, mem, idx) in [
            ("index past the array", image(&l, 2, COPY), 2),
            ("garbage index", image(&l, 2, COPY), u32::MAX),
            ("null entry", image(&l, 2, 0), 1),
            ("kernel address", image(&l, 2, u64::MAX), 1),
            ("unmapped array", FakeMemory::new(), 1),
        ] {
            let mut threads = vec![thread(idx)];
            w.resolve_bytecode(&mem, &mut threads);
            assert_eq!(threads[0].as_ref().err(), Some(&WalkError::Read), "{what}");
        }
        // A default build's layout has no thread-local bytecode: nothing is read.
        let gil = builtin(3, 14, false).expect("3.14 table").clone();
        let w = Walker::from_layout(gil, 0, 100);
        let mut threads = vec![thread(1)];
        w.resolve_bytecode(&FakeMemory::new(), &mut threads);
        assert!(threads[0].is_ok());
    }
}
