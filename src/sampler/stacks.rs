//! The stack sampler: raw threads (from any backend) → interned frames and stacks of a
//! profile. It owns the code-object cache, the frame-id cache keyed by (code object,
//! instruction, opcode, owner), the reuse of each thread's unchanged root side, and
//! opcode capture. It reads only through `Memory`, so tests drive it over an in-memory
//! image and count its reads.

use crate::code::opcodes::OpcodeTable;
use crate::code::resolve::{bytecode_start, instruction_offset, resolve_frame_with};
use crate::code::{CodeInfo, CodeReader};
use crate::process::Memory;
use crate::profile::{Profile, ThreadInfo};
use crate::walker::{RawThread, WalkError, Walker};
use std::time::{Duration, Instant};

/// Everything that turns a process image into samples: the walker, the code cache, the
/// frame-id cache. It reads only through `Memory`, so tests drive it over an in-memory
/// image and count its reads.
pub struct StackSampler {
    pub walker: Walker,
    pub code: CodeReader,
    /// Frames whose instruction was an `INSTRUMENTED_*` opcode (tracing or
    /// sys.monitoring active) or `ENTER_EXECUTOR` (tier 2).
    pub instrumented: u64,
    /// Stacks recorded whose top frame moved during their one read (`RawThread::unsettled`).
    pub unsettled: u64,
    pub executor: u64,
    threads: Vec<Result<RawThread, WalkError>>,
    tstates: Vec<u64>,
    /// The main interpreter found by the last walk (0 if none).
    last_interp: u64,
    /// With `--subprocesses`: "process PID (command)", the root of this process's stacks.
    pub process_label: Option<String>,
    /// Python thread names by thread ident, and when they were last read.
    names: std::collections::HashMap<u64, String>,
    names_read: Option<Instant>,
    ids: Vec<u32>,
    infos: Vec<std::rc::Rc<CodeInfo>>,
    ops: Vec<Option<u8>>,
    reqs: Vec<(u64, usize)>,
    /// Per code object: how far into it this thread's frames execute (for `code_upto`).
    upto: Vec<(u64, u64)>,
    /// (code object id, instruction, opcode, owner) → frame id in the profile below.
    frame_ids: std::collections::HashMap<FrameKey, u32>,
    frame_ids_profile: u64,
    /// Per thread state: its OS thread as the kernel numbers it where pyprof runs, and
    /// in the target's namespace where that differs (set by the session; the walker
    /// only knows the interpreter's own `native_thread_id`).
    identities: std::collections::HashMap<u64, (u64, Option<u64>)>,
    /// Plain reads: a stack whose top frame moved while it was read (`RawThread::moved`)
    /// is not recorded at once but set aside here, per thread state, and its walk
    /// reported failed with `WalkError::Moved`: the caller reads it again, and records
    /// the stack set aside (`record_moved`) if no read settles.
    pub defer_moved: bool,
    moved_aside: std::collections::HashMap<u64, RawThread>,
    /// Per thread state: the last stack recorded (for `repeat`).
    recorded: std::collections::HashMap<u64, Recorded>,
    /// Per thread state: the previous stack, leaf first.
    prev_stacks: std::collections::HashMap<u64, PrevStack>,
    keys: Vec<FrameKey>,
    frame_keys_ids: Vec<(FrameKey, u32)>,
    /// `ENTER_EXECUTOR`'s number in this version, if it has one.
    enter_executor: Option<u8>,
    /// `--async-aware`: a thread running an asyncio task is recorded as that task's
    /// stack under `<task NAME>` frames of the tasks awaiting it, outermost first.
    pub asyncio: Option<crate::runtime::asyncio::AsyncioReader>,
    /// Samples recorded as a task's stack (`--async-aware`).
    pub task_samples: u64,
    /// `--async-mode all`: each sample of a thread running an event loop also counts
    /// every task of that loop that waits, as its suspended coroutine chain.
    pub async_all: bool,
    /// Per thread state: its loop's waiting tasks as stacks (root first) and how many
    /// tasks have each, re-read when `next` has passed.
    waiting: std::collections::HashMap<u64, Waiting>,
    /// Task samples added for waiting tasks (`--async-mode all`), and how long reading
    /// the tasks took in all.
    pub waiting_samples: u64,
    pub waiting_read_time: Duration,
    pub waiting_reads: u64,
    /// Set while recording a stack the kernel took (bpf): every frame's code object was
    /// alive at that instant, so one that cannot be decoded now was freed since, and its
    /// frame is recorded as `<freed code object>` (counted in `freed_code`) instead of
    /// failing the sample, when its memory could be read but holds no code object any
    /// more. (A read from userspace can be torn: there it fails.)
    pub code_alive_when_sampled: bool,
    pub freed_code: u64,
    /// With opcodes: the target's executable mappings, to tell a leaf instruction's own
    /// time from native code it called (`Stack::native`), when the sampler saw where the
    /// thread was (`RawThread::ip`, or `ips`).
    pub places: Option<crate::process::places::Places>,
    /// ptrace: the instruction pointers of the threads paused this tick, by thread state.
    pub ips: std::collections::HashMap<u64, u64>,
    /// Native frames interned in the profile `frame_ids_profile`, by object.
    native_ids: Vec<(String, u32)>,
    /// `--native`: the target's native unwinder and symbolizer.
    pub native: Option<crate::process::native::NativeUnwinder>,
    /// `--native`: the native stacks (addresses, leaf first) of the threads whose
    /// registers and stack were read this tick, by thread state.
    pub native_stacks: std::collections::HashMap<u64, Vec<u64>>,
    /// `--native`: an address's frames interned in the profile, outermost first, and
    /// whether it is the eval loop's.
    native_frames: std::collections::HashMap<u64, NativeIds>,
    /// `--native`: of the stack being recorded, how many Python frames each C call of the
    /// eval loop runs, leaf first.
    groups: Vec<usize>,
    /// Stacks merged with their native frames, and of them those whose eval-loop frames
    /// did not match the Python frames one for one (unwinding stopped early, or a frame
    /// without CFI): there the Python frames left over are kept on the root side.
    pub native_merged: u64,
    pub native_mismatched: u64,
}

