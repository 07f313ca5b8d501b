//! The sampler: attach to a target, take samples on a fixed-rate clock, stop on duration,
//! Ctrl-C/SIGTERM or target exit, and count every failure by reason.
//!
//! The clock is scheduled by absolute deadlines (`start + k * period`), so it does not
//! drift; a tick that comes too late is counted as late and skipped, never silently
//! dropped. In blocking mode every thread of the target is paused (ptrace) for the
//! duration of one tick and always resumed (the lock is released on drop, and the
//! kernel detaches a tracer that dies).

use crate::code::opcodes::{self, OpcodeTable};
use crate::code::{CodeInfo, CodeReader};
use crate::process::{LiveMemory, Memory};
use crate::profile::{Frame, Profile, ThreadInfo};
use crate::runtime::layout::{FrameKind, Layout};
use crate::runtime::{self, DiscoverError, PythonRuntime};
use crate::walker::{RawFrame, RawThread, WalkError, Walker};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Default deepest stack we follow before marking it truncated.
pub const DEFAULT_MAX_DEPTH: usize = 10_000;

#[derive(Clone, Debug)]
pub struct Config {
    pub rate_hz: f64,
    pub duration: Option<Duration>,
    pub blocking: bool,
    pub opcodes: bool,
    pub max_depth: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rate_hz: 100.0,
            duration: None,
            blocking: true,
            opcodes: false,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// Why recording ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    Duration,
    Interrupted,
    TargetExited,
}

/// Everything that turns a process image into samples: the walker, the code cache, the
/// frame-id cache. It reads only through `Memory`, so tests drive it over an in-memory
/// image and count its reads.
pub struct StackSampler {
    pub walker: Walker,
    pub code: CodeReader,
    /// Frames whose instruction was an `INSTRUMENTED_*` opcode (tracing or
    /// sys.monitoring active) or `ENTER_EXECUTOR` (tier 2).
    pub instrumented: u64,
    pub executor: u64,
    threads: Vec<Result<RawThread, WalkError>>,
    tstates: Vec<u64>,
    /// Read the GIL holder each tick (for a filter that needs it).
    pub want_gil: bool,
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
    /// Per thread state: the previous stack's (key, frame id), leaf first.
    prev_stacks: std::collections::HashMap<u64, Vec<(FrameKey, u32)>>,
    keys: Vec<FrameKey>,
    frame_keys_ids: Vec<(FrameKey, u32)>,
    /// `ENTER_EXECUTOR`'s number in this version, if it has one.
    enter_executor: Option<u8>,
}

/// What identifies a recorded frame: (code object id, instruction, opcode, owner).
type FrameKey = (u64, u64, u16, u8);

