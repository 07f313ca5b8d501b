//! OS threads of the target: which are running (the `ThreadMonitor`, cheap enough to ask
//! every tick), their scheduler state (`/proc/PID/task/TID/stat`), and the OS thread id
//! behind a `pthread_t` on interpreters that do not record it (≤3.10).

use super::Memory;
use crate::profile::FxBuild;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

/// The state letter of a thread from its stat line: R running, S sleeping, D disk, ...
pub fn parse_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Does a state letter mean the thread is doing work (running, or in uninterruptible
/// I/O)? An unknown state counts as active, so nothing is dropped on a failed read.
pub fn is_active(state: Option<char>) -> bool {
    !matches!(state, Some('S') | Some('T') | Some('t') | Some('I'))
}

/// Reads threads' scheduler states, keeping each stat file open between samples.
#[derive(Default)]
pub struct ThreadStates {
    pid: i32,
    files: HashMap<u64, File>,
    buf: String,
}

impl ThreadStates {
    pub fn new(pid: i32) -> ThreadStates {
        ThreadStates {
            pid,
            ..Default::default()
        }
    }

    /// The state letter of thread `tid` now (None if it is gone).
    pub fn state(&mut self, tid: u64) -> Option<char> {
        if !self.files.contains_key(&tid) {
            let f = File::open(format!("/proc/{}/task/{tid}/stat", self.pid)).ok()?;
            if self.files.len() > 100_000 {
                self.files.clear();
            }
            self.files.insert(tid, f);
        }
        let f = self.files.get_mut(&tid)?;
        self.buf.clear();
        let ok = f.seek(SeekFrom::Start(0)).is_ok() && f.read_to_string(&mut self.buf).is_ok();
        if !ok || self.buf.is_empty() {
            self.files.remove(&tid);
            return None;
        }
        parse_state(&self.buf)
    }

    /// The state of every thread of the target now. Taken before pausing it: a thread
    /// paused by ptrace reads as `t` (tracing stop), not as what it was doing.
    pub fn snapshot(&mut self) -> HashMap<u64, char> {
        let tids = task_ids(self.pid);
        let out: HashMap<u64, char> = tids
            .iter()
            .filter_map(|&t| Some((t, self.state(t)?)))
            .collect();
        if self.files.len() > tids.len() + 64 {
            self.retain(&tids);
        }
        out
    }

    /// Forget threads not in `alive` (their files would keep reading a dead thread).
    pub fn retain(&mut self, alive: &[u64]) {
        self.files.retain(|t, _| alive.contains(t));
    }
}

/// The OS thread ids of the target (`/proc/PID/task`).
pub fn task_ids(pid: i32) -> Vec<u64> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Finds the OS thread id inside glibc's `struct pthread` (what a `pthread_t` points
/// at), for interpreters that record only `pthread_t` (≤3.10). The offset is learned
/// from the target itself: the first word of the struct holding one of its task ids, and
/// relearned whenever it stops giving one.
#[derive(Default)]
pub struct TidResolver {
    offset: Option<u64>,
}

/// How far into `struct pthread` the `tid` field may be.
const MAX_TID_OFFSET: u64 = 2048;

impl TidResolver {
    /// Is the offset known?
    pub fn learned(&self) -> bool {
        self.offset.is_some()
    }

    /// Learn the offset from all threads at once: the first offset at which every
    /// thread's struct holds a distinct task id of the target.
    pub fn learn(&mut self, mem: &dyn Memory, pthreads: &[u64], tasks: &HashSet<u64>) -> bool {
        let Some(&first) = pthreads.first() else {
            return false;
        };
        let mut block = vec![0u8; MAX_TID_OFFSET as usize];
        if mem.read(first, &mut block).is_err() {
            return false;
        }
        'offsets: for (i, w) in block.chunks_exact(4).enumerate() {
            let v = u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as u64;
            if v == 0 || !tasks.contains(&v) {
                continue;
            }
            let off = 4 * i as u64;
            let mut seen = HashSet::new();
            for &p in pthreads {
                match p.checked_add(off).map(|a| mem.read_u32(a)) {
                    Some(Ok(t)) if tasks.contains(&(t as u64)) && seen.insert(t) => {}
                    _ => continue 'offsets,
                }
            }
            self.offset = Some(off);
            return true;
        }
        false
    }

    /// The OS thread id of `pthread`, given the target's current task ids (None until the
    /// offset is learned, or if the thread's struct does not hold a task id there).
    pub fn tid(&mut self, mem: &dyn Memory, pthread: u64, tasks: &HashSet<u64>) -> Option<u64> {
        let off = self.offset?;
        let v = mem.read_u32(pthread.checked_add(off)?).ok()? as u64;
        tasks.contains(&v).then_some(v)
    }
}

