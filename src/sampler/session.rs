//! Sessions: an attached target (its memory, interpreter, stack sampler and thread
//! filter), and the set of targets a recording samples (the process and, with
//! `--subprocesses`, its Python descendants).

use super::stacks::StackSampler;
use crate::code::opcodes;
use crate::process::{LiveMemory, Memory};
use crate::profile::Profile;
use crate::runtime::layout::Layout;
use crate::runtime::{self, DiscoverError, PythonRuntime};
use crate::walker::{WalkError, Walker};
use std::time::{Duration, Instant};

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
