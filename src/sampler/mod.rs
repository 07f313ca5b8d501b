//! The sampler: attach to a target, take samples on a fixed-rate clock, stop on duration,
//! Ctrl-C/SIGTERM or target exit, and count every failure by reason.
//!
//! Three backends produce the same raw threads (`walker::RawThread`), recorded by the
//! same `StackSampler`:
//! - **bpf** (`bpf.rs`): a CPU-clock perf event walks the interrupted thread's frames in
//!   the kernel, at the instant it is interrupted: consistent, and nothing is stopped;
//! - **ptrace** (`session.rs`): pause what can change a Python stack (the GIL holder, or
//!   the threads on a CPU of a free-threaded build), read, resume;
//! - **read**: plain reads of the running target; approximate on hot code.
//!
//! The clock is scheduled by absolute deadlines (`start + k * period`), so it does not
//! drift; a tick that comes too late is counted as late and skipped, never silently
//! dropped. A paused thread is always resumed (on drop, and the kernel detaches a
//! tracer that dies).

pub mod bpf;
pub mod session;
pub mod stacks;

pub use session::{process_label, Session, Targets, ThreadFilter};
pub use stacks::StackSampler;

use crate::profile::Profile;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often the bpf sampler's ring buffer is drained when nothing else needs a tick
/// (each wake-up costs tens of µs of the profiler's CPU in a virtual machine; the ring
/// buffer holds seconds of samples).
pub const BPF_DRAIN_EVERY: Duration = Duration::from_millis(50);

/// Sampling instants are dithered: a profiler that samples at exactly equal intervals
/// locks onto a program that runs in a cycle (an event loop's round of tasks, a frame
/// loop, anything timed by the clock) and reports only the part of the cycle it keeps
/// landing on. A userspace tick falls at a uniformly random instant of its period (one
/// tick per period, so the count of ticks is exact, and each lands anywhere in any
/// cycle); the kernel's sampler (bpf) draws its gaps in the same spirit
/// (`sampler::bpf::Clock`).
///
/// A small, fast pseudo-random generator for dithering (xorshift64*), seeded from the
/// clock and the process id: no two runs sample at the same instants.
pub struct Dither(u64);

impl Dither {
    pub fn new() -> Dither {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Dither((t ^ ((std::process::id() as u64) << 32)) | 1)
    }

    /// Uniform in [0, 1).
    pub fn next_unit(&mut self) -> f64 {
        (self.next_signed() + 1.0) / 2.0
    }

    /// Uniform in [-1, 1).
    pub fn next_signed(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11; // 53 bits
        x as f64 / (1u64 << 52) as f64 - 1.0
    }
}

impl Default for Dither {
    fn default() -> Dither {
        Dither::new()
    }
}

/// The clock of a sampling loop (record's and top's): tick k falls at a uniformly random
/// instant of period k (see `Dither`), the first at once; undithered, at the start of
/// its period.
pub struct Ticker {
    start: Instant,
    period: Duration,
    slot: u64,
    within: f64,
    dither: Option<Dither>,
}

impl Ticker {
    pub fn new(start: Instant, period: Duration, dithered: bool) -> Ticker {
        Ticker {
            start,
            period,
            slot: 0,
            within: 0.0,
            dither: dithered.then(Dither::new),
        }
    }

    /// When the next tick is due.
    pub fn deadline(&self) -> Instant {
        self.start + self.period.mul_f64(self.slot as f64 + self.within)
    }

    /// How many periods `now` is past the next tick's instant (1 or more: ticks that can
    /// no longer be taken on time).
    pub fn behind(&self, now: Instant) -> f64 {
        now.saturating_duration_since(self.deadline()).as_secs_f64() / self.period.as_secs_f64()
    }

    /// On to the tick `n` periods later (1: the tick was taken; more: some were skipped).
    pub fn advance(&mut self, n: u64) {
        self.slot += n;
        self.within = self.dither.as_mut().map_or(0.0, |d| d.next_unit());
    }

    /// Start again at `now` (a pause is neither late ticks nor part of the rate).
    pub fn restart(&mut self, now: Instant) {
        self.start = now;
        self.slot = 0;
        self.within = 0.0;
    }
}

/// Default deepest stack we follow before marking it truncated.
pub const DEFAULT_MAX_DEPTH: usize = 10_000;

/// The sampler backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SamplerKind {
    Bpf,
    Ptrace,
    Read,
}

impl SamplerKind {
    pub fn name(self) -> &'static str {
        match self {
            SamplerKind::Bpf => "bpf",
            SamplerKind::Ptrace => "ptrace",
            SamplerKind::Read => "read",
        }
    }

    /// Does it stop the target?
    pub fn blocking(self) -> bool {
        self == SamplerKind::Ptrace
    }

    /// "blocking" or "nonblocking", as the profile's `meta.mode` says.
    pub fn mode(self) -> &'static str {
        if self.blocking() {
            "blocking"
        } else {
            "nonblocking"
        }
    }
}

