//! Sessions: an attached target (its memory, interpreter, stack sampler and thread
//! filter) and how one tick samples it with the ptrace and read samplers; and the set of
//! targets a recording samples (the process and, with `--subprocesses`, its Python
//! descendants).
//!
//! A tick, ptrace or read:
//! 1. the thread monitor updates which OS threads are active (a few system calls, not
//!    one per thread: see `process::threads::ThreadMonitor`);
//! 2. ptrace pauses what can change a Python stack while we read: on GIL builds the GIL
//!    holder (the one of the last tick first, re-checked once paused), on free-threaded
//!    builds the threads that are active; read pauses nothing;
//! 3. the snapshot of what the last tick read is taken in one batched read, and the walk
//!    reads from it (`process::snapshot`);
//! 4. the threads are resumed, and with read a thread whose walk failed is walked again.

use super::stacks::{Failed, StackSampler};
use super::SamplerKind;
use crate::code::opcodes;
use crate::process::ptrace::{self, Paused};
use crate::process::snapshot::Snapshot;
use crate::process::threads::{ThreadMonitor, TidResolver};
use crate::process::{LiveMemory, Memory};
use crate::profile::Profile;
use crate::runtime::layout::Layout;
use crate::runtime::{self, DiscoverError, PythonRuntime};
use crate::walker::{RawThread, WalkError, Walker};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Which threads a sample keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadFilter {
    /// Keep threads the OS says are waiting (sleeping, blocked on a lock or I/O).
    pub idle: bool,
    /// Keep only the thread holding the GIL.
    pub gil_only: bool,
}

/// How many times a failed walk is retried at once by the read sampler.
pub const READ_RETRIES: usize = 2;
/// How many times the ptrace sampler pauses a new GIL holder before pausing all.
const HOLDER_ATTEMPTS: usize = 3;

/// What sampling cost and did, for the summary and the bench.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Ticks that paused only the GIL holder (or the active threads), and ticks that
    /// had to pause every thread.
    pub paused_few: u64,
    pub paused_all: u64,
    /// Ticks where the paused thread no longer held the GIL and another was paused.
    pub holder_changes: u64,
    /// Walks retried (read sampler), and retries that succeeded.
    pub retries: u64,
    pub retries_ok: u64,
    /// System calls made by pausing and by the thread monitor.
    pub ptrace_syscalls: u64,
}

