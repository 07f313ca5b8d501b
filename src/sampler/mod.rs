//! The sampler: attach to a target, take samples on a fixed-rate clock, stop on duration,
//! Ctrl-C/SIGTERM or target exit, and count every failure by reason.
//!
//! The clock is scheduled by absolute deadlines (`start + k * period`), so it does not
//! drift; a tick that comes too late is counted as late and skipped, never silently
//! dropped. In blocking mode every thread of the target is paused (ptrace) for the
//! duration of one tick and always resumed (the lock is released on drop, and the
//! kernel detaches a tracer that dies).

pub mod session;
pub mod stacks;

pub use session::{process_label, Session, Targets, ThreadFilter};
pub use stacks::StackSampler;

use crate::profile::Profile;
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