/// `--native`: what one native address is in the profile.
#[derive(Clone, Debug, Default)]
struct NativeIds {
    /// Its frames, outermost first.
    ids: Vec<u32>,
    /// In the eval loop: the Python frames of one of its C calls stand for it.
    eval: bool,
    /// The program's `main` (or the interpreter's): the frames below it only start the
    /// process (`_start`, `__libc_start_main`: in no symbol table of a stripped libc).
    main: bool,
}

/// The code object at `addr` (`CodeReader::code_upto`); for a stack the kernel took
/// (`alive_when_sampled`), [`CodeInfo::freed`] when its memory reads but holds no code
/// object any more. (A failed read is not that: a process gone, or memory unmapped.)
/// A loop's waiting tasks, as `--async-mode all` records them at each sample.
#[derive(Default)]
struct Waiting {
    next: Option<Instant>,
    /// Stacks (root first) and how many tasks have each.
    stacks: Vec<(Vec<u32>, u64)>,
    /// Each task's coroutine → its stack's index in `stacks`.
    of: std::collections::HashMap<u64, usize>,
    /// Tasks running when the tasks were read, with no stack yet: read at the next
    /// sample they wait.
    missing: Vec<crate::runtime::asyncio::TaskInfo>,
    index: std::collections::HashMap<Vec<u32>, usize>,
}

impl Waiting {
    /// Count one more task (coroutine `coro`) with this stack.
    fn add(&mut self, coro: u64, ids: Vec<u32>) {
        let i = match self.index.get(&ids) {
            Some(&i) => i,
            None => {
                self.index.insert(ids.clone(), self.stacks.len());
                self.stacks.push((ids, 0));
                self.stacks.len() - 1
            }
        };
        self.stacks[i].1 += 1;
        self.of.insert(coro, i);
    }
}

/// Least and most time between two reads of a loop's waiting tasks: a read costs about
/// a dozen system calls per task, so the interval grows with its cost (≤ 1/20 of the
/// time spent reading).
const WAITING_INTERVAL: Duration = Duration::from_millis(250);
const WAITING_MAX_INTERVAL: Duration = Duration::from_secs(5);

fn code_or_freed(
    code: &mut CodeReader,
    alive_when_sampled: bool,
    mem: &dyn Memory,
    addr: u64,
    upto: u64,
) -> Result<std::rc::Rc<CodeInfo>, WalkError> {
    match code.code_upto(mem, addr, upto) {
        Err(e) if alive_when_sampled && e != WalkError::Read => {
            Ok(std::rc::Rc::new(CodeInfo::freed()))
        }
        r => r,
    }
}

/// A thread's previous stack, leaf first: each frame's key and id, and (without opcodes
/// or asyncio) its raw frames, so that the root side the next sample shares with it is
/// recognised before anything is decoded.
#[derive(Clone, Debug, Default)]
struct PrevStack {
    keyed: Vec<(FrameKey, u32)>,
    raw: Vec<crate::walker::RawFrame>,
}

/// A thread's last recorded stack: its thread in the profile and frame ids, root first.
#[derive(Clone, Debug, Default)]
struct Recorded {
    thread: u32,
    ids: Vec<u32>,
    truncated: bool,
}

/// A thread that could not be sampled, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failed {
    /// Its thread state, when the thread list could be read.
    pub tstate: Option<u64>,
    pub error: WalkError,
}

/// What identifies a recorded frame: (code object id, instruction, opcode, owner).
type FrameKey = (u64, u64, u16, u8);