/// An attached target: its memory, its interpreter and the sampler over them.
pub struct Session {
    pub pid: i32,
    pub mem: LiveMemory,
    pub runtime: PythonRuntime,
    pub sampler: StackSampler,
    pub filter: ThreadFilter,
    pub monitor: ThreadMonitor,
    tids: TidResolver,
    /// What ticks read, read again in one batch at the next (`process::snapshot`): one
    /// for the walks, one for the bpf thread-list refresh, one for the code objects of
    /// the kernel's samples.
    snapshot: Snapshot,
    list_snapshot: Snapshot,
    code_snapshot: Snapshot,
    /// OS thread id of each thread state seen (from the interpreter, or ≤3.10 learned
    /// from glibc's `struct pthread`).
    os_tids: HashMap<u64, u64>,
    /// The OS thread that held the GIL at the last tick: paused first at the next.
    last_holder: Option<u64>,
    /// bpf: what the kernel's thread map holds for this process (OS tid → tstate), the
    /// ids of each thread state, and when the map was last brought up to date.
    bpf_threads: HashMap<u32, u64>,
    ids_by_tstate: HashMap<u64, RawThreadIds>,
    bpf_refreshed: Option<Instant>,
    bpf_refresh_wanted: bool,
    /// Threads dropped as idle / not holding the GIL (not failures).
    pub dropped_idle: u64,
    pub dropped_gil: u64,
    pub stats: SessionStats,
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
            monitor: ThreadMonitor::new(pid),
            tids: Default::default(),
            snapshot: Snapshot::new(),
            list_snapshot: Snapshot::new(),
            code_snapshot: Snapshot::new(),
            os_tids: HashMap::new(),
            last_holder: None,
            bpf_threads: HashMap::new(),
            ids_by_tstate: HashMap::new(),
            bpf_refreshed: None,
            bpf_refresh_wanted: false,
            dropped_idle: 0,
            dropped_gil: 0,
            stats: SessionStats::default(),
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.runtime.layout
    }

    /// Is the interpreter initialised (a main interpreter with at least one thread)?
    pub fn ready(&self) -> bool {
        self.sampler.ready(&self.mem)
    }

    /// Learn the OS thread ids of threads seen for the first time: the interpreter's
    /// `native_thread_id` (3.11+), else found in glibc's `struct pthread` (≤3.10).
    fn learn_os_tids(&mut self, seen: &[(u64, RawThreadIds)]) {
        let new: Vec<&(u64, RawThreadIds)> = seen
            .iter()
            .filter(|(ts, _)| !self.os_tids.contains_key(ts))
            .collect();
        if new.is_empty() {
            return;
        }
        let mut tasks: Option<HashSet<u64>> = None;
        for &&(tstate, ids) in &new {
            let tid = match ids.native_id {
                Some(n) => Some(n),
                None => {
                    let tasks = tasks.get_or_insert_with(|| {
                        crate::process::threads::task_ids(self.pid)
                            .into_iter()
                            .collect()
                    });
                    if !self.tids.learned() {
                        let pthreads: Vec<u64> = seen.iter().map(|s| s.1.thread_id).collect();
                        self.tids.learn(&self.mem, &pthreads, tasks);
                    }
                    self.tids.tid(&self.mem, ids.thread_id, tasks)
                }
            };
            if let Some(t) = tid {
                self.os_tids.insert(tstate, t);
            }
        }
        if self.os_tids.len() > 2 * seen.len() + 64 {
            let alive: HashSet<u64> = seen.iter().map(|s| s.0).collect();
            self.os_tids.retain(|t, _| alive.contains(t));
        }
    }

    /// Before the first tick: learn the threads and their OS states, so that the clock
    /// does not start with a tick that opens a file per thread.
    pub fn prime(&mut self) {
        self.learn_thread_list();
        let tids = self.python_tids();
        self.monitor.refresh(&tids);
    }

    /// Read the thread list (ids only, no frames) and learn the OS thread ids of threads
    /// not seen yet.
    fn learn_thread_list(&mut self) {
        let walker = &self.sampler.walker;
        let Ok(interp) = walker.main_interpreter(&self.mem) else {
            return;
        };
        if interp == 0 {
            return;
        }
        let Ok(list) = walker.thread_ids(&self.mem, interp) else {
            return;
        };
        let seen: Vec<(u64, RawThreadIds)> = list
            .iter()
            .map(|&(tstate, thread_id, native_id)| {
                (
                    tstate,
                    RawThreadIds {
                        thread_id,
                        native_id,
                    },
                )
            })
            .collect();
        self.learn_os_tids(&seen);
    }

    /// OS thread ids of the thread states seen at the last tick (learned lazily).
    pub fn python_tids(&self) -> Vec<u64> {
        self.os_tids.values().copied().collect()
    }

    /// Take one sample of every thread into `profile` with the ptrace or read sampler.
    /// Per-thread failures are returned (not yet counted: the caller decides, knowing
    /// whether the target still lives).
    pub fn sample(&mut self, profile: &mut Profile, kind: SamplerKind) -> Vec<WalkError> {
        let filter = self.filter;
        if self.os_tids.is_empty() {
            // First tick: learn which OS thread runs which thread state before pausing
            // anything, so that only the GIL holder is paused from the start (pausing
            // every thread wakes the sleeping ones).
            self.learn_thread_list();
        }
        let tids = self.python_tids();
        self.monitor.refresh(&tids);
        let mut paused = Paused::default();
        let mut errors = Vec::new();
        if kind == SamplerKind::Ptrace {
            if let Err(e) = self.pause_movers(&mut paused) {
                errors.push(e);
                return errors;
            }
        } else {
            self.snapshot.take(&self.mem);
        }
        let interp = self.sampler.walker.main_interpreter(&self.mem).unwrap_or(0);
        if interp != 0 {
            self.sampler.refresh_names(&self.mem, interp, false);
        }
        let view = self.snapshot.view(&self.mem);
        let gil = if interp != 0 && (filter.gil_only || kind == SamplerKind::Ptrace) {
            self.sampler.walker.gil_holder(&view, interp)
        } else {
            None
        };
        let (mut idle, mut not_gil) = (0, 0);
        let monitor = &self.monitor;
        let os_tids = &self.os_tids;
        // Every thread of the list, walked or not (to learn the OS ids of new ones).
        let seen: std::cell::RefCell<Vec<(u64, RawThreadIds)>> = Default::default();
        // Threads not walked: idle ones when they are dropped anyway, and (with --idle,
        // without opcodes) sleeping ones that did not run since their last sample, whose
        // last stack is recorded again.
        let skipped_idle = std::cell::Cell::new(0u64);
        let repeat: std::cell::RefCell<Vec<u64>> = Default::default();
        let repeatable = if filter.idle && self.sampler.code.opcode_table().is_none() {
            self.sampler.repeatable()
        } else {
            HashSet::new()
        };
        let want = |tstate: u64, thread_id: u64, native_id: Option<u64>| {
            seen.borrow_mut().push((
                tstate,
                RawThreadIds {
                    thread_id,
                    native_id,
                },
            ));
            let Some(tid) = native_id.or_else(|| os_tids.get(&tstate).copied()) else {
                return true;
            };
            if !monitor.knows(tid) {
                return true;
            }
            if filter.gil_only && gil.is_some_and(|g| g != tstate) {
                return true; // counted by `keep`
            }
            if !filter.idle && !monitor.is_active(tid) {
                skipped_idle.set(skipped_idle.get() + 1);
                return false;
            }
            if !monitor.ran_recently(tid) && !monitor.is_active(tid) && repeatable.contains(&tstate)
            {
                repeat.borrow_mut().push(tstate);
                return false;
            }
            true
        };
        // Threads whose OS thread the monitor does not know yet (new since the last
        // tick): decided after the tick, once their OS id is learned.
        let mut deferred: Vec<RawThread> = Vec::new();
        let mut keep = |raw: &RawThread, gil: Option<u64>| {
            if filter.gil_only && gil != Some(raw.tstate) {
                not_gil += 1;
                return false;
            }
            if !filter.idle {
                match raw
                    .native_id
                    .or_else(|| os_tids.get(&raw.tstate).copied())
                {
                    Some(tid) if monitor.knows(tid) => {
                        if !monitor.is_active(tid) {
                            idle += 1;
                            return false;
                        }
                    }
                    _ => {
                        deferred.push(raw.clone());
                        return false;
                    }
                }
            }
            true
        };
        let failed = self
            .sampler
            .sample_some(&view, profile, gil, &want, &mut keep);
        drop(view);
        for tstate in repeat.take() {
            self.sampler.repeat(tstate, profile);
        }
        let seen = seen.take();
        // Retry failed walks at once, live (read), or while still paused (ptrace).
        let mut retried = Vec::new();
        for Failed { tstate, error } in failed {
            let Some(ts) = tstate else {
                errors.push(error);
                continue;
            };
            let mut result = Err(error);
            let tries = if kind == SamplerKind::Read {
                READ_RETRIES
            } else {
                1
            };
            for _ in 0..tries {
                self.stats.retries += 1;
                let mem: &dyn Memory = &self.mem;
                match self
                    .sampler
                    .resample_thread(mem, ts, profile, gil, &mut keep)
                {
                    Ok(_) => {
                        self.stats.retries_ok += 1;
                        result = Ok(());
                        break;
                    }
                    Err(e) => result = Err(e),
                }
            }
            if let Err(e) = result {
                retried.push(e);
            }
        }
        errors.extend(retried);
        self.stats.ptrace_syscalls += paused.syscalls;
        drop(paused);
        self.dropped_idle += idle + skipped_idle.get();
        self.dropped_gil += not_gil;
        self.learn_os_tids(&seen);
        // New threads: active now? (Their stacks were read with the others.)
        for raw in deferred {
            let tid = raw
                .native_id
                .or_else(|| self.os_tids.get(&raw.tstate).copied());
            let active = match tid {
                Some(t) => crate::process::threads::is_active(self.monitor.state_now(t)),
                None => true, // unknown: kept, as nothing is dropped on a failed read
            };
            if !active {
                self.dropped_idle += 1;
                continue;
            }
            if let Err(e) = self.sampler.record_thread(&self.mem, &raw, profile, None) {
                errors.push(e);
            }
        }
        self.last_holder = gil.and_then(|g| self.os_tids.get(&g).copied());
        if std::env::var_os("PYPROF_DEBUG_SNAP").is_some() {
            eprintln!("tick: reads {} snap {}/{} full {} syscalls {} unexpl?", self.mem.read_calls(), self.snapshot.hits.get(), self.snapshot.misses.get(), self.monitor.full_passes, self.monitor.syscalls);
        }
        errors
    }

    /// ptrace: pause what can change a Python stack, then take the snapshot.
    fn pause_movers(&mut self, paused: &mut Paused) -> Result<(), WalkError> {
        let free_threaded = !self.sampler.walker.has_gil();
        if free_threaded {
            // Every thread on a CPU can run Python: pause those.
            let active = self.monitor.active();
            for t in active {
                paused.add(t).map_err(|_| WalkError::Pause)?;
            }
            self.stats.paused_few += 1;
            self.snapshot.take(&self.mem);
            return Ok(());
        }
        // GIL builds: only the GIL holder can change a Python stack. Pause the last
        // tick's holder, check that it still holds the GIL, else pause the new one.
        let interp = self.sampler.walker.main_interpreter(&self.mem).unwrap_or(0);
        let mut candidate = self.last_holder;
        for attempt in 0..HOLDER_ATTEMPTS {
            if let Some(t) = candidate {
                match paused.add(t) {
                    Ok(true) => {}
                    Ok(false) => {} // gone
                    Err(_) => return Err(WalkError::Pause),
                }
            }
            self.snapshot.take(&self.mem);
            if interp == 0 {
                return Ok(());
            }
            let holder = self
                .sampler
                .walker
                .gil_holder(&self.snapshot.view(&self.mem), interp);
            let Some(holder) = holder else {
                // Nobody holds the GIL: nobody can run Python until one takes it.
                self.stats.paused_few += 1;
                return Ok(());
            };
            match self.os_tids.get(&holder).copied() {
                Some(t) if paused.contains(t) => {
                    self.stats.paused_few += 1;
                    return Ok(());
                }
                Some(t) => {
                    if attempt > 0 || candidate.is_some() {
                        self.stats.holder_changes += 1;
                    }
                    candidate = Some(t);
                }
                None => break, // a thread we do not know yet: pause everything
            }
        }
        paused.resume();
        *paused = ptrace::pause_all(self.pid).map_err(|_| WalkError::Pause)?;
        self.stats.paused_all += 1;
        if std::env::var_os("PYPROF_DEBUG_SNAP").is_some() {
            eprintln!("pause all: candidate {:?} last {:?}", self.last_holder, self.os_tids.len());
        }
        self.snapshot.take(&self.mem);
        Ok(())
    }
}