/// What the monitor believes about one thread.
struct Watched {
    /// `/proc/PID/task/TID/schedstat`, kept open (one pread per look).
    schedstat: File,
    /// `/proc/PID/task/TID/stat`, opened when its state letter is first needed.
    stat: Option<File>,
    /// Nanoseconds on a CPU so far (schedstat's first field), at the last look.
    runtime: u64,
    /// Active (running, runnable or in uninterruptible I/O) at the last look.
    active: bool,
    /// Looked at in the last full pass or since: watched every tick while it runs.
    watched: bool,
    /// The state letter, when it was read (or inferred: see `state_read`).
    state: Option<char>,
    /// `state` was read, not inferred from a run time that covered the whole tick.
    state_read: bool,
    /// How long ptrace held it paused after the `refresh` numbered here (`note_paused`).
    paused: (u64, Duration),
    /// The `refresh` at which it was last seen to have run in the interval before it (as
    /// far as it can tell: a thread not looked at ran less than `slack` in all). A number,
    /// not a flag, so that a refresh need not visit every thread to clear it.
    ran_at: u64,
    /// When it was last seen running (a thread stays watched for `WATCH_FOR` after).
    last_ran: Option<Instant>,
}

/// How long a thread that ran stays watched (looked at every tick) after it last ran.
const WATCH_FOR: Duration = Duration::from_secs(1);
/// How far behind a running thread's `schedstat` run time may be: the kernel updates it
/// at scheduler ticks and context switches, while the process CPU clock is exact.
/// Measured here (HZ=250): up to 6.7 ms behind; two ticks of 4 ms are allowed.
const SCHEDSTAT_LAG: u64 = 8_000_000;

/// Which of the target's threads are active, found at a small, bounded cost per tick:
///
/// - threads that ran recently are *watched*: one `pread` of their `schedstat` per tick
///   (two with the state letter when it is ambiguous);
/// - every other thread is believed asleep as long as the process's own CPU clock
///   (`clock_gettime` of the process CPU clock: one system call for all threads) shows
///   no CPU time beyond the watched threads'. When it does, or every `full_pass_every`
///   (a second, up to 10 s with many threads), every thread's `schedstat` is read once
///   and those that ran are watched again.
///
/// A thread that ran less than `slack` in a tick (20 µs or 1% of the period, plus a
/// scheduler tick per running thread, since their run times lag) can be missed until the
/// next full pass, 1–10 s later; a thread that ran stays watched for a second.
pub struct ThreadMonitor {
    pid: i32,
    clock: Option<libc::clockid_t>,
    /// Keeps reads of `clock` O(1) in the number of threads (see `GroupTimer`).
    _timer: Option<GroupTimer>,
    /// By OS thread id (the kernel's numbers, not the target's: a fast hash is safe).
    threads: HashMap<u64, Watched, FxBuild>,
    /// `refresh` calls made (what `Watched::ran_at` counts in).
    refreshes: u64,
    last_cpu: Option<u64>,
    last_tick: Option<Instant>,
    last_full: Option<Instant>,
    last_period: Duration,
    /// Read every watched thread's run time each tick (no shortcut for a single one):
    /// for proving, after a read, that no thread believed asleep ran during it.
    pub exact: bool,
    /// System calls made, for cost accounting (the bench reports them).
    pub syscalls: u64,
    /// Full passes made (every thread's schedstat read).
    pub full_passes: u64,
    buf: Vec<u8>,
}

/// The CPU clock of process `pid` (all its threads), if the kernel gives one.
pub fn process_cpu_clock(pid: i32) -> Option<libc::clockid_t> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: plain libc call with a valid out-pointer.
    (unsafe { libc::clock_getcpuclockid(pid, &mut clock) } == 0).then_some(clock)
}

/// A CPU clock's reading in nanoseconds (one system call).
pub fn read_cpu_clock(clock: libc::clockid_t) -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a clock id from clock_getcpuclockid and a valid out-pointer.
    (unsafe { libc::clock_gettime(clock, &mut ts) } == 0)
        .then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// A CPU timer on a target's process clock, armed to expire only after a century of its