impl StackSampler {
    pub fn new(walker: Walker, table: Option<&'static OpcodeTable>) -> StackSampler {
        StackSampler {
            code: CodeReader::new(&walker.layout, table),
            walker,
            instrumented: 0,
            unsettled: 0,
            executor: 0,
            threads: Vec::new(),
            tstates: Vec::new(),
            last_interp: 0,
            process_label: None,
            names: Default::default(),
            names_read: None,
            ids: Vec::new(),
            infos: Vec::new(),
            upto: Vec::new(),
            ops: Vec::new(),
            reqs: Vec::new(),
            frame_ids: Default::default(),
            frame_ids_profile: 0,
            prev_stacks: Default::default(),
            recorded: Default::default(),
            defer_moved: false,
            moved_aside: Default::default(),
            identities: Default::default(),
            keys: Vec::new(),
            frame_keys_ids: Vec::new(),
            enter_executor: table.and_then(|t| t.opcode("ENTER_EXECUTOR")),
            asyncio: None,
            task_samples: 0,
            async_all: false,
            waiting: Default::default(),
            waiting_samples: 0,
            waiting_read_time: Duration::ZERO,
            waiting_reads: 0,
            code_alive_when_sampled: false,
            freed_code: 0,
            places: None,
            ips: Default::default(),
            native_ids: Vec::new(),
            native: None,
            native_stacks: Default::default(),
            native_frames: Default::default(),
            groups: Vec::new(),
            native_merged: 0,
            native_mismatched: 0,
        }
    }

    /// Is the interpreter initialised (a main interpreter with at least one thread)?
    pub fn ready(&self, mem: &dyn Memory) -> bool {
        match self.walker.main_interpreter(mem) {
            Ok(interp) if interp != 0 => self
                .walker
                .thread_states(mem, interp)
                .map(|t| !t.is_empty())
                .unwrap_or(false),
            _ => false,
        }
    }

    /// One sample of every thread into `profile` (thread names refreshed about once a
    /// second); per-thread failures are returned.
    pub fn sample(&mut self, mem: &dyn Memory, profile: &mut Profile) -> Vec<WalkError> {
        let failed = self.sample_with(mem, profile, None, &mut |_, _| true);
        if self.last_interp != 0 {
            self.refresh_names(mem, self.last_interp, false);
        }
        failed.into_iter().map(|f| f.error).collect()
    }

    /// How often the threads' names are read: once a second, and 4 ms per thread beyond
    /// 250 threads (at most every 10 s), so that a process with thousands of threads does
    /// not spend most of its sampling cost on names, which rarely change.
    fn names_every(&self) -> Duration {
        crate::process::threads::per_thread_interval(
            self.names.len(),
            Duration::from_millis(4),
            Duration::from_secs(1),
            2500,
        )
    }

    /// Is it time to read the threads' names again?
    pub fn names_due(&self) -> bool {
        let every = self.names_every();
        self.names_read.is_none_or(|t| t.elapsed() >= every)
    }

    /// Read the threads' Python names (threading's registry) when due, or now with
    /// `force`.
    pub fn refresh_names(&mut self, mem: &dyn Memory, interp: u64, force: bool) {
        if !force && !self.names_due() {
            return;
        }
        self.names_read = Some(Instant::now());
        // A torn read gives no names: keep the previous ones rather than flicker.
        let names = crate::runtime::objects::thread_names(mem, &self.walker.layout, interp);
        if !names.is_empty() {
            self.names = names;
        }
    }

    /// The main interpreter found by the last full walk (0 if none).
    pub fn last_interp(&self) -> u64 {
        self.last_interp
    }

    /// The thread states of the last walk, in list order.
    pub fn last_tstates(&self) -> &[u64] {
        &self.tstates
    }

    /// The Python name of the thread with `threading.get_ident()` `ident`, if known.
    pub fn thread_name(&self, ident: u64) -> Option<&str> {
        self.names.get(&ident).map(|s| s.as_str())
    }

    /// Walk every thread and record the ones `keep(thread, gil_holder)` accepts (idle
    /// threads dropped, only the GIL holder, ...). `gil` is the thread state holding the
    /// GIL, when the caller knows it. Failures are returned per thread, with the thread
    /// state when the thread list could be read, so that the caller can retry them.
    pub fn sample_with(
        &mut self,
        mem: &dyn Memory,
        profile: &mut Profile,
        gil: Option<u64>,
        keep: &mut dyn FnMut(&RawThread, Option<u64>) -> bool,
    ) -> Vec<Failed> {
        self.sample_some(mem, profile, gil, &|_, _, _| true, keep)
    }

    /// `sample_with`, walking only the threads `want(tstate, thread_id, native_id)`
    /// accepts (the others are not read beyond their thread state, nor recorded).
    pub fn sample_some(
        &mut self,
        mem: &dyn Memory,
        profile: &mut Profile,
        gil: Option<u64>,
        want: &dyn Fn(u64, u64, Option<u64>) -> bool,
        keep: &mut dyn FnMut(&RawThread, Option<u64>) -> bool,
    ) -> Vec<Failed> {
        let mut failed = Vec::new();
        self.code.begin_tick();
        self.moved_aside.clear();
        self.last_interp = 0;
        let interp = match self.walker.main_interpreter(mem) {
            Ok(0) => return failed, // not initialised yet, or finalised
            Ok(i) => i,
            Err(error) => {
                failed.push(Failed {
                    tstate: None,
                    error,
                });
                return failed;
            }
        };
        self.last_interp = interp;
        let mut threads = std::mem::take(&mut self.threads);
        if let Err(error) =
            self.walker
                .walk_some(mem, interp, &mut threads, &mut self.tstates, want)
        {
            failed.push(Failed {
                tstate: None,
                error,
            });
            self.threads = threads;
            return failed;
        }
        for (i, t) in threads.drain(..).enumerate() {
            let tstate = self.tstates.get(i).copied();
            let t = match t {
                Ok(raw) if !keep(&raw, gil) => continue,
                Err(WalkError::NotWalked) => continue,
                Ok(raw) if raw.moved && self.defer_moved && tstate.is_some() => {
                    let error = self.set_aside(mem, raw).err().unwrap_or(WalkError::Moved);
                    failed.push(Failed { tstate, error });
                    continue;
                }
                t => t,
            };
            if let Err(error) = t.and_then(|raw| self.record_thread(mem, &raw, profile, None)) {
                failed.push(Failed { tstate, error });
            }
        }
        self.threads = threads;
        failed
    }