/// The ids of a walked thread, kept to learn its OS thread id after the tick.
#[derive(Clone, Copy, Debug)]
struct RawThreadIds {
    thread_id: u64,
    native_id: Option<u64>,
}

/// How often the bpf sampler's thread map is brought up to date when nothing asks for it.
const BPF_THREADS_EVERY: Duration = Duration::from_millis(250);

impl Session {
    /// What the kernel side needs to walk this target.
    pub fn bpf_config(&self, max_depth: usize, opcodes: bool) -> super::bpf::BpfConfig {
        let walker = &self.sampler.walker;
        let interp = walker.main_interpreter(&self.mem).unwrap_or(0);
        let gil = (interp != 0)
            .then(|| walker.gil_addresses(&self.mem, interp))
            .flatten();
        super::bpf::BpfConfig::new(&self.runtime.layout, gil, max_depth, opcodes)
    }

    /// Bring the kernel's map of this process's threads (OS tid → thread state) up to
    /// date: at once with `force` or when a sample named an unknown thread, else every
    /// 250 ms. One batched read of the thread list in steady state.
    pub fn refresh_bpf_threads(&mut self, bpf: &mut super::bpf::BpfSampler, force: bool) {
        if !force
            && !self.bpf_refresh_wanted
            && self
                .bpf_refreshed
                .is_some_and(|t| t.elapsed() < BPF_THREADS_EVERY)
        {
            return;
        }
        self.bpf_refreshed = Some(Instant::now());
        self.bpf_refresh_wanted = false;
        self.list_snapshot.take(&self.mem);
        let view = self.list_snapshot.view(&self.mem);
        let walker = &self.sampler.walker;
        let Ok(interp) = walker.main_interpreter(&view) else {
            return;
        };
        if interp == 0 {
            return;
        }
        let Ok(list) = walker.thread_ids(&view, interp) else {
            return;
        };
        drop(view);
        self.sampler.refresh_names(&self.mem, interp, false);
        let seen: Vec<(u64, RawThreadIds)> = list
            .iter()
            .map(|&(tstate, thread_id, native_id)| {
                (
                    tstate,
                    RawThreadIds {
                        thread_id,
                        native_id,
                    },
                )
            })
            .collect();
        self.learn_os_tids(&seen);
        self.ids_by_tstate = seen.iter().copied().collect();
        let want: HashMap<u32, u64> = seen
            .iter()
            .filter_map(|(ts, _)| Some((*self.os_tids.get(ts)? as u32, *ts)))
            .collect();
        for (tid, ts) in &want {
            if self.bpf_threads.get(tid) != Some(ts) {
                bpf.set_thread(*tid, *ts);
            }
        }
        for tid in self.bpf_threads.keys() {
            if !want.contains_key(tid) {
                bpf.remove_thread(*tid);
            }
        }
        self.bpf_threads = want;
    }

