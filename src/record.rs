//! Recording, end to end, as the CLI and the tests run it: attach to a process or launch
//! a command and wait for its interpreter, choose the sampler backend, sample until a
//! stop condition, and return the profile with everything the summary needs. Output
//! formats are not chosen here (`output` writes them).

use crate::profile::{Meta, Profile, ProfileData};
use crate::runtime::DiscoverError;
use crate::sampler::{self, Config, SamplerChoice, Session, StopReason, ThreadFilter};
use anyhow::{bail, Context, Result};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What to profile.
#[derive(Clone, Debug)]
pub enum Target {
    Pid(i32),
    /// Launch this command (program and arguments) and profile it until it exits.
    Command(Vec<String>),
}

/// Everything a recording needs to know.
#[derive(Clone, Debug)]
pub struct Request {
    pub target: Target,
    pub rate_hz: f64,
    pub duration: Option<Duration>,
    pub sampler: SamplerChoice,
    pub opcodes: bool,
    pub max_depth: usize,
    pub filter: ThreadFilter,
    pub subprocesses: bool,
}

impl Request {
    pub fn new(target: Target) -> Request {
        Request {
            target,
            rate_hz: 100.0,
            duration: None,
            sampler: SamplerChoice::Default,
            opcodes: false,
            max_depth: sampler::DEFAULT_MAX_DEPTH,
            filter: ThreadFilter::default(),
            subprocesses: false,
        }
    }
}

/// A finished recording.
pub struct Recording {
    pub data: ProfileData,
    pub reason: StopReason,
    /// Lines to show the user before the summary (sampler fallback, warnings).
    pub notes: Vec<String>,
}

/// Called while recording: after every tick (progress), and once with a line to show
/// when the sampler is chosen.
pub trait Observer {
    fn note(&mut self, _line: &str) {}
    fn tick(&mut self, _profile: &Profile, _elapsed: Duration) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

/// Record `req` until it is done (duration, target exit) or `stop` is set.
pub fn record(req: &Request, stop: &AtomicBool, obs: &mut dyn Observer) -> Result<Recording> {
    let max_depth = req.max_depth.max(1);
    let mut child: Option<Child> = None;
    let (pid, target_label) = match &req.target {
        Target::Pid(pid) => (
            *pid,
            format!("pid {pid} ({})", crate::process::live::cmdline(*pid)),
        ),
        Target::Command(cmd) => {
            let Some(prog) = cmd.first() else {
                bail!("nothing to profile: the command is empty");
            };
            let c = Command::new(prog)
                .args(&cmd[1..])
                .spawn()
                .with_context(|| format!("cannot start {prog}"))?;
            let pid = c.id() as i32;
            child = Some(c);
            // The program's name without its folder: "python3.12 app.py --flag".
            let mut shown = cmd.clone();
            shown[0] = shown[0].rsplit('/').next().unwrap_or(&shown[0]).to_string();
            (pid, shown.join(" "))
        }
    };
    let mut guard = ChildGuard(child);
    let session = match guard.0.as_mut() {
        None => Session::attach(pid, max_depth, req.opcodes).map_err(anyhow::Error::from)?,
        Some(c) => match wait_for_python(c, max_depth, req.opcodes, stop)? {
            Some(s) => s,
            None => {
                // Exited before Python started: an empty profile all the same.
                let meta = base_meta(req, pid, &target_label, None, "none");
                return Ok(Recording {
                    data: Profile::new(meta).to_data(),
                    reason: StopReason::TargetExited,
                    notes: Vec::new(),
                });
            }
        },
    };
    let mut session = session;
    session.filter = req.filter;
    if req.filter.gil_only && !session.sampler.walker.has_gil() {
        bail!(
            "--gil: Python {} has no GIL to follow (free-threaded build)",
            session.runtime.version
        );
    }
    let opened = sampler::open(req.sampler, req.rate_hz).map_err(anyhow::Error::msg)?;
    let mut notes = Vec::new();
    if let Some(n) = &opened.note {
        obs.note(n);
        notes.push(n.clone());
    }
    let kind = opened.kind;
    let meta = base_meta(req, pid, &target_label, Some(&session), kind.name());
    let mut profile = Profile::new(meta);
    if req.opcodes && session.sampler.code.opcode_table().is_none() {
        let v = &session.runtime.version;
        let note = format!(
            "no opcode table for Python {}.{}: instructions are not recorded (regenerate src/code/opcode_tables.rs with scripts/gen_opcodes.py)",
            v.major, v.minor
        );
        obs.note(&format!("warning: {note}"));
        profile.meta.notes.push(note);
        profile.meta.opcodes = false;
    }
    for m in &session.runtime.layout_mismatches {
        profile.meta.notes.push(m.clone());
    }
    let config = Config {
        rate_hz: req.rate_hz,
        duration: req.duration,
        sampler: kind,
        opcodes: req.opcodes,
        max_depth,
    };
    let mut targets = sampler::Targets::new(session);
    targets.follow_children = req.subprocesses;
    let mut sampler =
        sampler::Sampler::new(targets, opened, &config).map_err(anyhow::Error::msg)?;
    let mut liveness = crate::process::live::Liveness::new(pid);
    let mut alive = || match guard.0.as_mut() {
        Some(c) => matches!(c.try_wait(), Ok(None)),
        None => liveness.alive(),
    };
    let reason = sampler::record(
        &mut sampler,
        &config,
        stop,
        &mut alive,
        &mut profile,
        &mut |p, t| obs.tick(p, t),
    );
    if let Some(c) = sampler.bpf_counters() {
        if c.ringbuf_full > 0 {
            for _ in 0..c.ringbuf_full {
                profile.add_error(crate::walker::WalkError::RingBufferFull.to_string());
            }
        }
    }
    let instrumented: u64 = sampler
        .targets
        .sessions
        .iter()
        .map(|s| s.sampler.instrumented)
        .sum();
    let executor: u64 = sampler
        .targets
        .sessions
        .iter()
        .map(|s| s.sampler.executor)
        .sum();
    if instrumented > 0 {
        profile.meta.notes.push(format!(
            "instrumentation was active (sys.settrace, sys.monitoring or a debugger): {instrumented} frames executed INSTRUMENTED_* opcodes"
        ));
    }
    if executor > 0 {
        profile.meta.notes.push(format!(
            "tier-2 executors were active: {executor} frames executed ENTER_EXECUTOR"
        ));
    }
    let mut data = profile.to_data();
    if req.opcodes {
        if let Some(root) = sampler.targets.sessions.first() {
            data.code = root.code_snapshots(&data);
        }
    }
    drop(sampler);
    guard.finish();
    Ok(Recording {
        data,
        reason,
        notes,
    })
}

/// A child we launched: never left running behind us.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn finish(&mut self) {
        let Some(mut c) = self.0.take() else {
            return;
        };
        if let Ok(None) = c.try_wait() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
        }
        let _ = c.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Local time as 2026-11-24T03-10-00 (safe in file names).
