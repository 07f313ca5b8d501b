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
    /// `--native`: native frames interleaved with the Python frames (ptrace sampler).
    pub native: bool,
    pub max_depth: usize,
    pub filter: ThreadFilter,
    pub subprocesses: bool,
    /// A launched command's standard output goes to our standard error (the profile is
    /// written to standard output: `-o -`).
    pub child_stdout_to_stderr: bool,
    /// Record a thread running an asyncio task as the task's stack, under `<task NAME>`
    /// frames of the tasks awaiting it (`--async-aware`).
    pub async_aware: bool,
    /// `--async-mode all`: also every waiting task, at every sample (implies idle
    /// threads are sampled)
    pub async_all: bool,
}

impl Request {
    pub fn new(target: Target) -> Request {
        Request {
            target,
            rate_hz: 100.0,
            duration: None,
            sampler: SamplerChoice::Default,
            opcodes: false,
            native: false,
            max_depth: sampler::DEFAULT_MAX_DEPTH,
            filter: ThreadFilter::default(),
            subprocesses: false,
            child_stdout_to_stderr: false,
            async_aware: false,
            async_all: false,
        }
    }
}

/// A finished recording.
pub struct Recording {
    pub data: ProfileData,
    pub reason: StopReason,
    /// Lines to show the user before the summary (sampler fallback, warnings).
    pub notes: Vec<String>,
    /// How a launched command ended, when it ended by itself (not stopped by pyprof).
    pub exit: Option<Exit>,
    /// Thread stacks left out because the thread was idle.
    pub dropped_idle: u64,
}

/// How a launched process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    fn of(status: std::process::ExitStatus) -> Exit {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(c), _) => Exit::Code(c),
            (None, Some(s)) => Exit::Signal(s),
            (None, None) => Exit::Code(0),
        }
    }

    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }

    /// The exit status to end with: the command's, or 128 + the signal, as a shell does.
    pub fn code(self) -> u8 {
        match self {
            Exit::Code(c) => (c & 0xff) as u8,
            Exit::Signal(s) => (128 + s).clamp(0, 255) as u8,
        }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Exit::Code(0) => write!(f, "exited"),
            Exit::Code(c) => write!(f, "exited with status {c}"),
            Exit::Signal(s) => {
                let name = nix::sys::signal::Signal::try_from(s)
                    .map(|sig| sig.as_str().to_string())
                    .unwrap_or_else(|_| format!("signal {s}"));
                write!(f, "was killed by {name}")
            }
        }
    }
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

/// A target found and attached: its sessions, the launched child (if any) and the label
/// to show for it.
pub struct Started {
    pub targets: sampler::Targets,
    pub guard: ChildGuard,
    /// The pid given or launched (the Python may be a descendant of it).
    pub pid: i32,
    pub label: String,
    /// False when it ended (or Ctrl-C) before any Python ran in it.
    pub found: bool,
}

/// Attach to `req.target` or launch it, and wait for its Python (the process itself or a
/// descendant).
pub fn start(req: &Request, stop: &AtomicBool, obs: &mut dyn Observer) -> Result<Started> {
    let max_depth = req.max_depth.max(1);
    let mut child: Option<Child> = None;
    let (pid, target_label) = match &req.target {
        Target::Pid(pid) => (
            {
                check_attachable(*pid)?;
                *pid
            },
            format!("pid {pid} ({})", crate::process::live::cmdline(*pid)),
        ),
        Target::Command(cmd) => {
            let Some(prog) = cmd.first() else {
                bail!("nothing to profile: the command is empty");
            };
            let mut c = Command::new(prog);
            c.args(&cmd[1..]);
            if req.child_stdout_to_stderr {
                use std::os::fd::AsFd;
                let err = std::io::stderr()
                    .as_fd()
                    .try_clone_to_owned()
                    .context("duplicating standard error")?;
                c.stdout(std::process::Stdio::from(err));
            }
            let c = c.spawn().with_context(|| format!("cannot start {prog}"))?;
            let pid = c.id() as i32;
            child = Some(c);
            // The program's name without its folder: "python3.12 app.py --flag".
            let mut shown = cmd.clone();
            shown[0] = shown[0].rsplit('/').next().unwrap_or(&shown[0]).to_string();
            (pid, shown.join(" "))
        }
    };
    let mut guard = ChildGuard { child, exit: None };
    let mut targets = sampler::Targets::empty(pid, max_depth, req.opcodes, req.filter);
    targets.follow_children = req.subprocesses;
    targets.native = req.native;
    let found = find_python(
        &mut guard,
        &mut targets,
        pid,
        max_depth,
        req.opcodes,
        stop,
        obs,
    )?;
    if found {
        for s in &mut targets.sessions {
            s.filter = req.filter;
            if req.native {
                s.enable_native();
            }
        }
        targets.label_processes();
    }
    Ok(Started {
        targets,
        guard,
        pid,
        label: target_label,
        found,
    })
}