    /// `sample_with` for the threads `known` (thread state, `thread_id`, native id) only,
    /// without reading the interpreter's thread list (see `Walker::walk_listed`).
    pub fn sample_listed(
        &mut self,
        mem: &dyn Memory,
        profile: &mut Profile,
        gil: Option<u64>,
        known: &[(u64, u64, Option<u64>)],
        keep: &mut dyn FnMut(&RawThread, Option<u64>) -> bool,
    ) -> Vec<Failed> {
        let mut failed = Vec::new();
        self.code.begin_tick();
        self.moved_aside.clear();
        let mut threads = std::mem::take(&mut self.threads);
        self.walker.walk_listed(mem, known, &mut threads);
        self.tstates.clear();
        self.tstates.extend(known.iter().map(|k| k.0));
        for (i, t) in threads.drain(..).enumerate() {
            let tstate = self.tstates.get(i).copied();
            let t = match t {
                Ok(raw) if !keep(&raw, gil) => continue,
                Ok(raw) if raw.moved && self.defer_moved && tstate.is_some() => {
                    let error = self.set_aside(mem, raw).err().unwrap_or(WalkError::Moved);
                    failed.push(Failed { tstate, error });
                    continue;
                }
                t => t,
            };
            if let Err(error) = t.and_then(|raw| self.record_thread(mem, &raw, profile, None)) {
                failed.push(Failed { tstate, error });
            }
        }
        self.threads = threads;
        failed
    }

    /// Walk one thread again (a retry after a failure) and record it if `keep` says so.
    /// Ok(false) when the thread is not kept.
    pub fn resample_thread(
        &mut self,
        mem: &dyn Memory,
        tstate: u64,
        profile: &mut Profile,
        gil: Option<u64>,
        keep: &mut dyn FnMut(&RawThread, Option<u64>) -> bool,
    ) -> Result<bool, WalkError> {
        let mut raw = RawThread::default();
        self.walker.walk_thread(mem, tstate, &mut raw)?;
        if !keep(&raw, gil) {
            return Ok(false);
        }
        if raw.moved && self.defer_moved {
            self.set_aside(mem, raw)?;
            return Err(WalkError::Moved);
        }
        self.record_thread(mem, &raw, profile, None)?;
        Ok(true)
    }

    /// Keep a stack that moved while it was read, unless one of its thread is kept
    /// already (the first is the nearest to the tick's instant), if its code objects are
    /// code objects (else the stack is torn beyond use: that error).
    fn set_aside(&mut self, mem: &dyn Memory, raw: RawThread) -> Result<(), WalkError> {
        if self.moved_aside.contains_key(&raw.tstate) {
            return Ok(());
        }
        let alive = self.code_alive_when_sampled;
        for (i, f) in raw.frames.iter().enumerate() {
            if i == 0 || raw.frames[i - 1].code != f.code {
                code_or_freed(&mut self.code, alive, mem, f.code, 0)?;
            }
        }
        self.moved_aside.insert(raw.tstate, raw);
        Ok(())
    }

    /// Record the stack set aside for `tstate` (see `defer_moved`), if there is one:
    /// Ok(true) if recorded.
    pub fn record_moved(
        &mut self,
        mem: &dyn Memory,
        tstate: u64,
        profile: &mut Profile,
    ) -> Result<bool, WalkError> {
        let Some(raw) = self.moved_aside.remove(&tstate) else {
            return Ok(false);
        };
        self.record_thread(mem, &raw, profile, None)?;
        Ok(true)
    }