pub fn timestamp() -> String {
    // SAFETY: time(NULL) has no pointer to write through.
    let now = unsafe { libc::time(std::ptr::null_mut()) };
    // SAFETY: an all-zero tm is a valid value for localtime_r to overwrite.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call.
    unsafe { libc::localtime_r(&now, &mut tm) };
    format!(
        "{:04}-{:02}-{:02}T{:02}-{:02}-{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

fn base_meta(req: &Request, pid: i32, target: &str, s: Option<&Session>, sampler: &str) -> Meta {
    Meta {
        pyprof_version: env!("CARGO_PKG_VERSION").into(),
        target: target.into(),
        pid,
        command: match &req.target {
            Target::Command(c) => Some(c.clone()),
            Target::Pid(_) => None,
        },
        python_version: s
            .map(|s| s.runtime.version.to_string())
            .unwrap_or_else(|| "unknown".into()),
        python_binary: s.map(|s| s.runtime.binary.clone()).unwrap_or_default(),
        cwd: std::fs::read_link(format!("/proc/{pid}/cwd"))
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        layout_source: s
            .map(|s| s.runtime.layout_source.to_string())
            .unwrap_or_default(),
        rate_hz: req.rate_hz,
        opcodes: req.opcodes,
        mode: if sampler == "ptrace" {
            "blocking"
        } else {
            "nonblocking"
        }
        .into(),
        sampler: sampler.into(),
        started_at: timestamp(),
        ..Default::default()
    }
}

/// Wait until a launched child runs an initialised Python; None if it exits first.
fn wait_for_python(
    child: &mut Child,
    max_depth: usize,
    opcodes: bool,
    stop: &AtomicBool,
) -> Result<Option<Session>> {
    let pid = child.id() as i32;
    let own_exe = std::fs::read_link("/proc/self/exe").ok();
    let start = Instant::now();
    let mut exec_seen: Option<Instant> = None;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return Ok(None);
        }
        if stop.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
        if exe.is_some() && exe != own_exe {
            let since = *exec_seen.get_or_insert_with(Instant::now);
            match Session::attach(pid, max_depth, opcodes) {
                Ok(s) if s.ready() => return Ok(Some(s)),
                Ok(_) => {}
                Err(e @ DiscoverError::NotPython { .. })
                | Err(e @ DiscoverError::Unsupported { .. }) => {
                    // Shared libraries are mapped by the loader right after exec.
                    if since.elapsed() > Duration::from_secs(2) {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(e.into());
                    }
                }
                Err(e @ DiscoverError::PermissionDenied(..)) => return Err(e.into()),
                Err(_) => {}
            }
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the command did not start a Python interpreter within 60 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