    /// Forget this process's threads in the kernel's map (the process ended).
    pub fn forget_bpf_threads(&mut self, bpf: &mut super::bpf::BpfSampler) {
        for tid in self.bpf_threads.keys() {
            bpf.remove_thread(*tid);
        }
        self.bpf_threads.clear();
    }

    /// Record one sample the kernel took. Ok(false) when the filter drops it.
    pub fn record_bpf(
        &mut self,
        s: &super::bpf::BpfSample,
        profile: &mut Profile,
    ) -> Result<bool, WalkError> {
        use super::bpf::{FLAG_HOLDS_GIL, FLAG_READ_ERROR, FLAG_UNKNOWN_THREAD};
        if s.flags & FLAG_UNKNOWN_THREAD != 0 {
            self.bpf_refresh_wanted = true;
            return Err(WalkError::UnknownThread);
        }
        if s.flags & FLAG_READ_ERROR != 0 {
            return Err(WalkError::Read);
        }
        let frames: Vec<u64> = s.raw.frames.iter().map(|f| f.frame).collect();
        if frames.len() > 1 && crate::walker::has_duplicates(&frames) {
            return Err(WalkError::Cycle("frame"));
        }
        if self.filter.gil_only && s.flags & FLAG_HOLDS_GIL == 0 {
            self.dropped_gil += 1;
            return Ok(false);
        }
        let mut raw = s.raw.clone();
        if let Some(ids) = self.ids_by_tstate.get(&raw.tstate) {
            raw.thread_id = ids.thread_id;
            raw.native_id = ids.native_id;
        } else {
            // A thread state we have not listed yet: its ids come with the next refresh.
            self.bpf_refresh_wanted = true;
        }
        let frame_kind = self.runtime.layout.frame_kind;
        if frame_kind == crate::runtime::layout::FrameKind::Object {
            // f_lasti is a 4-byte int; the kernel copied 8 bytes.
            for f in &mut raw.frames {
                f.instr = f.instr as u32 as i32 as i64 as u64;
            }
        }
        let view = self.code_snapshot.view(&self.mem);
        if raw.frames.iter().any(|f| f.tlbc_index != 0) {
            // Free-threaded: where each frame's own copy of the bytecode starts.
            let mut one = [Ok(raw)];
            self.sampler.walker.resolve_bytecode(&view, &mut one);
            let [r] = one;
            raw = r?;
        }
        let opcodes = |i: usize, at: u64| s.opcode_at(i, at);
        self.sampler
            .record_thread(&view, &raw, profile, Some(&opcodes))?;
        Ok(true)
    }