/// Record `req` until it is done (duration, target exit) or `stop` is set.
pub fn record(req: &Request, stop: &AtomicBool, obs: &mut dyn Observer) -> Result<Recording> {
    let max_depth = req.max_depth.max(1);
    let Started {
        targets,
        mut guard,
        pid,
        label: target_label,
        found,
    } = start(req, stop, obs)?;
    let mut targets = targets;
    if !found {
        // Exited (or stopped) before any Python ran in it.
        guard.finish();
        if let Some(e) = guard.exit.filter(|e| !e.success()) {
            bail!("{target_label} {e} before running any Python: nothing was profiled");
        }
        if stop.load(Ordering::SeqCst) {
            bail!("interrupted before {target_label} ran any Python: nothing was profiled");
        }
        bail!("{target_label} ended before running any Python: nothing was profiled");
    }
    if req.async_aware && found {
        async_aware(&mut targets, req.async_all)?;
    }
    let session = &targets.sessions[0];
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
    if req.native && kind == sampler::SamplerKind::Read {
        bail!("-n/--native: neither the bpf nor the ptrace sampler can run here, and plain reads cannot see a thread's registers");
    }
    // What was profiled: the Python process (the given one, or its descendant).
    let label = if session.pid == pid {
        target_label.clone()
    } else {
        format!(
            "{target_label} → pid {} ({})",
            session.pid,
            crate::process::live::cmdline(session.pid)
        )
    };
    let meta = base_meta(req, session.pid, &label, Some(session), kind.name());
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
    let mut sampler =
        sampler::Sampler::new(targets, opened, &config).map_err(anyhow::Error::msg)?;
    let mut liveness = crate::process::live::Liveness::new(pid);
    let mut alive = || match guard.child.as_mut() {
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
        .sessions_seen()
        .map(|s| s.sampler.instrumented)
        .sum();
    let executor: u64 = sampler.sessions_seen().map(|s| s.sampler.executor).sum();
    if req.async_aware {
        if let Some(s) = sampler.primary() {
            let tasks = s.sampler.task_samples;
            profile.meta.notes.push(match s.sampler.asyncio.as_ref() {
                Some(a) if a.failed.is_some() => {
                    format!("--async-aware: {}", a.failed.as_deref().unwrap_or_default())
                }
                Some(a) if !a.found_asyncio() => {
                    "--async-aware: asyncio was not found in the target (never imported?)"
                        .to_string()
                }
                _ => format!("--async-aware: {tasks} samples recorded as an asyncio task's stack"),
            });
            if req.async_all {
                let sm = &s.sampler;
                let mean =
                    sm.waiting_read_time.as_secs_f64() * 1e3 / sm.waiting_reads.max(1) as f64;
                profile.meta.notes.push(format!(
                    "--async-mode all: {} samples of waiting tasks (each sample of a thread running an \
                     event loop counts each of its waiting tasks once, where its coroutines are \
                     suspended); the tasks were read {} times, {mean:.2} ms each",
                    sm.waiting_samples, sm.waiting_reads
                ));
            }
        }
    }
    if req.native {
        for s in sampler.sessions_seen() {
            profile.meta.native_stacks += s.sampler.native_merged;
            profile.meta.native_mismatched += s.sampler.native_mismatched;
            if let Some(u) = &s.sampler.native {
                profile.meta.native_incomplete += u.stats.incomplete;
            }
        }
        let m = &profile.meta;
        profile.meta.notes.push(format!(
            "--native: {} samples with native frames; unwinding stopped early in {}, eval-loop frames not matched one for one in {}",
            m.native_stacks, m.native_incomplete, m.native_mismatched
        ));
    }
    let freed: u64 = sampler.sessions_seen().map(|s| s.sampler.freed_code).sum();
    if freed > 0 {
        profile.meta.notes.push(format!(
            "{freed} frames ran code objects freed before pyprof could read them (module and class bodies that run once, at import): shown as {}",
            crate::profile::FREED_CODE
        ));
    }
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
    let dropped_idle = sampler
        .targets
        .sessions
        .iter()
        .map(|s| s.dropped_idle)
        .sum::<u64>()
        + sampler.dropped_idle_of_gone;
    let mut data = profile.to_data();
    if req.opcodes {
        if let Some(root) = sampler.primary() {
            data.code = root.code_snapshots(&data);
        }
    }
    drop(sampler);
    guard.finish();
    Ok(Recording {
        data,
        reason,
        notes,
        exit: guard.exit,
        dropped_idle,
    })
}

/// A child we launched: never left running behind us. Its exit status is kept when it
/// ended by itself.
pub struct ChildGuard {
    child: Option<Child>,
    exit: Option<Exit>,
}

impl ChildGuard {
    /// Whether the launched child still runs (true when nothing was launched).
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// How the child ended, once `finish` saw it end by itself.
    pub fn exit(&self) -> Option<Exit> {
        self.exit
    }

    /// Stop the child if it still runs (SIGTERM, then SIGKILL after 2 s) and keep its
    /// exit status if it had ended by itself.
    pub fn finish(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        match c.try_wait() {
            Ok(Some(status)) => {
                self.exit = Some(Exit::of(status));
                return;
            }
            Ok(None) => {}
            Err(_) => return,
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
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
        idle: req.filter.idle,
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

/// Find the Python to profile: the process itself, or (a launcher, a shell script) its
/// Python descendants: the first one, or all of them with --subprocesses. A launched
/// command gets 60 s to start a Python; a process given by pid is waited on until it
/// ends or Ctrl-C. False if it ended (or Ctrl-C) first.
/// A pid to attach to must name a live process: not a missing one, not a zombie (it has
/// exited; only its parent's wait is missing).
pub fn check_attachable(pid: i32) -> Result<()> {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DiscoverError::NoSuchProcess(pid).into())
        }
        Err(_) => return Ok(()), // the attach says what is wrong
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    if state == Some('Z') {
        bail!(
            "pid {pid} is a zombie: it has exited and only waits for its parent to reap it; there is nothing left to profile"
        );
    }
    Ok(())
}

fn find_python(
    guard: &mut ChildGuard,
    targets: &mut sampler::Targets,
    pid: i32,
    max_depth: usize,
    opcodes: bool,
    stop: &AtomicBool,
    obs: &mut dyn Observer,
) -> Result<bool> {
    let own_exe = std::fs::read_link("/proc/self/exe").ok();
    let start = Instant::now();
    let launched = guard.child.is_some();
    let mut exec_seen: Option<Instant> = None;
    let mut root_is_python = true;
    let mut root_exe: Option<std::path::PathBuf> = None;
    let mut said = false;
    loop {
        let ended = match guard.child.as_mut() {
            Some(c) => !matches!(c.try_wait(), Ok(None)),
            None => !crate::process::live::is_alive(pid),
        };
        if ended || stop.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
        if !root_is_python && exe != root_exe {
            // The root exec'd (`sh -c '…; exec python app.py'`): look at it again.
            root_is_python = true;
            exec_seen = None;
        }
        if root_is_python {
            root_exe = exe.clone();
            // Launched: wait for the exec (the child runs our own binary until then).
            // (Attached: an unreadable exe, another user's process, still gets its
            // attach, which says why it cannot read it.)
            if !launched || (exe.is_some() && exe != own_exe) {
                let since = *exec_seen.get_or_insert_with(Instant::now);
                match Session::attach(pid, max_depth, opcodes) {
                    Ok(s) if s.ready() => {
                        let mut s = s;
                        s.prime();
                        targets.sessions.push(s);
                        return Ok(true);
                    }
                    Ok(_) => {}
                    Err(e @ DiscoverError::NotPython { .. }) => {
                        // A launcher's Python child may be running already.
                        targets.scan_children();
                        if !targets.sessions.is_empty() {
                            return Ok(true);
                        }
                        // Shared libraries are mapped by the loader right after exec; past
                        // that, it is not Python: its descendants may be.
                        if !launched || since.elapsed() > Duration::from_millis(300) {
                            root_is_python = false;
                            if !launched && !said {
                                obs.note(&format!("{e}: following its Python descendants instead"));
                                said = true;
                            }
                        }
                    }
                    // Gone while we looked (it existed at the start): it ended.
                    Err(DiscoverError::NoSuchProcess(..)) => return Ok(false),
                    Err(e @ DiscoverError::Unsupported { .. })
                    | Err(e @ DiscoverError::PermissionDenied(..)) => return Err(e.into()),
                    Err(DiscoverError::NotReady(_)) => {}
                }
            }
        } else {
            targets.scan_children();
            if !targets.sessions.is_empty() {
                return Ok(true);
            }
            if !said && start.elapsed() > Duration::from_secs(2) {
                obs.note(&format!(
                    "process {pid} ({}) runs no Python yet: waiting for a Python descendant",
                    crate::process::live::cmdline(pid)
                ));
                said = true;
            }
        }
        if launched && start.elapsed() > Duration::from_secs(60) {
            bail!("the command did not start a Python interpreter within 60 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `--async-aware` (record and top): the first target's samples of a thread running an
/// asyncio task become the task's stack. An error when its Python has no task to read.
pub fn async_aware(targets: &mut sampler::Targets, all: bool) -> Result<()> {
    let s = &mut targets.sessions[0];
    let reader = crate::runtime::asyncio::AsyncioReader::new(s.pid, &s.runtime.layout)
        .map_err(anyhow::Error::msg)?;
    s.sampler.asyncio = Some(reader);
    s.sampler.async_all = all;
    Ok(())
}