/// CPU time, held for as long as the clock is read. While any such timer is armed the
/// kernel keeps the process's CPU time as one running total, so a read of the process
/// clock costs the same for 1 thread or 10,000; without one, each read sums the run time
/// of every thread (a third of pyprof's CPU with 1,000 threads, measured). The timer is
/// pyprof's, not the target's: nothing in the target changes, and were it ever to expire
/// it would send pyprof a SIGURG, which is ignored.
pub struct GroupTimer(libc::timer_t);

impl GroupTimer {
    pub fn arm(clock: libc::clockid_t) -> Option<GroupTimer> {
        // SAFETY: zeroed is a valid sigevent; the fields set are the ones SIGEV_SIGNAL reads.
        let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
        sev.sigev_notify = libc::SIGEV_SIGNAL;
        sev.sigev_signo = libc::SIGURG;
        let mut timer: libc::timer_t = std::ptr::null_mut();
        // SAFETY: valid pointers; the timer is deleted in Drop.
        if unsafe { libc::timer_create(clock, &mut sev, &mut timer) } != 0 {
            return None;
        }
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: 100 * 365 * 86_400,
                tv_nsec: 0,
            },
        };
        let t = GroupTimer(timer);
        // SAFETY: a timer just created, valid pointers.
        let armed = unsafe { libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()) } == 0;
        armed.then_some(t)
    }
}

impl Drop for GroupTimer {
    fn drop(&mut self) {
        // SAFETY: a timer this value created and owns.
        unsafe { libc::timer_delete(self.0) };
    }
}

/// How often every thread is looked at even when the process clock shows nothing new
/// (threads that block in uninterruptible I/O use no CPU but count as active): once a
/// second, and 10 ms per thread beyond 100 (at most every 10 s), so that the look costs
/// at most a read per 10 ms, a system call per tick at 100 Hz, for any number of threads.
fn full_pass_every(threads: usize) -> Duration {
    per_thread_interval(
        threads,
        Duration::from_millis(10),
        Duration::from_secs(1),
        1000,
    )
}

/// An interval that grows with the number of threads: `per_thread` for each of them (of
/// at most `most` threads), and never under `floor`. What is read for every thread (their
/// list, names, run times) is read this often, so that its cost per second stays bounded.
pub fn per_thread_interval(
    threads: usize,
    per_thread: Duration,
    floor: Duration,
    most: usize,
) -> Duration {
    (per_thread * threads.min(most) as u32).max(floor)
}

impl ThreadMonitor {
    pub fn new(pid: i32) -> ThreadMonitor {
        let clock = process_cpu_clock(pid);
        ThreadMonitor {
            pid,
            clock,
            _timer: clock.and_then(GroupTimer::arm),
            threads: HashMap::default(),
            refreshes: 0,
            last_cpu: None,
            last_tick: None,
            last_full: None,
            last_period: Duration::ZERO,
            exact: false,
            syscalls: 0,
            full_passes: 0,
            buf: vec![0u8; 512],
        }
    }

    /// Total CPU time of the whole process (all its threads), in nanoseconds.
    pub fn process_cpu(&mut self) -> Option<u64> {
        let clock = self.clock?;
        self.syscalls += 1;
        read_cpu_clock(clock)
    }

    fn read_runtime(&mut self, tid: u64) -> Option<u64> {
        let w = self.threads.get(&tid)?;
        self.syscalls += 1;
        let n = w.schedstat.read_at(&mut self.buf, 0).ok()?;
        let text = std::str::from_utf8(&self.buf[..n]).ok()?;
        text.split_whitespace().next()?.parse().ok()
    }

    fn read_state(&mut self, tid: u64) -> Option<char> {
        let pid = self.pid;
        let w = self.threads.get_mut(&tid)?;
        if w.stat.is_none() {
            self.syscalls += 1;
            w.stat = File::open(format!("/proc/{pid}/task/{tid}/stat")).ok();
        }
        let f = w.stat.as_ref()?;
        self.syscalls += 1;
        let n = f.read_at(&mut self.buf, 0).ok()?;
        let state = parse_state(std::str::from_utf8(&self.buf[..n]).ok()?);
        if let Some(w) = self.threads.get_mut(&tid) {
            w.state = state;
            w.state_read = true;
        }
        state
    }

