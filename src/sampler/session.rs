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
use crate::process::threads::{per_thread_interval, ThreadMonitor, TidResolver};
use crate::process::{LiveMemory, Memory};
use crate::profile::{FxBuild, Profile};
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

/// How often the thread list is read again when nothing says it changed.
const LIST_EVERY: Duration = Duration::from_millis(100);

/// What a tick does with one thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    Walk,
    /// Idle, and idle threads are dropped.
    SkipIdle,
    /// Did not run since its last sample: its last stack again.
    Repeat,
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
    /// Read sampler: stacks read from two instants (the tick's batch and later reads) on
    /// every try, kept as first read.
    pub moving_kept: u64,
    /// System calls made by pausing and by the thread monitor.
    pub ptrace_syscalls: u64,
    /// bpf: samples of threads that ran no Python at that moment (not failures).
    pub not_python: u64,
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
    /// Thread ids in the target's PID namespace and in ours.
    pub ns: crate::process::threads::NsTids,
    /// What ticks read, read again in one batch at the next (`process::snapshot`): one
    /// for the walks, one for the bpf thread-list refresh, one for the code objects of
    /// the kernel's samples.
    snapshot: Snapshot,
    list_snapshot: Snapshot,
    code_snapshot: Snapshot,
    /// The stack of the bpf sample being recorded (its buffers reused).
    bpf_raw: RawThread,
    names_snapshot: Snapshot,
    /// OS thread id of each thread state seen (from the interpreter, or ≤3.10 learned
    /// from glibc's `struct pthread`).
    os_tids: HashMap<u64, u64, FxBuild>,
    /// `os_tids` changed since the monitor was last told (`tids_news`).
    tids_changed: bool,
    /// The OS thread that held the GIL at the last tick: paused first at the next.
    last_holder: Option<u64>,
    /// The main interpreter, and its thread list as last read (every `LIST_EVERY`):
    /// ticks between reads walk only the threads they need from it.
    interp: u64,
    list: Vec<(u64, RawThreadIds)>,
    list_read: Option<Instant>,
    list_dirty: bool,
    /// OS threads of the process that run no Python (the monitor knows them too).
    foreign_threads: usize,
    /// bpf: what the kernel's thread map holds for this process (OS tid → tstate), the
    /// ids of each thread state, and when the map was last brought up to date.
    bpf_threads: HashMap<u32, u64>,
    ids_by_tstate: HashMap<u64, RawThreadIds, FxBuild>,
    bpf_refreshed: Option<Instant>,
    bpf_refresh_wanted: bool,
    /// Threads dropped as idle / not holding the GIL (not failures).
    pub dropped_idle: u64,
    pub dropped_gil: u64,
    pub stats: SessionStats,
    /// The target's root directory, opened at attach, to read its source files for
    /// `pyprof annotate` (also after it exited; right for a chroot or container).
    pub source_root: Option<crate::code::source::SourceRoot>,
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
        let mut sampler = StackSampler::new(Walker::new(&rt, max_depth), table);
        if table.is_some() {
            sampler.places = Some(crate::process::places::Places::new(pid, &rt.binary));
        }
        Session {
            pid,
            mem: LiveMemory::new(pid),
            sampler,
            runtime: rt,
            filter: ThreadFilter {
                idle: true,
                gil_only: false,
            },
            monitor: ThreadMonitor::new(pid),
            tids: Default::default(),
            ns: crate::process::threads::NsTids::new(pid),
            snapshot: Snapshot::new(),
            list_snapshot: Snapshot::new(),
            code_snapshot: Snapshot::new(),
            bpf_raw: RawThread::default(),
            names_snapshot: Snapshot::new(),
            os_tids: HashMap::default(),
            tids_changed: true,
            last_holder: None,
            interp: 0,
            list: Vec::new(),
            list_read: None,
            list_dirty: false,
            foreign_threads: 0,
            bpf_threads: HashMap::new(),
            ids_by_tstate: HashMap::default(),
            bpf_refreshed: None,
            bpf_refresh_wanted: false,
            dropped_idle: 0,
            dropped_gil: 0,
            stats: SessionStats::default(),
            source_root: crate::code::source::SourceRoot::open(pid),
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
    /// `native_thread_id` (3.11+), else found in glibc's `struct pthread` (≤3.10); in
    /// both cases the id in the target's own PID namespace, mapped to ours (a target
    /// in a container: /proc and the kernel speak the host's ids).
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
            let ns_tid = match ids.native_id {
                Some(n) => Some(n),
                None => {
                    let tasks = tasks.get_or_insert_with(|| self.ns.ns_ids());
                    if !self.tids.learned() {
                        let pthreads: Vec<u64> = seen.iter().map(|s| s.1.thread_id).collect();
                        self.tids.learn(&self.mem, &pthreads, tasks);
                    }
                    self.tids.tid(&self.mem, ids.thread_id, tasks)
                }
            };
            let Some(ns_tid) = ns_tid else { continue };
            let Some(host) = self.ns.host(ns_tid) else {
                continue;
            };
            self.os_tids.insert(tstate, host);
            self.tids_changed = true;
            let ns = (host != ns_tid).then_some(ns_tid);
            self.sampler.set_identity(tstate, host, ns);
        }
        if self.os_tids.len() > 2 * seen.len() + 64 {
            let alive: HashSet<u64> = seen.iter().map(|s| s.0).collect();
            self.os_tids.retain(|t, _| alive.contains(t));
            self.tids_changed = true;
            self.sampler.keep_identities(&alive);
        }
    }

    /// Read the threads' Python names when due (`StackSampler::names_every`), through a snapshot of
    /// their own: with many threads that is many small reads, one batch in steady state.
    fn refresh_names(&mut self) {
        if self.interp == 0 || !self.sampler.names_due() {
            return;
        }
        self.names_snapshot.take(&self.mem);
        let view = self.names_snapshot.view(&self.mem);
        self.sampler.refresh_names(&view, self.interp, true);
    }

    /// Every system call this session made: memory reads, the thread monitor's /proc
    /// reads and clock, pausing.
    pub fn syscalls(&self) -> u64 {
        self.mem.read_calls() + self.monitor.syscalls + self.stats.ptrace_syscalls
    }

    /// Before the first tick: learn the threads and their OS states, so that the clock
    /// does not start with a tick that opens a file per thread.
    pub fn prime(&mut self) {
        self.learn_thread_list();
        let tids = self.tids_news();
        self.monitor.refresh(&tids);
    }

    /// Read the thread list (ids only, no frames) and learn the OS thread ids of threads
    /// not seen yet.
    fn learn_thread_list(&mut self) {
        // Through its own snapshot: in steady state one batched read for the whole list.
        self.list_snapshot.take(&self.mem);
        let view = self.list_snapshot.view(&self.mem);
        let walker = &self.sampler.walker;
        let Ok(interp) = walker.main_interpreter(&view) else {
            return;
        };
        self.interp = interp;
        if interp == 0 {
            return;
        }
        let Ok(list) = walker.thread_ids(&view, interp) else {
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
        self.list = seen;
        self.list_read = Some(Instant::now());
    }

    /// OS thread ids of the thread states seen at the last tick (learned lazily).
    pub fn python_tids(&self) -> Vec<u64> {
        self.os_tids.values().copied().collect()
    }

    /// What the monitor needs to be told this tick: every Python thread's OS id when
    /// they changed since it was last told, else nothing (with 1,000 threads, looking
    /// each up every tick was a tenth of the tick's cost). A thread the monitor dropped
    /// meanwhile is added again when a tick wants its state (`ThreadMonitor::state_now`).
    fn tids_news(&mut self) -> Vec<u64> {
        if !std::mem::take(&mut self.tids_changed) {
            return Vec::new();
        }
        self.python_tids()
    }

    /// Is the thread list due to be read again (the fast path walks only the threads
    /// it knows between list reads)?
    fn list_due(&self) -> bool {
        // With many threads the list is read less often: 1 ms per thread beyond 100 (at
        // most once a second). A thread that starts running Python is noticed sooner, as
        // a GIL holder the list lacks, or as an OS thread the monitor finds.
        let every =
            per_thread_interval(self.list.len(), Duration::from_millis(1), LIST_EVERY, 1000);
        self.list_dirty || self.list_read.is_none_or(|t| t.elapsed() >= every)
    }

    /// Take one sample of every thread into `profile` with the ptrace or read sampler.
    /// Per-thread failures are returned (not yet counted: the caller decides, knowing
    /// whether the target still lives).
    ///
    /// Between reads of the interpreter's thread list (every 100 ms, or sooner when a
    /// thread appeared or ended), only the threads that need it are read: the active
    /// ones, and with --idle the ones that ran since their last sample (the others'
    /// last stacks are recorded again: they cannot have changed).
    pub fn sample(&mut self, profile: &mut Profile, kind: SamplerKind) -> Vec<WalkError> {
        let filter = self.filter;
        if self.list.is_empty() {
            // First tick: learn which OS thread runs which thread state before pausing
            // anything, so that only the GIL holder is paused from the start (pausing
            // every thread wakes the sleeping ones).
            self.learn_thread_list();
        }
        let tids = self.tids_news();
        self.monitor.refresh(&tids);
        // Ticks that read the whole list and ticks between read different things: each
        // kind has its snapshot, so that each learns what it will read next time.
        let full = self.list_due();
        let mut paused = Paused::default();
        let mut errors = Vec::new();
        // What ptrace reads either is paused or is checked by its run time (a sleeping
        // thread); plain reads check that no stack moved while it was read.
        self.sampler.walker.check_moved = kind != SamplerKind::Ptrace;
        self.sampler.defer_moved = kind == SamplerKind::Read;
        // Plain reads: a walk that needed more than the batch is retried from one batch.
        self.snapshot.strict.set(kind == SamplerKind::Read);
        self.list_snapshot.strict.set(kind == SamplerKind::Read);
        self.sampler.ips.clear();
        if kind == SamplerKind::Ptrace {
            if let Err(e) = self.pause_movers(&mut paused, full) {
                errors.push(e);
                return errors;
            }
            if self.sampler.native.is_some() {
                self.unwind_native(&mut paused);
            }
            if self.sampler.places.is_some() {
                // With opcodes: where each paused thread was (the interpreter, or native
                // code its leaf instruction called), by thread state.
                for (tstate, tid) in self.paused_tstates(&paused) {
                    if let Some(ip) = paused.ip(tid) {
                        self.sampler.ips.insert(tstate, ip);
                    }
                }
            }
        } else if full {
            self.list_snapshot.take(&self.mem);
        } else {
            self.snapshot.take(&self.mem);
        }
        let interp = self.interp;
        self.refresh_names();
        let mut full = full;
        let has_gil = self.sampler.walker.has_gil();
        let mut gil = if interp != 0 && has_gil {
            let snap = if full {
                &self.list_snapshot
            } else {
                &self.snapshot
            };
            self.sampler
                .walker
                .gil_holder(&snap.view(&self.mem), interp)
        } else {
            None
        };
        if !full && gil.is_some_and(|g| !self.os_tids.contains_key(&g)) {
            // The GIL holder started since the list was read: read the list now (the
            // target is still paused in blocking mode).
            full = true;
            self.list_snapshot.take(&self.mem);
            gil = self
                .sampler
                .walker
                .gil_holder(&self.list_snapshot.view(&self.mem), interp);
        }
        let snap = if full {
            &self.list_snapshot
        } else {
            &self.snapshot
        };
        let view = snap.view(&self.mem);
        let (mut idle, mut not_gil) = (0, 0);
        let monitor = &self.monitor;
        let os_tids = &self.os_tids;
        // Every thread of the list, walked or not (to learn the OS ids of new ones).
        let seen: std::cell::RefCell<Vec<(u64, RawThreadIds)>> = Default::default();
        let skipped_idle = std::cell::Cell::new(0u64);
        let repeat: std::cell::RefCell<Vec<u64>> = Default::default();
        let repeatable = if filter.idle && self.sampler.code.opcode_table().is_none() {
            self.sampler.repeatable()
        } else {
            HashSet::new()
        };
        // Whether to walk a thread: not the idle ones when they are dropped anyway, nor
        // (with --idle, without opcodes) sleeping ones that did not run since their last
        // sample, whose last stack is recorded again.
        let plan = |tstate: u64, native_id: Option<u64>| -> Plan {
            let _ = native_id;
            let Some(&tid) = os_tids.get(&tstate) else {
                return Plan::Walk;
            };
            if !monitor.knows(tid) || (filter.gil_only && gil.is_some_and(|g| g != tstate)) {
                return Plan::Walk; // decided after the walk
            }
            if !filter.idle && !monitor.is_active(tid) {
                return Plan::SkipIdle;
            }
            if !monitor.ran_recently(tid) && !monitor.is_active(tid) && repeatable.contains(&tstate)
            {
                return Plan::Repeat;
            }
            Plan::Walk
        };
        let decide = |tstate: u64, native_id: Option<u64>| match plan(tstate, native_id) {
            Plan::Walk => true,
            Plan::SkipIdle => {
                skipped_idle.set(skipped_idle.get() + 1);
                false
            }
            Plan::Repeat => {
                repeat.borrow_mut().push(tstate);
                false
            }
        };
        let want = |tstate: u64, thread_id: u64, native_id: Option<u64>| {
            seen.borrow_mut().push((
                tstate,
                RawThreadIds {
                    thread_id,
                    native_id,
                },
            ));
            decide(tstate, native_id)
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
                match os_tids.get(&raw.tstate).copied() {
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
        let failed = if full {
            self.sampler
                .sample_some(&view, profile, gil, &want, &mut keep)
        } else {
            let known: Vec<(u64, u64, Option<u64>)> = self
                .list
                .iter()
                .filter(|(ts, ids)| decide(*ts, ids.native_id))
                .map(|(ts, ids)| (*ts, ids.thread_id, ids.native_id))
                .collect();
            self.sampler
                .sample_listed(&view, profile, gil, &known, &mut keep)
        };
        for tstate in repeat.take() {
            self.sampler.repeat(tstate, profile);
        }
        let seen = seen.take();
        // Retry failed walks at once: from the tick's batch read again, then live (read);
        // while still paused (ptrace).
        let mut list_dirty = false;
        let mut retried = Vec::new();
        // (One batch read again per tick, whatever the number of threads retried: it
        // holds what every walk of the tick read and missed.)
        let mut retaken = false;
        for Failed { tstate, error } in failed {
            if error == WalkError::ThreadGone {
                list_dirty = true; // not a failure: the list is read again next tick
                continue;
            }
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
            for attempt in 0..tries {
                self.stats.retries += 1;
                // Plain reads: first everything the tick read, the failed walk's misses
                // included, read again in one batch, and the walk retried from it; the
                // last try reads the thread directly, in the walk's own order (a failed
                // read more often succeeds so). ptrace: the target is still paused, read
                // it directly.
                let live: &dyn Memory = &self.mem;
                let view;
                let mem: &dyn Memory = if kind == SamplerKind::Read && attempt + 1 < tries {
                    let snap = if full {
                        &mut self.list_snapshot
                    } else {
                        &mut self.snapshot
                    };
                    if !retaken {
                        snap.retake(live);
                        retaken = true;
                    }
                    view = snap.view(live);
                    &view
                } else {
                    live
                };
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
            if result.is_err() {
                // A stack mixed on every try: the first one read is kept (dropping such
                // stacks would under-count the short calls that change stacks).
                let live: &dyn Memory = &self.mem;
                match self.sampler.record_moved(live, ts, profile) {
                    Ok(true) => {
                        self.stats.moving_kept += 1;
                        result = Ok(());
                    }
                    Ok(false) => {}
                    Err(e) => result = Err(e),
                }
            }
            if let Err(e) = result {
                retried.push(e);
            }
        }
        errors.extend(retried);
        self.stats.ptrace_syscalls += paused.syscalls;
        if let Some(t0) = paused.since {
            let tids: Vec<u64> = paused.tids().collect();
            self.monitor.note_paused(&tids, t0.elapsed());
        }
        drop(paused);
        self.dropped_idle += idle + skipped_idle.get();
        self.dropped_gil += not_gil;
        if full {
            self.list_read = Some(Instant::now());
            self.list = seen.clone();
            self.learn_os_tids(&seen);
            if self.sampler.last_interp() != 0 {
                self.interp = self.sampler.last_interp();
            }
            self.foreign_threads = self.monitor.len().saturating_sub(self.os_tids.len());
        }
        // New threads: active now? (Their stacks were read with the others.)
        for raw in deferred {
            let tid = self.os_tids.get(&raw.tstate).copied();
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
        // A GIL holder or an OS thread we do not know: a thread started.
        if gil.is_some_and(|g| !self.os_tids.contains_key(&g))
            || self.monitor.len() > self.os_tids.len() + self.foreign_threads
        {
            list_dirty = true;
        }
        self.list_dirty = list_dirty;
        self.last_holder = gil.and_then(|g| self.os_tids.get(&g).copied());
        errors
    }

    /// `--native`: read the native stack of every paused thread (its registers and a copy
    /// of its stack, taken while it is paused: consistent), into `sampler.native_stacks`.
    fn unwind_native(&mut self, paused: &mut Paused) {
        self.sampler.native_stacks.clear();
        let pid = self.pid;
        for (tstate, tid) in self.paused_tstates(paused) {
            let Some(regs) = paused.regs(tid) else {
                continue;
            };
            let Some(unwinder) = self.sampler.native.as_mut() else {
                return;
            };
            let mut copy = crate::process::native::StackCopy::read(pid, regs.sp);
            let mut stack = Vec::new();
            unwinder.unwind(regs, &mut |a| copy.word(a), &mut stack);
            paused.syscalls += copy.reads;
            unwinder.stats.extra_reads += copy.reads - 1;
            self.sampler.native_stacks.insert(tstate, stack);
        }
    }

    /// The (thread state, OS thread) of every thread paused in `paused`.
    fn paused_tstates(&self, paused: &Paused) -> Vec<(u64, u64)> {
        let tids: HashSet<u64> = paused.tids().collect();
        self.os_tids
            .iter()
            .filter(|(_, tid)| tids.contains(tid))
            .map(|(&tstate, &tid)| (tstate, tid))
            .collect()
    }

    /// `--native`: unwind and symbolize each sampled thread's native stack (ptrace: while
    /// it is paused; bpf: from the copy the kernel took with the sample).
    pub fn enable_native(&mut self) {
        if self.sampler.native.is_none() {
            self.sampler.native = Some(crate::process::native::NativeUnwinder::new(self.pid));
        }
    }

    /// ptrace: pause what can change a Python stack, then take the snapshot.
    fn pause_movers(&mut self, paused: &mut Paused, full: bool) -> Result<(), WalkError> {
        let take = |s: &mut Session| {
            if full {
                s.list_snapshot.take(&s.mem);
            } else {
                s.snapshot.take(&s.mem);
            }
        };
        // Free-threaded builds: every thread on a CPU can run Python: pause those. With
        // opcodes, also on GIL builds: where each thread on a CPU is executing is read
        // from its registers. One that does not hold the GIL runs native code (it
        // released the GIL in a C call), exactly what the opcode report must not give
        // to the instruction.
        let free_threaded = !self.sampler.walker.has_gil();
        let native = self.sampler.native.is_some();
        if free_threaded || self.sampler.places.is_some() || native {
            for t in self.monitor.active() {
                paused.add(t).map_err(|_| WalkError::Pause)?;
            }
        }
        if native && self.filter.idle {
            // --native --idle: a sleeping thread's native stack too (where it waits).
            let all: Vec<u64> = self.os_tids.values().copied().collect();
            for t in all {
                paused.add(t).map_err(|_| WalkError::Pause)?;
            }
        }
        if free_threaded {
            self.stats.paused_few += 1;
            take(self);
            return Ok(());
        }
        // GIL builds: only the GIL holder can change a Python stack. Pause the last
        // tick's holder, check that it still holds the GIL, else pause the new one.
        let interp = self.interp;
        let mut candidate = self.last_holder;
        for attempt in 0..HOLDER_ATTEMPTS {
            if let Some(t) = candidate {
                match paused.add(t) {
                    Ok(true) => {}
                    Ok(false) => {} // gone
                    Err(_) => return Err(WalkError::Pause),
                }
            }
            take(self);
            if interp == 0 {
                return Ok(());
            }
            let snap = if full {
                &self.list_snapshot
            } else {
                &self.snapshot
            };
            let holder = self
                .sampler
                .walker
                .gil_holder(&snap.view(&self.mem), interp);
            let Some(holder) = holder else {
                // Nobody holds the GIL: nobody can run Python until one takes it.
                self.stats.paused_few += 1;
                return Ok(());
            };
            let tid = match self.os_tids.get(&holder).copied() {
                Some(t) => Some(t),
                // A thread started since the list was read: its OS id is in its thread
                // state (3.11+), as its namespace numbers it.
                None => self
                    .runtime
                    .layout
                    .tstate_native_thread_id
                    .and_then(|off| {
                        snap.view(&self.mem)
                            .read_u64(holder.wrapping_add(off as u64))
                            .ok()
                            .filter(|&t| t > 0 && t < u32::MAX as u64)
                    })
                    .and_then(|t| self.ns.host(t)),
            };
            match tid {
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
        take(self);
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
        let head = if interp != 0 {
            interp + self.runtime.layout.interp_tstate_head as u64
        } else {
            0
        };
        static TASK: std::sync::OnceLock<crate::process::btf::TaskOffsets> =
            std::sync::OnceLock::new();
        let task = *TASK.get_or_init(crate::process::btf::task_offsets);
        let native = self.sampler.native.is_some();
        super::bpf::BpfConfig::new(
            &self.runtime.layout,
            gil,
            max_depth,
            opcodes,
            native,
            head,
            task,
        )
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
        self.learn_thread_list();
        self.refresh_names();
        self.ids_by_tstate = self.list.iter().copied().collect();
        let want: HashMap<u32, u64> = self
            .list
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
        s: &mut super::bpf::BpfSample,
        profile: &mut Profile,
    ) -> Result<bool, WalkError> {
        use super::bpf::{FLAG_HOLDS_GIL, FLAG_NOT_PYTHON, FLAG_READ_ERROR, FLAG_UNKNOWN_THREAD};
        if s.flags & FLAG_NOT_PYTHON != 0 {
            self.stats.not_python += 1;
            return Ok(false);
        }
        if s.flags & FLAG_UNKNOWN_THREAD != 0 {
            self.bpf_refresh_wanted = true;
            return Err(WalkError::UnknownThread);
        }
        if s.flags & FLAG_READ_ERROR != 0 {
            return Err(WalkError::Read);
        }
        // A cycle in the frame list runs the kernel's walk to its depth limit: only a
        // truncated stack can hold one (checking every stack costs a sort of its frames).
        if s.raw.truncated && s.raw.frames.len() > 1 {
            let frames: Vec<u64> = s.raw.frames.iter().map(|f| f.frame).collect();
            if crate::walker::has_duplicates(&frames) {
                return Err(WalkError::Cycle("frame"));
            }
        }
        if self.filter.gil_only && s.flags & FLAG_HOLDS_GIL == 0 {
            self.dropped_gil += 1;
            return Ok(false);
        }
        // (The sample's buffer is taken, and one kept from an earlier sample left in its
        // place: a deep stack is tens of KB, not to be copied or allocated anew.)
        let mut raw = std::mem::take(&mut self.bpf_raw);
        std::mem::swap(&mut raw, &mut s.raw);
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
                f.entry = true;
            }
        }
        if let Some(root) = raw.frames.last_mut() {
            root.entry = true;
        }
        if let (Some(unwinder), Some(copy)) = (self.sampler.native.as_mut(), s.native.as_ref()) {
            // --native: the stack the kernel copied with the registers, in the same event.
            let mut stack = Vec::new();
            let regs = crate::process::native::Regs {
                ip: copy.ip,
                sp: copy.sp,
                bp: copy.bp,
            };
            unwinder.unwind(regs, &mut |a| copy.word(a), &mut stack);
            self.sampler.native_stacks.insert(raw.tstate, stack);
        }
        let view = self.code_snapshot.view(&self.mem);
        if raw.frames.iter().any(|f| f.tlbc_index != 0) {
            // Free-threaded: where each frame's own copy of the bytecode starts.
            let mut one = [Ok(raw)];
            self.sampler.walker.resolve_bytecode(&view, &mut one);
            let [r] = one;
            raw = r?;
        }
        let (windows, frames) = (&s.windows, &raw.frames);
        let opcodes = |i: usize, at: u64| super::bpf::window_opcode(windows, frames, i, at);
        self.sampler.code_alive_when_sampled = true;
        let mut r = self
            .sampler
            .record_thread(&view, &raw, profile, Some(&opcodes))
            .map(|()| true);
        if r == Err(WalkError::Read)
            && self.mem.read_errno(raw.tstate, &mut [0u8; 8]) == Err(libc::ESRCH)
        {
            // The process exited (its memory is gone) after the kernel took the sample:
            // its code objects were alive then; the ones decoded before are used as
            // they were. (A code object never decoded fails the sample.)
            self.sampler.code.trust_cache = true;
            r = self
                .sampler
                .record_thread(&view, &raw, profile, Some(&opcodes))
                .map(|()| true);
            self.sampler.code.trust_cache = false;
            if r == Err(WalkError::Read) {
                // What it needed was never read: lost with the process, not a failure.
                r = Ok(false);
            }
        }
        self.sampler.code_alive_when_sampled = false;
        self.bpf_raw = raw;
        r
    }

    /// Start a bpf tick: code objects are validated once in it, from one batched read
    /// of the ones the last tick used.
    pub fn begin_bpf_tick(&mut self) {
        self.sampler.code.begin_tick();
        self.code_snapshot.take(&self.mem);
    }

    /// With `--idle` under bpf: the threads that are not on a CPU (the kernel samples the
    /// others), read from userspace. Threads that did not run since their last sample
    /// get their last stack again (nothing to read). The rest are read, and the read is
    /// kept only if no thread believed asleep ran meanwhile (the process used no CPU
    /// time beyond the running threads'); else it is retried once, then counted.
    pub fn sample_idle(&mut self, profile: &mut Profile) -> Vec<WalkError> {
        let mut errors = Vec::new();
        self.monitor.exact = true;
        if self.list.is_empty() || self.list_due() {
            self.learn_thread_list();
            self.list_dirty = false;
        }
        let tids = self.python_tids();
        self.monitor.refresh(&tids);
        let gil = if self.filter.gil_only && self.interp != 0 {
            self.sampler.walker.gil_holder(&self.mem, self.interp)
        } else {
            None
        };
        let repeatable = if self.sampler.code.opcode_table().is_none() {
            self.sampler.repeatable()
        } else {
            HashSet::new()
        };
        let mut walk: Vec<(u64, u64, Option<u64>)> = Vec::new();
        let mut repeat: Vec<u64> = Vec::new();
        for (tstate, ids) in &self.list {
            let tid = self.os_tids.get(tstate).copied();
            let Some(tid) = tid else { continue };
            if !self.monitor.knows(tid) || self.monitor.is_active(tid) {
                continue; // on a CPU (or new): the kernel samples it
            }
            if self.filter.gil_only && gil != Some(*tstate) {
                self.dropped_gil += 1;
                continue;
            }
            if !self.monitor.ran_recently(tid) && repeatable.contains(tstate) {
                repeat.push(*tstate);
            } else {
                walk.push((*tstate, ids.thread_id, ids.native_id));
            }
        }
        let mut threads = Vec::new();
        let mut ran = false;
        if !walk.is_empty() {
            for attempt in 0..2 {
                self.snapshot.take(&self.mem);
                let view = self.snapshot.view(&self.mem);
                self.sampler.walker.walk_listed(&view, &walk, &mut threads);
                let quiet = self
                    .monitor
                    .unexplained_since_refresh()
                    .is_some_and(|u| u <= self.monitor.slack());
                ran = !quiet;
                if quiet || attempt == 1 {
                    break;
                }
                self.monitor.refresh(&tids); // a thread we believed asleep ran: again
            }
        }
        let view = self.code_snapshot.view(&self.mem);
        for t in threads {
            match t {
                Err(WalkError::ThreadGone) => self.list_dirty = true,
                Err(e) => errors.push(e),
                Ok(_) if ran => errors.push(WalkError::RanDuringRead),
                Ok(raw) => {
                    if let Err(e) = self.sampler.record_thread(&view, &raw, profile, None) {
                        errors.push(e);
                    }
                }
            }
        }
        for tstate in repeat {
            self.sampler.repeat(tstate, profile);
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
        let mut files = std::collections::HashMap::new();
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
            let sym = info.symbols.clone().unwrap_or_default();
            let (source, source_note) = self.source_lines(&mut files, info);
            out.push(crate::profile::CodeSnapshot {
                file: info.filename.clone(),
                function: info.name.clone(),
                first_line: info.first_line,
                bytecode: hex(live.as_deref().unwrap_or(&info.bytecode)),
                line_table: hex(&info.line_table),
                names: sym.names,
                consts: sym.consts,
                locals: sym.locals,
                cells: sym.cells,
                source,
                source_note,
            });
        }
        out.sort_by(|a, b| {
            (&a.file, a.first_line, &a.function).cmp(&(&b.file, b.first_line, &b.function))
        });
        out
    }

    /// A function's source lines (`first_line` through the last line its line table
    /// names), read through the target's root; or why they are missing. `files` caches
    /// each file's text (or error) for the other functions in it.
    fn source_lines(
        &self,
        files: &mut std::collections::HashMap<String, Result<std::rc::Rc<Vec<String>>, String>>,
        info: &crate::code::CodeInfo,
    ) -> (Vec<String>, Option<String>) {
        let text = files
            .entry(info.filename.clone())
            .or_insert_with(|| match &self.source_root {
                Some(root) => root
                    .read(&info.filename)
                    .map(|t| std::rc::Rc::new(t.lines().map(String::from).collect())),
                None => Err(format!(
                    "the target's root (/proc/{}/root) could not be opened",
                    self.pid
                )),
            })
            .clone();
        let lines = match text {
            Ok(lines) => lines,
            Err(why) => return (Vec::new(), Some(why)),
        };
        let l = self.layout();
        let last = crate::code::linetable::line_ranges(
            l.line_table,
            &info.line_table,
            info.first_line,
            info.bytecode.len() as u32,
            l.major,
            l.minor,
        )
        .iter()
        .filter_map(|r| r.2)
        .max()
        .unwrap_or(info.first_line)
        .max(info.first_line);
        let first = info.first_line.max(1) as usize;
        let last = (last as usize).min(first + 5000);
        if first > lines.len() {
            return (
                Vec::new(),
                Some(format!(
                    "{} has {} lines, the function starts at line {first} (the file changed?)",
                    info.filename,
                    lines.len()
                )),
            );
        }
        (lines[first - 1..last.min(lines.len())].to_vec(), None)
    }
}

/// What the recording loop samples: the target, and with `--subprocesses` its Python
/// descendants, found as they appear (from their first milliseconds). The process given
/// (launched or `--pid`) need not be Python itself: a shell script or a launcher is
/// followed to its Python descendants (the first one; all of them with
/// `--subprocesses`).
pub struct Targets {
    /// The process given.
    pub root: i32,
    pub sessions: Vec<Session>,
    /// Follow Python descendants (--subprocesses).
    pub follow_children: bool,
    /// Processes found not to be Python (not tried again).
    /// Descendants found not to be Python, with the executable they ran then: one that
    /// execs (a forked shell becoming `python`) is looked at again.
    not_python: std::collections::HashMap<i32, Option<std::path::PathBuf>>,
    /// Descendants whose interpreter is not initialised yet (tried again).
    last_scan: Option<Instant>,
    last_full_scan: Option<Instant>,
    children: ChildFiles,
    pub max_depth: usize,
    pub opcodes: bool,
    /// `--native`: sessions of descendants unwind native stacks too.
    pub native: bool,
    pub filter: ThreadFilter,
}

/// How often descendants are looked for: every 5 ms through the main threads' `children`
/// files (kept open), every 100 ms through every thread's.
const SCAN_EVERY: Duration = Duration::from_millis(5);
const FULL_SCAN_EVERY: Duration = Duration::from_millis(100);

impl Targets {
    pub fn new(root: Session) -> Targets {
        let mut t = Targets::empty(
            root.pid,
            root.sampler.walker.max_depth,
            root.sampler.code.opcode_table().is_some(),
            root.filter,
        );
        t.sessions.push(root);
        t
    }

    /// Targets of a root process that is not (or not yet) Python.
    pub fn empty(root: i32, max_depth: usize, opcodes: bool, filter: ThreadFilter) -> Targets {
        Targets {
            root,
            sessions: Vec::new(),
            follow_children: false,
            not_python: Default::default(),
            last_scan: None,
            last_full_scan: None,
            children: ChildFiles::default(),
            max_depth,
            opcodes,
            native: false,
            filter,
        }
    }

    /// Is the root process itself one of the sessions?
    pub fn root_is_python(&self) -> bool {
        self.sessions.iter().any(|s| s.pid == self.root)
    }

    /// Label every session with its process (with --subprocesses, from the first sample,
    /// so that a process's samples never split into two roots).
    pub fn label_processes(&mut self) {
        if self.follow_children {
            for s in &mut self.sessions {
                if s.sampler.process_label.is_none() {
                    s.sampler.process_label = Some(process_label(s.pid));
                }
            }
        }
    }

    /// Attach to Python descendants not seen yet: with --subprocesses all of them, else,
    /// when the root is not Python, the first one.
    pub fn scan_children(&mut self) {
        let wanted = self.follow_children || self.sessions.is_empty();
        if !wanted || self.last_scan.is_some_and(|t| t.elapsed() < SCAN_EVERY) {
            return;
        }
        let now = Instant::now();
        self.last_scan = Some(now);
        let full = self
            .last_full_scan
            .is_none_or(|t| now.duration_since(t) >= FULL_SCAN_EVERY);
        if full {
            self.last_full_scan = Some(now);
        }
        for child in self.children.descendants(self.root, full) {
            if self.sessions.iter().any(|s| s.pid == child) {
                continue;
            }
            let exe = || std::fs::read_link(format!("/proc/{child}/exe")).ok();
            if let Some(seen) = self.not_python.get(&child) {
                if *seen == exe() {
                    continue;
                }
            }
            match Session::attach(child, self.max_depth, self.opcodes) {
                Ok(s) if !s.ready() => {} // not initialised yet: next scan
                Ok(mut s) => {
                    s.filter = self.filter;
                    if self.native {
                        s.enable_native();
                    }
                    if self.follow_children {
                        s.sampler.process_label = Some(process_label(child));
                    }
                    s.prime();
                    self.sessions.push(s);
                    if !self.follow_children {
                        return; // the first Python descendant is the target
                    }
                }
                Err(DiscoverError::NotReady(_)) => {}
                Err(DiscoverError::NoSuchProcess(_)) => {}
                Err(_) => {
                    self.not_python.insert(child, exe());
                }
            }
        }
        if self.not_python.len() > 100_000 {
            self.not_python.clear();
        }
    }
}

/// The descendants of a process, from the `children` files of its threads (kept open).
#[derive(Default)]
struct ChildFiles {
    files: std::collections::HashMap<(i32, u64), std::fs::File>,
    buf: Vec<u8>,
}

impl ChildFiles {
    /// Every descendant of `root` (breadth first, bounded). With `all_threads`, the
    /// children of every thread; else of each process's main thread only (where
    /// `fork` usually comes from), which is one read per process.
    fn descendants(&mut self, root: i32, all_threads: bool) -> Vec<i32> {
        use std::os::unix::fs::FileExt;
        let mut out = Vec::new();
        let mut queue = vec![root];
        let mut seen = std::collections::HashSet::new();
        while let Some(pid) = queue.pop() {
            if !seen.insert(pid) || seen.len() > 4096 {
                continue;
            }
            let tids: Vec<u64> = if all_threads {
                crate::process::threads::task_ids(pid)
            } else {
                vec![pid as u64]
            };
            for tid in tids {
                if let std::collections::hash_map::Entry::Vacant(e) = self.files.entry((pid, tid)) {
                    match std::fs::File::open(format!("/proc/{pid}/task/{tid}/children")) {
                        Ok(f) => {
                            e.insert(f);
                        }
                        Err(_) => continue,
                    }
                }
                self.buf.resize(4096, 0);
                let Some(f) = self.files.get(&(pid, tid)) else {
                    continue;
                };
                let n = match f.read_at(&mut self.buf, 0) {
                    Ok(n) => n,
                    Err(_) => {
                        self.files.remove(&(pid, tid));
                        continue;
                    }
                };
                let text = String::from_utf8_lossy(&self.buf[..n]);
                for c in text
                    .split_whitespace()
                    .filter_map(|c| c.parse::<i32>().ok())
                {
                    out.push(c);
                    queue.push(c);
                }
            }
        }
        if self.files.len() > 4096 {
            self.files.clear();
        }
        out
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