    /// Start a bpf tick: code objects are validated once in it, from one batched read
    /// of the ones the last tick used.
    pub fn begin_bpf_tick(&mut self) {
        self.sampler.code.begin_tick();
        self.code_snapshot.take(&self.mem);
    }

    /// With `--idle` under bpf: the threads that are not on a CPU (the kernel samples the
    /// others), read from userspace. A read is kept only if no idle thread ran during it
    /// (the process used no CPU time beyond the running threads'); else it is retried
    /// once, then counted.
    pub fn sample_idle(&mut self, profile: &mut Profile) -> Vec<WalkError> {
        if std::env::var_os("PYPROF_DEBUG_SNAP").is_some() {
            eprintln!("snap hits {} misses {} list {} {} code {} {} reads {}", self.snapshot.hits.get(), self.snapshot.misses.get(), self.list_snapshot.hits.get(), self.list_snapshot.misses.get(), self.code_snapshot.hits.get(), self.code_snapshot.misses.get(), self.mem.read_calls());
        }
        let mut errors = Vec::new();
        let tids = self.python_tids();
        let t0 = Instant::now();
        self.monitor.refresh(&tids);
        let t1 = Instant::now();
        for attempt in 0..2 {
            self.snapshot.take(&self.mem);
            let t2 = Instant::now();
            let view = self.snapshot.view(&self.mem);
            let walker = &self.sampler.walker;
            let interp = match walker.main_interpreter(&view) {
                Ok(0) => return errors,
                Ok(i) => i,
                Err(e) => {
                    errors.push(e);
                    return errors;
                }
            };
            let gil = self
                .filter
                .gil_only
                .then(|| walker.gil_holder(&view, interp))
                .flatten();
            let mut threads = Vec::new();
            let mut tstates = Vec::new();
            if let Err(e) = walker.walk_all(&view, interp, &mut threads, &mut tstates) {
                errors.push(e);
                return errors;
            }
            drop(view);
            let t3 = Instant::now();
            let un = self.monitor.unexplained_since_refresh();
            if std::env::var_os("PYPROF_DEBUG_SNAP").is_some() {
                eprintln!("idle: refresh {:?} take {:?} walk {:?}", t1 - t0, t2 - t1, t3 - t2);
            }
            if std::env::var_os("PYPROF_DEBUG_SNAP").is_some() {
                eprintln!("unexplained {un:?} watched {:?}", self.monitor.active());
            }
            let quiet = un.is_some_and(|u| u <= self.monitor.slack());
            if !quiet && attempt == 0 {
                self.monitor.refresh(&tids);
                continue; // a thread we believed asleep ran: read again
            }
            let ran = !quiet;
            for t in threads {
                let raw = match t {
                    Ok(raw) => raw,
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                };
                let tid = raw
                    .native_id
                    .or_else(|| self.os_tids.get(&raw.tstate).copied());
                if tid.is_none_or(|t| self.monitor.is_active(t)) {
                    continue; // on a CPU: the kernel samples it
                }
                if self.filter.gil_only && gil != Some(raw.tstate) {
                    self.dropped_gil += 1;
                    continue;
                }
                if ran {
                    errors.push(WalkError::RanDuringRead);
                    continue;
                }
                let view = self.code_snapshot.view(&self.mem);
                if let Err(e) = self.sampler.record_thread(&view, &raw, profile, None) {
                    errors.push(e);
                }
            }
            break;
        }
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
    pub fn scan_children(&mut self) {
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