    /// Start watching `tid` (a thread the interpreter knows); false if it is gone.
    fn add(&mut self, tid: u64) -> bool {
        self.syscalls += 1;
        let Ok(f) = File::open(format!("/proc/{}/task/{tid}/schedstat", self.pid)) else {
            return false;
        };
        self.threads.insert(
            tid,
            Watched {
                schedstat: f,
                stat: None,
                runtime: 0,
                active: true,
                watched: true,
                state: None,
                state_read: false,
                paused: (0, Duration::ZERO),
                ran_at: self.refreshes,
                last_ran: Some(Instant::now()),
            },
        );
        match self.read_runtime(tid) {
            Some(r) => {
                let state = self.read_state(tid);
                if let Some(w) = self.threads.get_mut(&tid) {
                    w.runtime = r;
                    w.active = is_active(state);
                    // A thread found asleep is not watched: the process clock tells if it
                    // runs (watching every thread of a process just attached to would
                    // read each one's run time every tick for a second).
                    w.watched = w.active;
                    if !w.active {
                        w.last_ran = None;
                    }
                }
                true
            }
            None => {
                self.threads.remove(&tid);
                false
            }
        }
    }

    /// Update what is known for this tick. `tids` are the OS ids of the interpreter's
    /// threads (a new one is watched at once); the process's other threads are found by
    /// listing its tasks in the full passes, so that their CPU time is explained too.
    pub fn refresh(&mut self, tids: &[u64]) {
        let now = Instant::now();
        let period = self
            .last_tick
            .map(|t| now.duration_since(t))
            .unwrap_or_default();
        self.last_tick = Some(now);
        self.last_period = period;
        for &t in tids {
            if !self.threads.contains_key(&t) {
                self.add(t);
            }
        }
        let due = self
            .last_full
            .is_none_or(|t| now.duration_since(t) >= full_pass_every(self.threads.len()));
        if due {
            self.syscalls += 4; // openat, getdents64 (twice), close
            let tasks = task_ids(self.pid);
            if !tasks.is_empty() {
                let alive: HashSet<u64> = tasks.iter().copied().collect();
                self.threads.retain(|t, _| alive.contains(t));
                for t in tasks {
                    if !self.threads.contains_key(&t) {
                        self.add(t);
                    }
                }
            }
        }
        self.refreshes += 1;
        let cpu = self.process_cpu();
        let cpu_delta = match (cpu, self.last_cpu) {
            (Some(c), Some(l)) => Some(c.saturating_sub(l)),
            _ => None,
        };
        self.last_cpu = cpu;
        // 1. Watched threads: how much did each run since the last tick? With one
        //    watched thread and the others asleep, that is what the whole process ran:
        //    no read of its own (the full passes check the others).
        let watched: Vec<u64> = self
            .threads
            .iter()
            .filter(|(_, w)| w.watched)
            .map(|(t, _)| *t)
            .collect();
        let mut explained = 0u64;
        match (watched.as_slice(), cpu_delta, due || self.exact) {
            ([only], Some(d), false) => {
                // (Its stored run time stays the last one read: the next look sees all it
                // ran since, as running.)
                self.judge(*only, d, period);
                explained = d;
            }
            _ => {
                for tid in watched {
                    self.look(tid, period, &mut explained);
                }
            }
        }
        // 2. The rest: asleep, unless the process used CPU the watched ones did not.
        let slack = self.slack_for(period);
        let unexplained = cpu_delta.map(|d| d.saturating_sub(explained));
        if due || unexplained.is_none_or(|u| u > slack) {
            self.full_passes += 1;
            self.last_full = Some(now);
            let others: Vec<u64> = self
                .threads
                .iter()
                .filter(|(_, w)| !w.watched)
                .map(|(t, _)| *t)
                .collect();
            for tid in others {
                self.look(tid, period, &mut explained);
            }
        }
    }

    /// Look at one thread: its run time since the last look, and its state when that
    /// does not settle it.
    fn look(&mut self, tid: u64, period: Duration, explained: &mut u64) {
        let Some(r) = self.read_runtime(tid) else {
            self.threads.remove(&tid);
            return;
        };
        let Some(w) = self.threads.get_mut(&tid) else {
            return;
        };
        let ran = r.saturating_sub(w.runtime);
        w.runtime = r;
        *explained += ran;
        self.judge(tid, ran, period);
    }