impl StackSampler {
    pub fn new(walker: Walker, table: Option<&'static OpcodeTable>) -> StackSampler {
        StackSampler {
            code: CodeReader::new(&walker.layout, table),
            walker,
            instrumented: 0,
            executor: 0,
            threads: Vec::new(),
            tstates: Vec::new(),
            want_gil: false,
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
            keys: Vec::new(),
            frame_keys_ids: Vec::new(),
            enter_executor: table.and_then(|t| t.opcode("ENTER_EXECUTOR")),
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

    /// One sample of every thread into `profile`; per-thread failures are returned.
    pub fn sample(&mut self, mem: &dyn Memory, profile: &mut Profile) -> Vec<WalkError> {
        self.sample_with(mem, profile, &mut |_, _| true)
    }

    /// `sample`, keeping only the threads `keep(thread, gil_holder)` accepts (idle
    /// threads dropped, only the GIL holder, ...). `gil_holder` is the thread state
    /// holding the GIL, when known.
    pub fn sample_with(
        &mut self,
        mem: &dyn Memory,
        profile: &mut Profile,
        keep: &mut dyn FnMut(&RawThread, Option<u64>) -> bool,
    ) -> Vec<WalkError> {
        let mut errors = Vec::new();
        self.code.begin_tick();
        let interp = match self.walker.main_interpreter(mem) {
            Ok(0) => return errors, // not initialised yet, or finalised
            Ok(i) => i,
            Err(e) => {
                errors.push(e);
                return errors;
            }
        };
        let gil = if self.want_gil {
            self.walker.gil_holder(mem, interp)
        } else {
            None
        };
        // Thread names (threading's registry), refreshed about once a second.
        if self
            .names_read
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.names_read = Some(Instant::now());
            // A torn read gives no names: keep the previous ones rather than flicker.
            let names = crate::runtime::objects::thread_names(mem, &self.walker.layout, interp);
            if !names.is_empty() {
                self.names = names;
            }
        }
        let mut threads = std::mem::take(&mut self.threads);
        if let Err(e) = self
            .walker
            .walk_all(mem, interp, &mut threads, &mut self.tstates)
        {
            errors.push(e);
            self.threads = threads;
            return errors;
        }
        for (i, t) in threads.drain(..).enumerate() {
            // A thread read in the batch may have moved on (or ended) before its chunk was
            // copied: read it alone once more before counting a failure.
            let t = t.or_else(|e| {
                let tstate = *self.tstates.get(i).ok_or(e.clone())?;
                let mut raw = RawThread::default();
                self.walker.walk_thread(mem, tstate, &mut raw).map(|()| raw)
            });
            let t = match t {
                Ok(raw) if !keep(&raw, gil) => continue,
                t => t,
            };
            if let Err(e) = t.and_then(|raw| self.record_thread(mem, &raw, profile)) {
                errors.push(e);
            }
        }
        self.threads = threads;
        errors
    }

    fn record_thread(
        &mut self,
        mem: &dyn Memory,
        raw: &RawThread,
        profile: &mut Profile,
    ) -> Result<(), WalkError> {
        if self.frame_ids_profile != profile.id {
            self.frame_ids.clear();
            self.prev_stacks.clear();
            self.frame_ids_profile = profile.id;
        }
        let layout = &self.walker.layout;
        let table = self.code.opcode_table();
        // 1. The code object of every frame (cached, validated once per tick).
        self.infos.clear();
        // With opcodes on 3.11+, the read that validates a code object also brings the
        // bytecode through the furthest instruction its frames execute.
        self.upto.clear();
        if table.is_some() && layout.code_adaptive.is_some() {
            for rf in &raw.frames {
                match self.upto.iter_mut().find(|u| u.0 == rf.code) {
                    Some(u) => u.1 = u.1.max(rf.instr.saturating_add(2)),
                    None => self.upto.push((rf.code, rf.instr.saturating_add(2))),
                }
            }
        }
        for (i, rf) in raw.frames.iter().enumerate() {
            // Recursion: the same code object as the frame before costs nothing more.
            if i > 0 && raw.frames[i - 1].code == rf.code {
                let prev = self.infos[i - 1].clone();
                self.infos.push(prev);
            } else {
                let upto = self.upto.iter().find(|u| u.0 == rf.code).map_or(0, |u| u.1);
                self.infos.push(self.code.code_upto(mem, rf.code, upto)?);
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
                // Read this tick with the code object's validation: no extra system call.
                // (One lookup per run of frames of the same code object: recursion.)
                if live.0 != rf.code {
                    live = (rf.code, self.code.live_bytes(rf.code));
                }
                let byte = live.1.and_then(|b| {
                    b.get((info.code_start + owner as u64).checked_sub(rf.code)? as usize)
                });
                if let Some(&op) = byte {
                    self.ops[i] = Some(op);
                    at.push(None);
                    continue;
                }
                let r = match ranges.iter().position(|r| r.0 == info.id) {
                    Some(r) => {
                        ranges[r].2 = ranges[r].2.min(owner);
                        ranges[r].3 = ranges[r].3.max(owner);
                        r
                    }
                    None => {
                        ranges.push((info.id, info.code_start, owner, owner));
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
        let n = raw.frames.len();
        let mut prev = self.prev_stacks.remove(&raw.tstate).unwrap_or_default();
        let mut same = 0;
        self.keys.clear();
        for (i, rf) in raw.frames.iter().enumerate() {
            let op = self.ops[i];
            self.keys.push((
                self.infos[i].id,
                rf.instr,
                op.map_or(u16::MAX, u16::from),
                rf.owner,
            ));
        }
        while same < n
            && same < prev.len()
            && prev[prev.len() - 1 - same].0 == self.keys[n - 1 - same]
        {
            same += 1;
        }
        self.ids.clear();
        self.frame_keys_ids.clear();
        for i in 0..n {
            let key = self.keys[i];
            let id = if i >= n - same {
                prev[prev.len() - (n - i)].1
            } else {
                match self.frame_ids.get(&key) {
                    Some(&id) => id,
                    None => {
                        let (info, rf, op) = (&self.infos[i], &raw.frames[i], self.ops[i]);
                        let id = match resolve_frame_with(layout, info, rf, table, op, mem)? {
                            Some(frame) => profile.intern_frame(&frame),
                            None => u32::MAX,
                        };
                        if self.frame_ids.len() > 1_000_000 {
                            self.frame_ids.clear();
                        }
                        self.frame_ids.insert(key, id);
                        id
                    }
                }
            };
            self.frame_keys_ids.push((key, id));
            if id == u32::MAX {
                continue;
            }
            if let (Some(t), Some(op)) = (table, self.ops[i]) {
                if t.is_instrumented(op) {
                    self.instrumented += 1;
                } else if Some(op) == self.enter_executor {
                    self.executor += 1;
                }
            }
            self.ids.push(id);
        }
        // Keep this stack (its keys and ids) for the thread's next sample.
        prev.clear();
        prev.append(&mut self.frame_keys_ids);
        if self.prev_stacks.len() < 100_000 {
            self.prev_stacks.insert(raw.tstate, prev);
        }
        if !self.ids.is_empty() {
            self.ids.reverse();
            let thread = profile.intern_thread(&ThreadInfo {
                thread_id: raw.thread_id,
                native_id: raw.native_id,
                name: self.names.get(&raw.thread_id).cloned(),
                process: self.process_label.clone(),
            });
            profile.add(thread, &self.ids, raw.truncated);
        }
        Ok(())
    }
}

/// Which threads a sample keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadFilter {
    /// Keep threads the OS says are waiting (sleeping, blocked on a lock or I/O).
    pub idle: bool,
    /// Keep only the thread holding the GIL.
    pub gil_only: bool,
}

/// An attached target: its memory, its interpreter and the sampler over them.
pub struct Session {
    pub pid: i32,
    pub mem: LiveMemory,
    pub runtime: PythonRuntime,
    pub sampler: StackSampler,
    pub filter: ThreadFilter,
    os_threads: crate::process::threads::ThreadStates,
    tids: crate::process::threads::TidResolver,
    /// Threads dropped as idle / not holding the GIL (not failures).
    pub dropped_idle: u64,
    pub dropped_gil: u64,
}

impl Session {
    pub fn attach(
        pid: i32,
        max_depth: usize,
        capture_opcodes: bool,
    ) -> Result<Session, DiscoverError> {
        if pid <= 0 || !crate::process::live::is_alive(pid) {
            return Err(DiscoverError::NoSuchProcess(pid));
        }
        let mem = LiveMemory::new(pid);
        let rt = runtime::discover(pid, &mem)?;
        Ok(Session::with_runtime(pid, rt, max_depth, capture_opcodes))
    }

    /// A session over an interpreter already found (e.g. by `runtime::discover_with`).
    pub fn with_runtime(
        pid: i32,
        rt: PythonRuntime,
        max_depth: usize,
        capture_opcodes: bool,
    ) -> Session {
        let table = if capture_opcodes {
            opcodes::table_for(rt.version.major, rt.version.minor, rt.version.free_threaded)
        } else {
            None
        };
        Session {
            pid,
            mem: LiveMemory::new(pid),
            sampler: StackSampler::new(Walker::new(&rt, max_depth), table),
            runtime: rt,
            filter: ThreadFilter {
                idle: true,
                gil_only: false,
            },
            os_threads: crate::process::threads::ThreadStates::new(pid),
            tids: Default::default(),
            dropped_idle: 0,
            dropped_gil: 0,
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.runtime.layout
    }

    /// Is the interpreter initialised (a main interpreter with at least one thread)?
    pub fn ready(&self) -> bool {
        self.sampler.ready(&self.mem)
    }

    /// Take one sample of every thread into `profile`, pausing the target in blocking
    /// mode. Per-thread failures are returned (not yet counted: the caller decides,
    /// knowing whether the target still lives).
    pub fn sample(&mut self, profile: &mut Profile, blocking: bool) -> Vec<WalkError> {
        let filter = self.filter;
        // The OS states are read before pausing: a paused thread reads as stopped.
        let states = if filter.idle || filter.gil_only {
            Default::default()
        } else {
            self.os_threads.snapshot()
        };
        let _lock = if blocking {
            match remoteprocess::Process::new(self.pid).and_then(|p| p.lock()) {
                Ok(lock) => Some(lock),
                Err(_) => return vec![WalkError::Pause],
            }
        } else {
            None
        };
        self.sampler.want_gil = filter.gil_only;
        if filter.idle && !filter.gil_only {
            return self.sampler.sample(&self.mem, profile);
        }
        let mem = &self.mem;
        if !filter.idle
            && !self.tids.learned()
            && self.runtime.layout.tstate_native_thread_id.is_none()
        {
            // ≤3.10: learn where glibc keeps the OS id, from every thread at once.
            let walker = &self.sampler.walker;
            if let Ok(interp) = walker.main_interpreter(mem) {
                let off = self.runtime.layout.tstate_thread_id as u64;
                let pthreads: Vec<u64> = walker
                    .thread_states(mem, interp)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|&t| mem.read_u64(t.wrapping_add(off)).ok())
                    .collect();
                let tasks = states.keys().copied().collect();
                self.tids.learn(mem, &pthreads, &tasks);
            }
        }
        let tids = &mut self.tids;
        // ≤3.10 records no OS thread id: map pthread_t to it through the task list.
        let tasks: std::collections::HashSet<u64> =
            if !filter.idle && self.runtime.layout.tstate_native_thread_id.is_none() {
                states.keys().copied().collect()
            } else {
                Default::default()
            };
        let (mut idle, mut not_gil) = (0, 0);
        let errors = self.sampler.sample_with(mem, profile, &mut |raw, gil| {
            if filter.gil_only && gil != Some(raw.tstate) {
                not_gil += 1;
                return false;
            }
            if !filter.idle {
                let tid = raw
                    .native_id
                    .or_else(|| tids.tid(mem, raw.thread_id, &tasks));
                if let Some(tid) = tid {
                    if !crate::process::threads::is_active(states.get(&tid).copied()) {
                        idle += 1;
                        return false;
                    }
                }
            }
            true
        });
        self.dropped_idle += idle;
        self.dropped_gil += not_gil;
        errors
    }
}

impl Session {
    /// Bytecode of every sampled function, for `pyprof annotate`. 3.11+: re-read from
    /// the target when it still runs, so the listing shows the code as quickened by now.
    pub fn code_snapshots(
        &self,
        profile: &crate::profile::ProfileData,
    ) -> Vec<crate::profile::CodeSnapshot> {
        use std::collections::HashSet;
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let wanted: HashSet<(&str, &str, i32)> = profile
            .frames
            .iter()
            .map(|f| (f.file.as_str(), f.function.as_str(), f.first_line))
            .collect();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let code = &self.sampler.code;
        for (addr, info) in code.entries() {
            let key = (info.filename.as_str(), info.name.as_str(), info.first_line);
            if info.bytecode.is_empty() || !wanted.contains(&key) || !seen.insert(key) {
                continue;
            }
            let live = if self.layout().code_adaptive.is_some()
                && code.is_current(&self.mem, addr, info)
            {
                self.mem.read_vec(info.code_start, info.bytecode.len()).ok()
            } else {
                None
            };
            out.push(crate::profile::CodeSnapshot {
                file: info.filename.clone(),
                function: info.name.clone(),
                first_line: info.first_line,
                bytecode: hex(live.as_deref().unwrap_or(&info.bytecode)),
                line_table: hex(&info.line_table),
            });
        }
        out.sort_by(|a, b| {
            (&a.file, a.first_line, &a.function).cmp(&(&b.file, b.first_line, &b.function))
        });
        out
    }
}

/// The byte offset (as `dis` numbers it) of the instruction a frame is executing, or
/// None when the frame has not started.
pub fn instruction_offset(layout: &Layout, info: &CodeInfo, rf: &RawFrame) -> Option<u32> {
    match layout.frame_kind {
        FrameKind::Object => {
            let lasti = rf.instr as i64 as i32;
            if lasti < 0 {
                return None;
            }
            // 3.10 counts code units; earlier versions count bytes.
            let scale = if (layout.major, layout.minor) >= (3, 10) {
                2
            } else {
                1
            };
            Some((lasti as u32).saturating_mul(scale))
        }
        FrameKind::Interpreter => {
            if rf.instr < info.code_start {
                return None;
            }
            let off = rf.instr - info.code_start;
            if off >= info.code_len.max(2) || off % 2 != 0 {
                return None;
            }
            Some(off as u32)
        }
    }
}

/// Is this 3.11+ frame still being set up (CPython's `_PyFrame_IsIncomplete`)?
fn incomplete(layout: &Layout, info: &CodeInfo, rf: &RawFrame) -> bool {
    const OWNED_BY_GENERATOR: u8 = 1;
    layout.frame_kind == FrameKind::Interpreter
        && rf.owner != OWNED_BY_GENERATOR
        && rf.instr < info.code_start + 2 * info.first_traceable as u64
}

/// A raw frame and its code object → the frame a profile records (None for a frame
/// still being set up). With an opcode table, the instruction executing is read from the
/// target's live bytecode (3.11+: quickened, so specializations show as they happen).
pub fn resolve_frame(
    layout: &Layout,
    info: &CodeInfo,
    rf: &RawFrame,
    table: Option<&OpcodeTable>,
    mem: &dyn Memory,
) -> Result<Option<Frame>, WalkError> {
    resolve_frame_with(layout, info, rf, table, None, mem)
}

/// `resolve_frame` with the live opcode already read (`live_op`), as the sampler does
/// for all frames of a thread in one system call.
pub fn resolve_frame_with(
    layout: &Layout,
    info: &CodeInfo,
    rf: &RawFrame,
    table: Option<&OpcodeTable>,
    live_op: Option<u8>,
    mem: &dyn Memory,
) -> Result<Option<Frame>, WalkError> {
    if incomplete(layout, info, rf) {
        return Ok(None);
    }
    let offset = instruction_offset(layout, info, rf);
    let mut frame = Frame {
        function: info.name.clone(),
        file: info.filename.clone(),
        first_line: info.first_line,
        line: info.first_line,
        offset: None,
        opcode: None,
        base_opcode: None,
    };
    let Some(mut off) = offset else {
        return Ok(Some(frame));
    };
    if let Some(table) = table {
        // A caller's instruction pointer may sit inside its CALL's inline cache (3.11/3.12)
        // or on an EXTENDED_ARG prefix: report the instruction that owns it.
        if let Some(owner) = info.owner(off) {
            off = owner;
            let op = if let Some(op) = live_op {
                op
            } else if layout.code_adaptive.is_some() {
                mem.read_u8(info.code_start + off as u64)?
            } else {
                info.bytecode.get(off as usize).copied().unwrap_or(0)
            };
            let (name, mut base) =
                opcode_names(table, op, info.bytecode.get(off as usize).copied());
            if !table.has_static_base(op) {
                // Instrumented: the real instruction sits in the code object's side tables.
                if let Some(orig) =
                    crate::code::original_opcode(mem, layout, table, rf.code, op, off as usize)
                {
                    base = table.base_name(orig);
                }
            }
            frame.offset = Some(off);
            frame.opcode = Some(name.to_string());
            frame.base_opcode = Some(base.to_string());
        }
    }
    frame.line = info.line_at(layout, off).unwrap_or(0);
    Ok(Some(frame))
}

/// The executed opcode's name and its base. An opcode whose real instruction lives in a
/// side table (`INSTRUMENTED_LINE`, `INSTRUMENTED_INSTRUCTION`, `ENTER_EXECUTOR`) takes
/// its base from the bytecode as first read, when that had a real instruction there.
pub fn opcode_names(
    table: &OpcodeTable,
    op: u8,
    first_seen: Option<u8>,
) -> (&'static str, &'static str) {
    let name = table.name(op);
    if table.has_static_base(op) {
        return (name, table.base_name(op));
    }
    match first_seen {
        Some(orig) if table.has_static_base(orig) && table.is_defined(orig) => {
            (name, table.base_name(orig))
        }
        _ => (name, name),
    }
}

/// What the recording loop samples: the target, and with `--subprocesses` its Python
/// descendants, found as they appear.
pub struct Targets {
    pub sessions: Vec<Session>,
    /// Follow Python child processes of the first session's process.
    pub follow_children: bool,
    /// Processes found not to be Python (not tried again).
    not_python: std::collections::HashSet<i32>,
    last_scan: Option<Instant>,
    pub max_depth: usize,
    pub opcodes: bool,
    pub filter: ThreadFilter,
}

impl Targets {
    pub fn new(root: Session) -> Targets {
        Targets {
            max_depth: root.sampler.walker.max_depth,
            opcodes: root.sampler.code.opcode_table().is_some(),
            filter: root.filter,
            sessions: vec![root],
            follow_children: false,
            not_python: Default::default(),
            last_scan: None,
        }
    }

    /// Attach to Python descendants not seen yet (at most once a second).
    fn scan_children(&mut self) {
        if !self.follow_children
            || self
                .last_scan
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.last_scan = Some(Instant::now());
        let root = self.sessions[0].pid;
        let Ok(kids) = remoteprocess::Process::new(root).and_then(|p| p.child_processes()) else {
            return;
        };
        for (child, _parent) in kids {
            if self.sessions.iter().any(|s| s.pid == child) || self.not_python.contains(&child) {
                continue;
            }
            match Session::attach(child, self.max_depth, self.opcodes) {
                Ok(mut s) => {
                    s.filter = self.filter;
                    s.sampler.process_label = Some(process_label(child));
                    self.sessions.push(s);
                }
                Err(DiscoverError::NotReady(_)) => {}
                Err(_) => {
                    self.not_python.insert(child);
                }
            }
        }
        if self.sessions.len() > 1 && self.sessions[0].sampler.process_label.is_none() {
            let label = process_label(root);
            self.sessions[0].sampler.process_label = Some(label);
        }
    }
}

/// "process 1234 (python worker.py)"
pub fn process_label(pid: i32) -> String {
    let cmd: String = crate::process::live::cmdline(pid)
        .chars()
        .take(80)
        .collect();
    format!("process {pid} ({cmd})")
}

/// Run the fixed-rate clock until a stop condition; samples go into `profile`.
/// `alive` tells whether the (first) target still runs (a child we launched is reaped
/// by it). `on_tick` is called after every tick (progress display).
pub fn record(
    targets: &mut Targets,
    config: &Config,
    stop: &AtomicBool,
    alive: &mut dyn FnMut() -> bool,
    profile: &mut Profile,
    on_tick: &mut dyn FnMut(&Profile, Duration),
) -> StopReason {
    let period = Duration::from_secs_f64(1.0 / config.rate_hz);
    let start = Instant::now();
    let mut k: u64 = 0;
    let mut reads_of_gone = 0;
    let reason = loop {
        if stop.load(Ordering::SeqCst) {
            break StopReason::Interrupted;
        }
        let deadline = start + period.mul_f64(k as f64);
        if let Some(d) = config.duration {
            if deadline.duration_since(start) >= d {
                // Sleep out the rest of the duration, so it is honoured exactly.
                let end = start + d;
                sleep_until(end, stop);
                break StopReason::Duration;
            }
        }
        let now = Instant::now();
        if now < deadline {
            sleep_until(deadline, stop);
            if stop.load(Ordering::SeqCst) {
                break StopReason::Interrupted;
            }
        } else {
            let behind = (now - deadline).as_secs_f64() / period.as_secs_f64();
            if behind >= 1.0 {
                // Skip the ticks we can no longer take on time, and count them.
                let skip = behind.floor() as u64;
                profile.meta.late += skip;
                k += skip;
                continue;
            }
        }
        k += 1;
        profile.meta.ticks += 1;
        targets.scan_children();
        let errors = targets.sessions[0].sample(profile, config.blocking);
        if !errors.is_empty() || k % 16 == 0 {
            if !alive() {
                // Reads failed because the target is gone: not the profiler's failure.
                break StopReason::TargetExited;
            }
        }
        for e in errors {
            profile.add_error(e.to_string());
        }
        // Child processes: one that ends is dropped, its samples kept.
        let mut i = 1;
        while i < targets.sessions.len() {
            let errors = targets.sessions[i].sample(profile, config.blocking);
            if !errors.is_empty() && !crate::process::live::is_alive(targets.sessions[i].pid) {
                reads_of_gone += targets.sessions[i].mem.read_calls();
                targets.sessions.remove(i);
                continue;
            }
            for e in errors {
                profile.add_error(e.to_string());
            }
            i += 1;
        }
        on_tick(profile, start.elapsed());
    };
    profile.meta.duration_secs = start.elapsed().as_secs_f64();
    profile.meta.memory_reads = reads_of_gone
        + targets
            .sessions
            .iter()
            .map(|s| s.mem.read_calls())
            .sum::<u64>();
    reason
}

/// Sleep until `deadline`, waking early (within 50 ms) when `stop` is set.
fn sleep_until(deadline: Instant, stop: &AtomicBool) {
    loop {
        let now = Instant::now();
        if now >= deadline || stop.load(Ordering::SeqCst) {
            return;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}