    /// Record one walked thread into `profile`. `live_op(frame index, address)`, when
    /// given, supplies the live opcode bytes that were copied with the stack (the bpf
    /// sampler copies them in the kernel); bytes it does not have are read from `mem`.
    pub fn record_thread(
        &mut self,
        mem: &dyn Memory,
        raw: &RawThread,
        profile: &mut Profile,
        live_op: Option<&dyn Fn(usize, u64) -> Option<u8>>,
    ) -> Result<(), WalkError> {
        if self.frame_ids_profile != profile.id {
            self.frame_ids.clear();
            self.prev_stacks.clear();
            self.recorded.clear();
            self.native_ids.clear();
            self.native_frames.clear();
            self.waiting.clear();
            self.frame_ids_profile = profile.id;
        }
        // 0. --async-aware: the task this thread's event loop is running, if any, and
        //    where its coroutine's frame is on the stack (frames below it are the loop's).
        let mut task: Option<(Vec<String>, usize)> = None;
        let mut running_coro = 0;
        if let Some(reader) = self.asyncio.as_mut() {
            let walker = &self.walker;
            let is_frame_of =
                |f: &crate::walker::RawFrame, coro: u64| walker.is_frame_of(mem, f, coro);
            if let Some((chain, at)) = reader
                .running(mem, &walker.layout, raw, &is_frame_of)
                .map_err(WalkError::Asyncio)?
            {
                running_coro = chain.coro;
                task = Some((chain.names, at));
            }
        }
        let layout = &self.walker.layout;
        let table = self.code.opcode_table();
        let n = raw.frames.len();
        let mut prev = self.prev_stacks.remove(&raw.tstate).unwrap_or_default();
        // 0b. Without opcodes or asyncio, a frame is its raw fields and its code object:
        //     the root-side frames equal to the previous stack's (a deep stack's whole
        //     root side, as a rule) keep their ids once their code objects are validated
        //     again (one per run of frames of the same code object).
        let by_raw = table.is_none() && task.is_none() && self.asyncio.is_none();
        let mut raw_same = 0;
        if by_raw {
            let m = prev.raw.len().min(prev.keyed.len());
            while raw_same < n.min(m) && prev.raw[m - 1 - raw_same] == raw.frames[n - 1 - raw_same]
            {
                raw_same += 1;
            }
            let mut j = n;
            while j > n - raw_same {
                j -= 1;
                let code = raw.frames[j].code;
                if j + 1 < n && raw.frames[j + 1].code == code {
                    continue;
                }
                let id =
                    code_or_freed(&mut self.code, self.code_alive_when_sampled, mem, code, 0)?.id;
                if id == CodeInfo::FREED || id != prev.keyed[prev.keyed.len() - (n - j)].0 .0 {
                    raw_same = n - 1 - j;
                    break;
                }
            }
        }
        let fresh = n - raw_same;
        // 1. The code object of every other frame (cached, validated once per tick).
        self.infos.clear();
        // With opcodes on 3.11+, the read that validates a code object also brings the
        // bytecode through the furthest instruction its frames execute.
        self.upto.clear();
        if table.is_some() && layout.code_adaptive.is_some() {
            // (Not for a frame executing a thread's own copy of the bytecode: 3.14t+.)
            for rf in raw.frames.iter().filter(|rf| rf.bytecode == 0) {
                match self.upto.iter_mut().find(|u| u.0 == rf.code) {
                    Some(u) => u.1 = u.1.max(rf.instr.saturating_add(2)),
                    None => self.upto.push((rf.code, rf.instr.saturating_add(2))),
                }
            }
        }
        for (i, rf) in raw.frames[..fresh].iter().enumerate() {
            // Recursion: the same code object as the frame before costs nothing more.
            if i > 0 && raw.frames[i - 1].code == rf.code {
                let prev = self.infos[i - 1].clone();
                self.infos.push(prev);
            } else {
                let upto = self.upto.iter().find(|u| u.0 == rf.code).map_or(0, |u| u.1);
                let alive = self.code_alive_when_sampled;
                self.infos
                    .push(code_or_freed(&mut self.code, alive, mem, rf.code, upto)?);
            }
        }
        // 2. With opcodes on 3.11+, read the live opcodes in one system call: one range
        //    per code object, spanning the instructions its frames execute (a recursion
        //    500 deep in one function is one small range, not 500).
        self.ops.clear();
        self.ops.resize(raw.frames.len(), None);
        if table.is_some() {
            // (code object id, first, last) byte offsets; and per frame (range, offset).
            let mut ranges: Vec<(u64, u64, u32, u32)> = Vec::new(); // (id, code_start, lo, hi)
            let mut at: Vec<Option<(usize, u32)>> = Vec::with_capacity(raw.frames.len());
            let mut live: (u64, Option<&[u8]>) = (0, None);
            for (i, (rf, info)) in raw.frames.iter().zip(&self.infos).enumerate() {
                let Some(owner) = instruction_offset(layout, info, rf).and_then(|o| info.owner(o))
                else {
                    at.push(None);
                    continue;
                };
                if layout.code_adaptive.is_none() {
                    // ≤3.10: bytecode is immutable; the copy read once is the truth.
                    self.ops[i] = info.bytecode.get(owner as usize).copied();
                    at.push(None);
                    continue;
                }
                // Copied with the stack (bpf): the byte as it was at the sample.
                if let Some(op) = live_op.and_then(|f| f(i, info.code_start + owner as u64)) {
                    self.ops[i] = Some(op);
                    at.push(None);
                    continue;
                }
                // Read this tick with the code object's validation: no extra system call.
                // (One lookup per run of frames of the same code object: recursion.)
                // A frame executing its thread's own copy (3.14t+) reads from that copy.
                let start = bytecode_start(info, rf);
                if live.0 != rf.code {
                    live = (rf.code, self.code.live_bytes(rf.code));
                }
                let byte = live.1.filter(|_| rf.bytecode == 0).and_then(|b| {
                    b.get((info.code_start + owner as u64).checked_sub(rf.code)? as usize)
                });
                if let Some(&op) = byte {
                    self.ops[i] = Some(op);
                    at.push(None);
                    continue;
                }
                let r = match ranges.iter().position(|r| r.0 == info.id && r.1 == start) {
                    Some(r) => {
                        ranges[r].2 = ranges[r].2.min(owner);
                        ranges[r].3 = ranges[r].3.max(owner);
                        r
                    }
                    None => {
                        ranges.push((info.id, start, owner, owner));
                        ranges.len() - 1
                    }
                };
                at.push(Some((r, owner)));
            }
            if !ranges.is_empty() {
                self.reqs.clear();
                self.reqs.extend(
                    ranges
                        .iter()
                        .map(|&(_, start, lo, hi)| (start + lo as u64, (hi - lo + 1) as usize)),
                );
                let total: usize = self.reqs.iter().map(|r| r.1).sum();
                let mut buf = vec![0u8; total];
                let ok = mem.read_scatter(&self.reqs, &mut buf);
                let mut base = Vec::with_capacity(ranges.len());
                let mut pos = 0;
                for r in &self.reqs {
                    base.push(pos);
                    pos += r.1;
                }
                for (i, a) in at.iter().enumerate() {
                    if let Some((r, owner)) = *a {
                        if !ok[r] {
                            return Err(WalkError::Read);
                        }
                        self.ops[i] = buf.get(base[r] + (owner - ranges[r].2) as usize).copied();
                    }
                }
            }
        }
        // 3. Frame ids: (code object, instruction, opcode, owner) → interned frame. The
        //    root side of a stack rarely changes between samples: frames whose keys match
        //    the thread's previous stack (aligned at the root) reuse its ids.
        let mut same = raw_same;
        self.keys.clear();
        for (i, rf) in raw.frames[..fresh].iter().enumerate() {
            let op = self.ops[i];
            self.keys.push((
                self.infos[i].id,
                rf.instr,
                op.map_or(u16::MAX, u16::from),
                rf.owner,
            ));
        }
        let keyed = &prev.keyed;
        while same < n
            && same < keyed.len()
            && keyed[keyed.len() - 1 - same].0 == self.keys[n - 1 - same]
        {
            same += 1;
        }
        self.ids.clear();
        self.frame_keys_ids.clear();
        // How many ids (leaf first) belong to the running task: its frames, not the loop's.
        let mut task_ids = None;
        // (Without opcodes or a task, the frames shared with the previous stack are
        // copied over whole after the loop.)
        let bulk = if table.is_none() && task.is_none() {
            same
        } else {
            0
        };
        for i in 0..n - bulk {
            if task.as_ref().is_some_and(|t| t.1 + 1 == i) {
                task_ids = Some(self.ids.len());
            }
            let (key, id) = if i >= n - same {
                keyed[keyed.len() - (n - i)]
            } else {
                let key = self.keys[i];
                match self.frame_ids.get(&key) {
                    Some(&id) => (key, id),
                    None => {
                        let (info, rf, op) = (&self.infos[i], &raw.frames[i], self.ops[i]);
                        let id = if info.id == CodeInfo::FREED {
                            profile.intern_frame(&crate::profile::Frame::freed_code())
                        } else {
                            match resolve_frame_with(layout, info, rf, table, op, mem)? {
                                Some(frame) => profile.intern_frame(&frame),
                                None => u32::MAX,
                            }
                        };
                        if self.frame_ids.len() > 1_000_000 {
                            self.frame_ids.clear();
                        }
                        self.frame_ids.insert(key, id);
                        (key, id)
                    }
                }
            };
            self.frame_keys_ids.push((key, id));
            if id == u32::MAX {
                continue;
            }
            if key.0 == CodeInfo::FREED {
                self.freed_code += 1;
            }
            if let (Some(t), Some(&Some(op))) = (table, self.ops.get(i)) {
                if t.is_instrumented(op) {
                    self.instrumented += 1;
                } else if Some(op) == self.enter_executor {
                    self.executor += 1;
                }
            }
            self.ids.push(id);
        }
        let tail = &keyed[keyed.len() - bulk..];
        self.freed_code += tail.iter().filter(|k| k.0 .0 == CodeInfo::FREED).count() as u64;
        self.frame_keys_ids.extend_from_slice(tail);
        self.ids
            .extend(tail.iter().map(|k| k.1).filter(|&id| id != u32::MAX));
        // Keep this stack (its keys and ids, and raw frames) for the thread's next sample.
        std::mem::swap(&mut prev.keyed, &mut self.frame_keys_ids);
        if self.native.is_some() {
            // The Python frames each C call of the eval loop runs (leaf first).
            self.groups.clear();
            let mut run = 0;
            for (rf, k) in raw.frames.iter().zip(&prev.keyed) {
                run += (k.1 != u32::MAX) as usize;
                if rf.entry {
                    self.groups.push(run);
                    run = 0;
                }
            }
            if run > 0 {
                self.groups.push(run);
            }
        }
        prev.raw.clear();
        if by_raw {
            prev.raw.extend_from_slice(&raw.frames);
        }
        if self.prev_stacks.len() < 100_000 {
            self.prev_stacks.insert(raw.tstate, prev);
        }
        if let Some((names, _)) = &task {
            self.ids.truncate(task_ids.unwrap_or(self.ids.len()));
            self.ids.reverse();
            let tasks: Vec<u32> = names
                .iter()
                .map(|name| profile.intern_frame(&crate::profile::Frame::task(name)))
                .collect();
            self.ids.splice(0..0, tasks);
            self.task_samples += 1;
        } else if !self.ids.is_empty() {
            self.ids.reverse();
            if let Some(stack) = self.native_stacks.remove(&raw.tstate) {
                self.merge_native(&stack, profile);
            }
        }
        if self.async_all && self.asyncio.is_some() {
            self.record_waiting(mem, raw, running_coro, profile)?;
        }
        if !self.ids.is_empty() {
            let thread = self.thread_of(raw, profile);
            let native = if table.is_some() {
                self.native_of(raw, profile)
            } else {
                None
            };
            profile.add(thread, &self.ids, raw.truncated, native);
            if self.recorded.len() < 100_000 {
                let r = self.recorded.entry(raw.tstate).or_default();
                r.thread = thread;
                r.truncated = raw.truncated;
                r.ids.clear();
                r.ids.extend_from_slice(&self.ids);
            }
        } else {
            self.recorded.remove(&raw.tstate);
        }
        self.unsettled += raw.unsettled as u64;
        Ok(())
    }