    /// What a thread that ran `ran` ns since the last look is now.
    fn judge(&mut self, tid: u64, ran: u64, period: Duration) {
        let Some(w) = self.threads.get_mut(&tid) else {
            return;
        };
        let now = Instant::now();
        let ran_before = w.ran_at == self.refreshes;
        if ran > 0 {
            w.ran_at = self.refreshes;
        }
        if ran == 0 {
            if !w.watched {
                return;
            }
            // No run time since the last look. The kernel adds to a thread's run time
            // at each scheduler tick while it runs and whenever it leaves the CPU, so
            // none means the thread neither left the CPU nor came onto it: the state
            // letter last read still holds (a running thread's run time lags, by up to
            // a scheduler tick, which is why it often reads unchanged at 1 kHz). A
            // letter inferred from a tick spent running is read once, to see whether the
            // thread left the CPU at the end of that tick.
            let recent = w
                .last_ran
                .is_some_and(|t| now.duration_since(t) < WATCH_FOR);
            if ran_before || w.state.is_none() || !w.state_read {
                let state = self.read_state(tid);
                if let Some(w) = self.threads.get_mut(&tid) {
                    w.active = is_active(state);
                    w.watched = w.active || recent;
                }
            } else {
                w.watched = recent;
            }
            return;
        }
        w.watched = true;
        w.last_ran = Some(now);
        // The time ptrace held it paused was not its to run.
        let held = if w.paused.0 + 1 == self.refreshes {
            w.paused.1
        } else {
            Duration::ZERO
        };
        let span = period.saturating_sub(held);
        if span > Duration::ZERO && ran >= span.as_nanos() as u64 * 95 / 100 {
            // On a CPU for (nearly) the whole tick: running.
            w.active = true;
            w.state = Some('R');
            w.state_read = false;
            return;
        }
        // Ran part of the tick: the state letter says whether it runs now.
        let state = self.read_state(tid);
        if let Some(w) = self.threads.get_mut(&tid) {
            w.active = is_active(state);
        }
    }

    /// Threads ptrace held paused since the last `refresh`, and for how long: the next
    /// judgement of whether each ran the whole tick leaves that time out (a dithered tick
    /// that follows the last one closely is otherwise mostly pause, and its state letter
    /// was read to settle it).
    pub fn note_paused(&mut self, tids: &[u64], held: Duration) {
        for t in tids {
            if let Some(w) = self.threads.get_mut(t) {
                w.paused = (self.refreshes, held);
            }
        }
    }

    /// CPU time the process used since the last `refresh` beyond what its watched
    /// threads used: more than `slack()` means a thread believed asleep ran. Reads the
    /// process clock and the watched threads' run times, and changes nothing.
    pub fn unexplained_since_refresh(&mut self) -> Option<u64> {
        let before = self.last_cpu?;
        let now = self.process_cpu()?;
        let watched: Vec<(u64, u64)> = self
            .threads
            .iter()
            .filter(|(_, w)| w.watched)
            .map(|(t, w)| (*t, w.runtime))
            .collect();
        let mut explained = 0;
        for (tid, then) in watched {
            explained += self.read_runtime(tid).unwrap_or(then).saturating_sub(then);
        }
        Some(now.saturating_sub(before).saturating_sub(explained))
    }

    /// How much unexplained CPU time a check tolerates: 20 µs or 1% of the period, plus
    /// one scheduler tick of lag per running watched thread (see `SCHEDSTAT_LAG`).
    pub fn slack(&self) -> u64 {
        let period = self.last_period;
        self.slack_for(period)
    }

    fn slack_for(&self, period: Duration) -> u64 {
        let running = self
            .threads
            .values()
            .filter(|w| w.watched && w.active)
            .count() as u64;
        (period.as_nanos() as u64 / 100).max(20_000) + running * SCHEDSTAT_LAG
    }

    /// Is `tid` active (running, runnable or in uninterruptible I/O)? An unknown thread
    /// counts as active, so that nothing is dropped on a failed read.
    pub fn is_active(&self, tid: u64) -> bool {
        self.threads.get(&tid).is_none_or(|w| w.active)
    }

    /// Did `tid` run in the interval before the last `refresh`? True when unknown. A thread
    /// that did not cannot have changed its stack since.
    pub fn ran_recently(&self, tid: u64) -> bool {
        self.threads
            .get(&tid)
            .is_none_or(|w| w.ran_at == self.refreshes)
    }

    /// Is `tid` one of the threads the monitor follows?
    pub fn knows(&self, tid: u64) -> bool {
        self.threads.contains_key(&tid)
    }

    /// Threads believed active, for pausing the ones that can move.
    pub fn active(&self) -> Vec<u64> {
        self.threads
            .iter()
            .filter(|(_, w)| w.active)
            .map(|(t, _)| *t)
            .collect()
    }