/// What the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SamplerChoice {
    /// bpf where it can run, else ptrace.
    #[default]
    Default,
    /// Never stop the target: bpf, else plain reads.
    NonBlocking,
    /// This one, or fail.
    Exactly(SamplerKind),
}

/// What the read sampler's warning says about its accuracy (measured: see README,
/// "Samplers").
pub const READ_WARNING: &str = "--sampler read never stops the target: stacks are read while it \
     runs, so hot short-lived frames are under-counted (leaf distribution off by a total \
     variation distance of 0.1-0.4 from a frozen profile on pyperformance benchmarks)";

/// The backend chosen, and the line to print about the choice (a fallback, a warning).
pub struct Opened {
    pub kind: SamplerKind,
    pub bpf: Option<bpf::BpfSampler>,
    pub note: Option<String>,
}

/// Choose and start the backend: bpf is loaded here (one line says why when it cannot
/// run, and which sampler is used instead); an explicit `--sampler bpf` that cannot run
/// is an error.
pub fn open(choice: SamplerChoice, rate_hz: f64) -> Result<Opened, String> {
    let try_bpf = || bpf::BpfSampler::open(rate_hz);
    match choice {
        SamplerChoice::Exactly(SamplerKind::Bpf) => match try_bpf() {
            Ok(b) => Ok(Opened {
                kind: SamplerKind::Bpf,
                bpf: Some(b),
                note: None,
            }),
            Err(why) => Err(format!("--sampler bpf: cannot run here: {why}")),
        },
        SamplerChoice::Exactly(kind) => Ok(Opened {
            kind,
            bpf: None,
            note: (kind == SamplerKind::Read).then(|| READ_WARNING.to_string()),
        }),
        SamplerChoice::Default => match try_bpf() {
            Ok(b) => Ok(Opened {
                kind: SamplerKind::Bpf,
                bpf: Some(b),
                note: None,
            }),
            Err(why) => Ok(Opened {
                kind: SamplerKind::Ptrace,
                bpf: None,
                note: Some(format!(
                    "bpf sampler unavailable ({why}): using ptrace (pauses the target briefly)"
                )),
            }),
        },
        SamplerChoice::NonBlocking => match try_bpf() {
            Ok(b) => Ok(Opened {
                kind: SamplerKind::Bpf,
                bpf: Some(b),
                note: None,
            }),
            Err(why) => Ok(Opened {
                kind: SamplerKind::Read,
                bpf: None,
                note: Some(format!("bpf sampler unavailable ({why}); {READ_WARNING}")),
            }),
        },
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub rate_hz: f64,
    pub duration: Option<Duration>,
    pub sampler: SamplerKind,
    pub opcodes: bool,
    pub max_depth: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rate_hz: 100.0,
            duration: None,
            sampler: SamplerKind::Ptrace,
            opcodes: false,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// The targets and the backend that samples them: one tick at a time.
pub struct Sampler {
    pub targets: Targets,
    pub kind: SamplerKind,
    bpf: Option<bpf::BpfSampler>,
    /// bpf: targets registered with the kernel side.
    registered: std::collections::HashSet<i32>,
    max_depth: usize,
    opcodes: bool,
    /// Memory reads, system calls and idle threads of sessions that ended.
    pub reads_of_gone: u64,
    pub syscalls_of_gone: u64,
    /// Walks retried at once, and retries that succeeded, of sessions that ended.
    pub retries_of_gone: (u64, u64, u64, u64),
    pub dropped_idle_of_gone: u64,
    /// The first target, kept when its process ends: its code objects' bytecode is what
    /// the profile's code snapshots are made of.
    primary_pid: Option<i32>,
    primary_gone: Option<Box<Session>>,
}

impl Sampler {
    pub fn new(targets: Targets, opened: Opened, config: &Config) -> Result<Sampler, String> {
        let mut s = Sampler {
            targets,
            kind: opened.kind,
            bpf: opened.bpf,
            registered: Default::default(),
            max_depth: config.max_depth,
            opcodes: config.opcodes,
            reads_of_gone: 0,
            syscalls_of_gone: 0,
            retries_of_gone: (0, 0, 0, 0),
            dropped_idle_of_gone: 0,
            primary_pid: None,
            primary_gone: None,
        };
        s.primary_pid = s.targets.sessions.first().map(|x| x.pid);
        for session in &mut s.targets.sessions {
            session.prime();
        }
        s.register_new()?;
        Ok(s)
    }

    /// bpf: tell the kernel side about sessions it does not know yet.
    fn register_new(&mut self) -> Result<(), String> {
        let Some(bpf) = self.bpf.as_mut() else {
            return Ok(());
        };
        for s in &mut self.targets.sessions {
            if self.registered.contains(&s.pid) {
                continue;
            }
            s.refresh_bpf_threads(bpf, true);
            let cfg = s.bpf_config(self.max_depth, self.opcodes);
            bpf.add_target(s.pid, cfg)?;
            self.registered.insert(s.pid);
        }
        Ok(())
    }

    /// Kernel-side counters (bpf only).
    pub fn bpf_counters(&self) -> Option<bpf::BpfCounters> {
        self.bpf.as_ref().map(|b| b.counters())
    }

    /// One tick: every session sampled once (ptrace, read), or the kernel's samples since
    /// the last tick recorded (bpf). Returns the failures of the first session and, per
    /// other session, whether it has ended.
    pub fn tick(&mut self, profile: &mut Profile) -> Vec<(usize, Vec<crate::walker::WalkError>)> {
        self.targets.scan_children();
        if let Err(e) = self.register_new() {
            profile.add_error(format!("bpf: {e}"));
        }
        let mut out: Vec<(usize, Vec<crate::walker::WalkError>)> = Vec::new();
        match self.bpf.as_mut() {
            None => {
                for (i, s) in self.targets.sessions.iter_mut().enumerate() {
                    out.push((i, s.sample(profile, self.kind)));
                }
            }
            Some(bpf) => {
                let sessions = &mut self.targets.sessions;
                for s in sessions.iter_mut() {
                    s.begin_bpf_tick();
                    s.refresh_bpf_threads(bpf, false);
                }
                let mut errs: Vec<Vec<crate::walker::WalkError>> = vec![Vec::new(); sessions.len()];
                bpf.dither();
                bpf.drain(&mut |sample| {
                    let Some(i) = sessions.iter().position(|s| s.pid == sample.pid) else {
                        return;
                    };
                    if let Err(e) = sessions[i].record_bpf(sample, profile) {
                        errs[i].push(e);
                    }
                });
                for (i, s) in sessions.iter_mut().enumerate() {
                    if s.filter.idle {
                        errs[i].extend(s.sample_idle(profile));
                    }
                }
                out = errs.into_iter().enumerate().collect();
            }
        }
        out
    }

    /// Drop session `i` (its process ended); its samples stay in the profile.
    pub fn remove(&mut self, i: usize) {
        let mut s = self.targets.sessions.remove(i);
        self.reads_of_gone += s.mem.read_calls();
        self.syscalls_of_gone += s.syscalls();
        self.retries_of_gone.0 += s.stats.retries;
        self.retries_of_gone.1 += s.stats.retries_ok;
        self.retries_of_gone.2 += s.stats.moving_kept;
        self.retries_of_gone.3 += s.sampler.unsettled;
        self.dropped_idle_of_gone += s.dropped_idle;
        if let Some(bpf) = self.bpf.as_mut() {
            bpf.remove_target(s.pid);
            s.forget_bpf_threads(bpf);
            self.registered.remove(&s.pid);
        }
        if Some(s.pid) == self.primary_pid {
            self.primary_gone = Some(Box::new(s));
        }
    }

    /// The sessions running, and the first target's if it has ended (its counters
    /// are the recording's too).
    pub fn sessions_seen(&self) -> impl Iterator<Item = &Session> {
        self.targets
            .sessions
            .iter()
            .chain(self.primary_gone.as_deref())
    }

    /// The first target's session, running or ended.
    pub fn primary(&self) -> Option<&Session> {
        self.targets
            .sessions
            .iter()
            .find(|s| Some(s.pid) == self.primary_pid)
            .or(self.primary_gone.as_deref())
    }
}

/// Why recording ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    Duration,
    Interrupted,
    TargetExited,
}

/// Run the fixed-rate clock until a stop condition; samples go into `profile`.
/// `alive` tells whether the (first) target still runs (a child we launched is reaped
/// by it). `on_tick` is called after every tick (progress display).
pub fn record(
    sampler: &mut Sampler,
    config: &Config,
    stop: &AtomicBool,
    alive: &mut dyn FnMut() -> bool,
    profile: &mut Profile,
    on_tick: &mut dyn FnMut(&Profile, Duration),
) -> StopReason {
    // bpf without --idle: the kernel samples at the rate; userspace only drains the ring
    // buffer, which it need not do at the rate (every wake-up costs the profiler CPU).
    let period = Duration::from_secs_f64(1.0 / config.rate_hz);
    let drain_only =
        sampler.kind == SamplerKind::Bpf && sampler.targets.sessions.iter().all(|s| !s.filter.idle);
    let period = if drain_only {
        period.max(BPF_DRAIN_EVERY)
    } else {
        period
    };
    // A tick is a sampling instant of the rate, whoever takes it: when the kernel samples,
    // the instants elapsed (not the drains) are the ticks.
    let kernel_ticks = |profile: &mut Profile, start: Instant| {
        if drain_only {
            profile.meta.ticks = (start.elapsed().as_secs_f64() * config.rate_hz) as u64;
        }
    };
    let start = Instant::now();
    use crate::process::threads::{process_cpu_clock, read_cpu_clock};
    let target_cpu = process_cpu_clock(sampler.targets.root);
    let cpu_at_start = target_cpu.and_then(read_cpu_clock);
    let mut k: u64 = 0;
    // (The kernel keeps its own instants under bpf: drains need no dithering.)
    let mut ticker = Ticker::new(start, period, !drain_only);
    let reason = loop {
        if stop.load(Ordering::SeqCst) {
            break StopReason::Interrupted;
        }
        let deadline = ticker.deadline();
        if let Some(d) = config.duration {
            if deadline.duration_since(start) >= d {
                // Sleep out the rest of the duration, so it is honoured exactly.
                let end = start + d;
                sleep_until(end, stop);
                // The kernel's samples of the last period.
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
            let behind = ticker.behind(now);
            if behind >= 1.0 {
                // Skip the ticks we can no longer take on time, and count them.
                let skip = behind.floor() as u64;
                if !drain_only {
                    // (A late drain loses nothing: the kernel sampled on time.)
                    profile.meta.late += skip;
                }
                ticker.advance(skip);
                continue;
            }
        }
        k += 1;
        ticker.advance(1);
        profile.meta.ticks += 1;
        if record_errors(sampler, profile, alive, k.is_multiple_of(16)) {
            break StopReason::TargetExited;
        }
        on_tick(profile, start.elapsed());
    };
    if sampler.kind == SamplerKind::Bpf && reason != StopReason::TargetExited {
        // The kernel's samples since the last drain (Ctrl-C and the duration's end alike).
        record_errors(sampler, profile, alive, true);
    }
    kernel_ticks(profile, start);
    profile.meta.duration_secs = start.elapsed().as_secs_f64();
    // (Read before the target is reaped: a process that ended has no clock.)
    if let (Some(c0), Some(c1)) = (cpu_at_start, target_cpu.and_then(read_cpu_clock)) {
        profile.meta.target_cpu_secs = Some(c1.saturating_sub(c0) as f64 / 1e9);
    }
    profile.meta.memory_reads = sampler.reads_of_gone
        + sampler
            .targets
            .sessions
            .iter()
            .map(|s| s.mem.read_calls())
            .sum::<u64>();
    profile.meta.syscalls = sampler.syscalls_of_gone
        + sampler.bpf.as_ref().map_or(0, |b| b.syscalls)
        + sampler
            .targets
            .sessions
            .iter()
            .map(|s| s.syscalls())
            .sum::<u64>();
    let (mut tried, mut ok, mut moving, mut unsettled) = sampler.retries_of_gone;
    for s in &sampler.targets.sessions {
        tried += s.stats.retries;
        ok += s.stats.retries_ok;
        moving += s.stats.moving_kept;
        unsettled += s.sampler.unsettled;
    }
    profile.meta.unsettled = unsettled;
    profile.meta.retries = tried;
    profile.meta.retries_ok = ok;
    profile.meta.moving_kept = moving;
    if let Some((runs, ns)) = sampler.bpf.as_ref().and_then(|b| b.kernel_cost()) {
        profile.meta.bpf_runs = runs;
        profile.meta.bpf_run_ns = ns;
    }
    reason
}

/// One tick and its failures: counted, unless they come from a target that is gone.
/// True when the first target has exited.
fn record_errors(
    sampler: &mut Sampler,
    profile: &mut Profile,
    alive: &mut dyn FnMut() -> bool,
    check: bool,
) -> bool {
    let results = sampler.tick(profile);
    let root = sampler.targets.root;
    let primary = sampler.targets.sessions.first().map(|s| s.pid);
    let mut gone = Vec::new();
    let mut root_gone = false;
    for (i, errors) in results {
        if errors.is_empty() && !check {
            continue;
        }
        let pid = sampler.targets.sessions[i].pid;
        let dead = if pid == root {
            !alive()
        } else {
            !crate::process::live::is_alive(pid)
        };
        if dead {
            // Reads failed because the process is gone: not the profiler's failure. Its
            // samples stay.
            gone.push(i);
            root_gone |= pid == root;
            continue;
        }
        for e in errors {
            profile.add_error(e.to_string());
        }
    }
    let primary_gone = gone
        .iter()
        .any(|&i| Some(sampler.targets.sessions[i].pid) == primary);
    for i in gone.into_iter().rev() {
        sampler.remove(i);
    }
    if root_gone || (check && !alive()) {
        return true;
    }
    // Without --subprocesses the profiled Python is the target: when it ends, so does
    // the recording (the root may be a launcher that lingers).
    primary_gone && !sampler.targets.follow_children
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