    /// The profile's thread for `raw`.
    fn thread_of(&self, raw: &RawThread, profile: &mut Profile) -> u32 {
        let (native_id, ns_id) = match self.identities.get(&raw.tstate) {
            Some(&(host, ns)) => (Some(host), ns),
            None => (raw.native_id, None),
        };
        profile.intern_thread(&ThreadInfo {
            thread_id: raw.thread_id,
            native_id,
            ns_id,
            name: self.names.get(&raw.thread_id).cloned(),
            process: self.process_label.clone(),
        })
    }

    /// `--async-mode all`: one sample for each task of `raw`'s event loop that waits
    /// (awaits no other task, and is not the task running at this sample, whose
    /// coroutine is `running`), as `<task …>` frames (each awaiting task's, with where it
    /// awaits) over where its coroutine chain is suspended. The tasks are re-read every
    /// `WAITING_INTERVAL` or more (their graph changes rarely); in between, the stacks
    /// read last are counted. A task running when they are read keeps the stack it had.
    fn record_waiting(
        &mut self,
        mem: &dyn Memory,
        raw: &RawThread,
        running: u64,
        profile: &mut Profile,
    ) -> Result<(), WalkError> {
        let now = Instant::now();
        let due = self
            .waiting
            .get(&raw.tstate)
            .is_none_or(|w| w.next.is_none_or(|t| now >= t));
        if due {
            let tasks = match self.asyncio.as_mut() {
                Some(reader) => reader
                    .thread_tasks(mem, &self.walker, raw)
                    .map_err(WalkError::Asyncio)?,
                None => Vec::new(),
            };
            let old = self.waiting.remove(&raw.tstate).unwrap_or_default();
            let mut fresh = Waiting::default();
            for t in tasks.into_iter().filter(|t| !t.awaited) {
                match (t.running, old.of.get(&t.coro)) {
                    (true, Some(&i)) => fresh.add(t.coro, old.stacks[i].0.clone()),
                    // Running now, not seen waiting yet: read at a sample it waits.
                    (true, None) => fresh.missing.push(t),
                    (false, _) => {
                        let ids = self.waiting_stack(mem, &t, profile);
                        fresh.add(t.coro, ids);
                    }
                }
            }
            let cost = now.elapsed();
            self.waiting_read_time += cost;
            self.waiting_reads += 1;
            fresh.next =
                Some(Instant::now() + (cost * 20).clamp(WAITING_INTERVAL, WAITING_MAX_INTERVAL));
            if self.waiting.len() > 10_000 {
                self.waiting.clear();
            }
            self.waiting.insert(raw.tstate, fresh);
        }
        // Tasks that were running when the tasks were read: where they wait now.
        if let Some(mut w) = self.waiting.remove(&raw.tstate) {
            if !w.missing.is_empty() {
                let layout = self.walker.layout.clone();
                let objs = crate::runtime::objects::Objects::new(mem, &layout);
                let mut still = Vec::new();
                for mut t in std::mem::take(&mut w.missing) {
                    if t.coro == running {
                        still.push(t);
                        continue;
                    }
                    match crate::runtime::asyncio::coroutine_chain(mem, &self.walker, &objs, t.coro)
                    {
                        None => still.push(t),
                        Some(frames) if frames.is_empty() => {}
                        Some(frames) => {
                            t.frames = frames;
                            let ids = self.waiting_stack(mem, &t, profile);
                            w.add(t.coro, ids);
                        }
                    }
                }
                w.missing = still;
            }
            self.waiting.insert(raw.tstate, w);
        }
        let Some(w) = self.waiting.remove(&raw.tstate) else {
            return Ok(());
        };
        if !w.stacks.is_empty() {
            // The running task is this sample's own stack, not a waiting one.
            let skip = w.of.get(&running).copied();
            let thread = self.thread_of(raw, profile);
            for (i, (ids, n)) in w.stacks.iter().enumerate() {
                let n = n - (Some(i) == skip) as u64;
                profile.add_n(thread, ids, n);
                self.waiting_samples += n;
            }
        }
        self.waiting.insert(raw.tstate, w);
        Ok(())
    }