    /// The exact state letter of `tid` now (reads it).
    pub fn state_now(&mut self, tid: u64) -> Option<char> {
        if !self.threads.contains_key(&tid) && !self.add(tid) {
            return None;
        }
        self.read_state(tid)
    }

    /// Run time of `tid` now (reads it), for proving a thread did not run during a read.
    pub fn runtime_now(&mut self, tid: u64) -> Option<u64> {
        if !self.threads.contains_key(&tid) && !self.add(tid) {
            return None;
        }
        self.read_runtime(tid)
    }

    /// Known threads.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }
}

/// The thread ids of a target in another PID namespace (a container), as the kernel
/// numbers them where pyprof runs (`host`) and in the target's namespace (`ns`): the
/// interpreter records the latter, /proc and the kernel's events speak the former.
/// Read from `NSpid` in /proc/PID/task/TID/status.
pub struct NsTids {
    pid: i32,
    /// The target shares our PID namespace: ids are the same.
    same: bool,
    to_host: HashMap<u64, u64>,
    to_ns: HashMap<u64, u64>,
    read_at: Option<Instant>,
}

impl NsTids {
    pub fn new(pid: i32) -> NsTids {
        let ns = |p: &str| {
            std::fs::metadata(p).ok().map(|m| {
                use std::os::unix::fs::MetadataExt;
                (m.dev(), m.ino())
            })
        };
        let ours = ns("/proc/self/ns/pid");
        let theirs = ns(&format!("/proc/{pid}/ns/pid"));
        NsTids {
            pid,
            same: ours.is_none() || theirs.is_none() || ours == theirs,
            to_host: HashMap::new(),
            to_ns: HashMap::new(),
            read_at: None,
        }
    }

    /// Does the target live in another PID namespace?
    pub fn namespaced(&self) -> bool {
        !self.same
    }

    /// Read every thread's NSpid again (at most every 50 ms).
    fn reread(&mut self) {
        if self
            .read_at
            .is_some_and(|t| t.elapsed() < Duration::from_millis(50))
        {
            return;
        }
        self.read_at = Some(Instant::now());
        self.to_host.clear();
        self.to_ns.clear();
        for host in task_ids(self.pid) {
            let Ok(status) =
                std::fs::read_to_string(format!("/proc/{}/task/{host}/status", self.pid))
            else {
                continue;
            };
            if let Some(ns) = parse_nspid(&status) {
                self.to_host.insert(ns, host);
                self.to_ns.insert(host, ns);
            }
        }
    }

    /// The host's id of the thread the target numbers `ns`.
    pub fn host(&mut self, ns: u64) -> Option<u64> {
        if self.same {
            return Some(ns);
        }
        if let Some(&h) = self.to_host.get(&ns) {
            return Some(h);
        }
        self.reread();
        self.to_host.get(&ns).copied()
    }

    /// The target's id of host thread `host` (None if the same, or unknown).
    pub fn ns(&mut self, host: u64) -> Option<u64> {
        if self.same {
            return None;
        }
        if let Some(&n) = self.to_ns.get(&host) {
            return Some(n);
        }
        self.reread();
        self.to_ns.get(&host).copied()
    }

    /// Every thread's id in the target's namespace (for learning glibc's tid offset,
    /// ≤3.10: `struct pthread` holds the namespaced id).
    pub fn ns_ids(&mut self) -> HashSet<u64> {
        if self.same {
            return task_ids(self.pid).into_iter().collect();
        }
        self.reread();
        self.to_host.keys().copied().collect()
    }
}

/// The innermost id of an `NSpid:` line of a status file (the id in the thread's own
/// namespace).
pub fn parse_nspid(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nspid_lines_give_the_innermost_id() {
        assert_eq!(
            parse_nspid("Name:\tx\nNSpid:\t4242\t7\nNSsid: 1\n"),
            Some(7)
        );
        assert_eq!(parse_nspid("NSpid:\t99\n"), Some(99));
        assert_eq!(parse_nspid("Name: x\n"), None);
    }

    #[test]
    fn a_process_in_our_namespace_has_the_same_ids() {
        let me = std::process::id() as i32;
        let mut ns = NsTids::new(me);
        assert!(!ns.namespaced());
        assert_eq!(ns.host(me as u64), Some(me as u64));
        assert_eq!(ns.ns(me as u64), None);
    }
}