    /// A waiting task's stack, root first: `<task outermost>`, where it awaits, …,
    /// `<task t>`, where `t` waits.
    fn waiting_stack(
        &mut self,
        mem: &dyn Memory,
        t: &crate::runtime::asyncio::TaskInfo,
        profile: &mut Profile,
    ) -> Vec<u32> {
        let layout = &self.walker.layout;
        let mut ids: Vec<u32> = Vec::new();
        for (i, n) in t.names.iter().enumerate() {
            ids.push(profile.intern_frame(&crate::profile::Frame::task(n)));
            let frames = t.awaiter_frames.get(i).unwrap_or(&t.frames);
            for rf in frames.iter().rev() {
                let Ok(info) = code_or_freed(&mut self.code, false, mem, rf.code, 0) else {
                    continue;
                };
                if let Ok(Some(f)) = resolve_frame_with(layout, &info, rf, None, None, mem) {
                    ids.push(profile.intern_frame(&f));
                }
            }
        }
        ids
    }

    /// `--native`: interleave the Python frames (`self.ids`, root first) with the native
    /// stack `stack` (leaf first): each eval-loop frame is replaced by the Python frames
    /// its C call runs (`self.groups`), matched from the leaf.
    fn merge_native(&mut self, stack: &[u64], profile: &mut Profile) {
        let Some(unwinder) = self.native.as_mut() else {
            return;
        };
        for &addr in stack {
            self.native_frames.entry(addr).or_insert_with(|| {
                let s = unwinder.symbolize(addr);
                let ids = s
                    .shown()
                    .map(|f| profile.intern_frame(&crate::profile::Frame::native_code(f)))
                    .collect();
                NativeIds {
                    ids,
                    eval: s.eval,
                    main: s.is_main(),
                }
            });
        }
        let native: Vec<crate::process::native::NativeAt<'_, u32>> = stack
            .iter()
            .filter_map(|a| self.native_frames.get(a))
            .map(|n| crate::process::native::NativeAt {
                frames: &n.ids,
                eval: n.eval,
                main: n.main,
            })
            .collect();
        self.ids.reverse(); // leaf first
        match crate::process::native::interleave(&self.ids, &self.groups, &native) {
            Some((mut out, matched)) => {
                self.native_mismatched += !matched as u64;
                self.native_merged += 1;
                out.reverse();
                self.ids = out;
            }
            None => self.ids.reverse(),
        }
    }

    /// With opcodes: the native frame of where `raw`'s thread was executing, if that was
    /// outside the interpreter (None in it, or when no sampler saw; counted in
    /// `ip_seen`/`ip_unseen`).
    fn native_of(&mut self, raw: &RawThread, profile: &mut Profile) -> Option<u32> {
        let ip = raw.ip.or_else(|| self.ips.get(&raw.tstate).copied());
        let (Some(ip), Some(places)) = (ip, self.places.as_mut()) else {
            profile.meta.ip_unseen += 1;
            return None;
        };
        profile.meta.ip_seen += 1;
        let crate::process::places::Place::Native(obj) = places.place(ip) else {
            return None;
        };
        if let Some(&(_, id)) = self.native_ids.iter().find(|(o, _)| o == obj) {
            return Some(id);
        }
        let id = profile.intern_frame(&crate::profile::Frame::native(obj));
        self.native_ids.push((obj.to_string(), id));
        Some(id)
    }

    /// Say which OS thread runs thread state `tstate` (host id; namespaced id if it
    /// differs): the profile's threads carry these.
    pub fn set_identity(&mut self, tstate: u64, host: u64, ns: Option<u64>) {
        if self.identities.len() > 100_000 {
            self.identities.clear();
        }
        self.identities.insert(tstate, (host, ns));
    }

    /// Forget the identities of thread states not in `alive`.
    pub fn keep_identities(&mut self, alive: &std::collections::HashSet<u64>) {
        self.identities.retain(|t, _| alive.contains(t));
    }

    /// Thread states with a stack `repeat` can record again.
    pub fn repeatable(&self) -> std::collections::HashSet<u64> {
        self.recorded.keys().copied().collect()
    }

    /// Record the stack thread state `tstate` had at its last sample again, without
    /// reading anything: for a thread that provably did not run since (its stack cannot
    /// have changed). False when there is no such stack in this profile.
    pub fn repeat(&mut self, tstate: u64, profile: &mut Profile) -> bool {
        if self.frame_ids_profile != profile.id {
            return false;
        }
        match self.recorded.get(&tstate) {
            Some(r) if !r.ids.is_empty() => {
                profile.add(r.thread, &r.ids, r.truncated, None);
                true
            }
            _ => false,
        }
    }
}
