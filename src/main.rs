//! The `pyprof` command line: a thin clap front over the library's pipeline.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use pyprof::output::{self, Format, RenderOptions};
use pyprof::profile::{Meta, Profile};
use pyprof::runtime::DiscoverError;
use pyprof::sampler::{self, Config, Session, StopReason};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "pyprof",
    version,
    about = "A sampling profiler for running CPython processes, down to the bytecode",
    after_help = "Examples:\n  pyprof record --pid 12345 -o profile.svg\n  pyprof record -d 10 -f collapsed --pid 12345\n  pyprof record -o app.svg -- python app.py --flag"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Sample a running process (--pid) or a command (-- python app.py) and write a profile
    #[command(
        after_help = "Examples:\n  pyprof record --pid 12345 -o profile.svg          # Ctrl-C to stop\n  pyprof record -d 10 -f collapsed --pid 12345\n  pyprof record -o app.svg -- python app.py --flag"
    )]
    Record(RecordArgs),
    /// Re-render a saved JSON profile in any format, without the target
    #[command(
        after_help = "Examples:\n  pyprof report run.json -f flamegraph -o run.svg\n  pyprof report run.json -f opcodes"
    )]
    Report(ReportArgs),
    /// The hottest functions of a saved profile (recorded with --opcodes) as annotated bytecode
    #[command(
        after_help = "Examples:\n  pyprof annotate run.json --top 3\n  pyprof annotate run.json --function Particle.step --html -o step.html"
    )]
    Annotate(AnnotateArgs),
    /// Print the current stack of every thread of a running Python process
    #[command(
        after_help = "Examples:\n  pyprof dump --pid 12345\n  pyprof dump --pid 12345 --json"
    )]
    Dump(DumpArgs),
    /// Compare two saved profiles: a differential flamegraph and a table of what changed
    #[command(
        after_help = "Examples:\n  pyprof diff before.json after.json -o diff.svg\n  pyprof diff py310.json py312.json -o diff.svg --table changes.txt"
    )]
    Diff(DiffArgs),
    /// A live view of the hottest functions of a running process, refreshed every second
    #[command(
        after_help = "Keys: 1-4 (or arrows, s) sort, r reset, p pause, o opcodes (with --opcodes), q quit\n\nExamples:\n  pyprof top --pid 12345\n  pyprof top --pid 12345 --rate 200 --opcodes"
    )]
    Top(TopArgs),
    /// Print a shell completion script (bash, zsh, fish, ...)
    #[command(
        after_help = "Examples:\n  pyprof completions bash > /etc/bash_completion.d/pyprof\n  pyprof completions zsh > ~/.zfunc/_pyprof"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// How to sample: shared by `record` and `top`.
#[derive(Args)]
struct SamplingArgs {
    /// Samples per second
    #[arg(short, long, value_name = "HZ", default_value = "100", value_parser = parse_rate)]
    rate: f64,
    /// Never pause the target (samples may be slightly inconsistent)
    #[arg(long)]
    nonblocking: bool,
    /// Record the bytecode instruction each frame executes (specialized names on 3.11+)
    #[arg(long)]
    opcodes: bool,
    /// Include idle threads (by default threads the OS reports as waiting are dropped)
    #[arg(long)]
    idle: bool,
    /// Only sample the thread holding the GIL
    #[arg(long)]
    gil: bool,
    /// Deepest stack to follow; deeper stacks are cut at the root and marked [truncated]
    #[arg(long, value_name = "FRAMES", default_value_t = sampler::DEFAULT_MAX_DEPTH)]
    max_depth: usize,
}

impl SamplingArgs {
    /// Set the session's thread filter; refuse --gil where there is no GIL.
    fn apply(&self, session: &mut Session) -> Result<()> {
        session.filter = sampler::ThreadFilter {
            idle: self.idle,
            gil_only: self.gil,
        };
        if self.gil && !session.sampler.walker.has_gil() {
            bail!(
                "--gil: Python {} has no GIL to follow (free-threaded build)",
                session.runtime.version
            );
        }
        Ok(())
    }
}

#[derive(Args)]
struct TopArgs {
    /// PID of a running Python process
    #[arg(short, long, value_name = "PID")]
    pid: i32,
    #[command(flatten)]
    sampling: SamplingArgs,
}

#[derive(Args)]
struct LabelArgs {
    /// A root frame per thread
    #[arg(short, long)]
    threads: bool,
    /// Aggregate by function: label frames with the function's first line, not the current line
    #[arg(short = 'F', long)]
    function: bool,
    /// Do not show line numbers
    #[arg(long)]
    nolineno: bool,
    /// Show file names as the interpreter has them (default: shortened)
    #[arg(long)]
    full_filenames: bool,
}

impl LabelArgs {
    fn render_options(&self) -> RenderOptions {
        RenderOptions {
            threads: self.threads,
            function: self.function,
            nolineno: self.nolineno,
            full_filenames: self.full_filenames,
        }
    }
}

#[derive(Args)]
struct DiffArgs {
    /// The profile before (pyprof JSON)
    before: PathBuf,
    /// The profile after (pyprof JSON)
    after: PathBuf,
    /// The differential flamegraph (SVG)
    #[arg(short, long, value_name = "PATH", default_value = "diff.svg")]
    output: PathBuf,
    /// Where to write the table of changes (default: standard output)
    #[arg(long, value_name = "PATH")]
    table: Option<PathBuf>,
    #[command(flatten)]
    labels: LabelArgs,
}

#[derive(Args)]
struct DumpArgs {
    /// PID of a running Python process
    #[arg(short, long, value_name = "PID")]
    pid: i32,
    /// JSON instead of text
    #[arg(long)]
    json: bool,
    /// Do not pause the target while reading
    #[arg(long)]
    nonblocking: bool,
    /// Show each frame's local variables (simple values; others by type)
    #[arg(long)]
    locals: bool,
}

#[derive(Args)]
struct ReportArgs {
    /// A profile written by `pyprof record -f json`
    #[arg(value_name = "PROFILE.json")]
    profile: PathBuf,
    /// Output format
    #[arg(short, long, value_enum, default_value = "flamegraph")]
    format: Format,
    /// Output file (default: standard output for text formats, else PROFILE.<ext>)
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,
    #[command(flatten)]
    labels: LabelArgs,
}

#[derive(Args)]
struct AnnotateArgs {
    /// A profile written by `pyprof record --opcodes -f json`
    #[arg(value_name = "PROFILE.json")]
    profile: PathBuf,
    /// Annotate this function (qualified name, or its last part)
    #[arg(long, value_name = "NAME")]
    function: Option<String>,
    /// Annotate the N hottest functions
    #[arg(long, value_name = "N", default_value_t = 3)]
    top: usize,
    /// Write a self-contained HTML page instead of text
    #[arg(long)]
    html: bool,
    /// Output file (default: standard output)
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct RecordArgs {
    /// PID of a running Python process
    #[arg(short, long, value_name = "PID", conflicts_with = "command")]
    pid: Option<i32>,
    /// Output file (default: a name from the program or pid and a timestamp)
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,
    /// Output format
    #[arg(short, long, value_enum, default_value = "flamegraph")]
    format: Format,
    /// Stop after this many seconds (default: when the target exits or on Ctrl-C)
    #[arg(short, long, value_name = "SECONDS", value_parser = parse_duration)]
    duration: Option<f64>,
    /// Also profile Python child processes (multiprocessing, worker pools), each under a root frame
    #[arg(long)]
    subprocesses: bool,
    /// No progress line while recording
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    labels: LabelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// The command to launch and profile (after --)
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let r: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if !r.is_finite() || r <= 0.0 {
        return Err(format!("the rate must be more than 0 Hz, not {s}"));
    }
    if r > 100_000.0 {
        return Err(format!("{s} Hz is more than the maximum of 100000 Hz"));
    }
    Ok(r)
}

fn parse_duration(s: &str) -> Result<f64, String> {
    let d: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !d.is_finite() || d <= 0.0 || d > 1e7 {
        return Err(format!(
            "the duration must be a positive number of seconds, not {s}"
        ));
    }
    Ok(d)
}

fn main() -> ExitCode {
    // A bug of ours must still end in one line, never a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        let loc = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("pyprof: internal error: {msg}{loc} (please report this)");
    }));
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit();
            }
            let text = e.render().to_string();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments");
            eprintln!("pyprof: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Cmd::Record(args) => record(args),
        Cmd::Report(args) => report(args),
        Cmd::Annotate(args) => annotate(args),
        Cmd::Dump(args) => dump(args),
        Cmd::Diff(args) => diff(args),
        Cmd::Top(args) => top(args),
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "pyprof", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("pyprof: error: {msg}");
            ExitCode::from(1)
        }
    }
}

fn default_output(args: &RecordArgs) -> PathBuf {
    let name = if let Some(pid) = args.pid {
        format!("pid{pid}")
    } else {
        // The script, not the interpreter: `python app.py` → app
        let script = args
            .command
            .iter()
            .skip(1)
            .find(|a| a.ends_with(".py"))
            .or(args.command.first())
            .cloned()
            .unwrap_or_else(|| "python".into());
        let base = script.rsplit('/').next().unwrap_or(&script).to_string();
        base.trim_end_matches(".py").to_string()
    };
    PathBuf::from(format!(
        "{name}-{}.{}",
        timestamp(),
        args.format.extension()
    ))
}

/// Local time as 2026-11-24T03-10-00 (safe in file names).
fn timestamp() -> String {
    let now = unsafe { libc::time(std::ptr::null_mut()) };
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

fn record(args: RecordArgs) -> Result<ExitCode> {
    if args.pid.is_none() && args.command.is_empty() {
        bail!("nothing to profile: give --pid PID or a command after --, e.g. pyprof record -- python app.py");
    }
    if args.format == Format::Opcodes && !args.sampling.opcodes {
        bail!("-f opcodes needs --opcodes (record the instruction of each sample)");
    }
    // The opcode report is for a terminal: without -o it goes to standard output.
    let output = match (&args.output, args.format) {
        (Some(p), _) => Some(p.clone()),
        (None, Format::Opcodes) => None,
        (None, _) => Some(default_output(&args)),
    };
    if let Some(output) = &output {
        output::check_writable(output)?;
    }

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .context("installing the Ctrl-C handler")?;
    }
    let config = Config {
        rate_hz: args.sampling.rate,
        duration: args.duration.map(Duration::from_secs_f64),
        blocking: !args.sampling.nonblocking,
        opcodes: args.sampling.opcodes,
        max_depth: args.sampling.max_depth.max(1),
    };

    let mut child: Option<Child> = None;
    let (pid, target) = match args.pid {
        Some(pid) => (
            pid,
            format!("pid {pid} ({})", pyprof::process::live::cmdline(pid)),
        ),
        None => {
            let c = Command::new(&args.command[0])
                .args(&args.command[1..])
                .spawn()
                .with_context(|| format!("cannot start {}", args.command[0]))?;
            let pid = c.id() as i32;
            child = Some(c);
            // The program's name without its folder: "python3.12 app.py --flag".
            let mut shown = args.command.clone();
            shown[0] = shown[0].rsplit('/').next().unwrap_or(&shown[0]).to_string();
            (pid, shown.join(" "))
        }
    };

    let session = match &mut child {
        None => {
            Session::attach(pid, config.max_depth, config.opcodes).map_err(anyhow::Error::from)?
        }
        Some(c) => match wait_for_python(c, config.max_depth, config.opcodes, &stop)? {
            Some(s) => s,
            None => {
                // Exited before Python started: write an empty profile all the same.
                let meta = base_meta(&args, pid, &target, None);
                return finish(
                    Profile::new(meta),
                    None,
                    &args,
                    output.as_deref(),
                    StopReason::TargetExited,
                    child,
                );
            }
        },
    };
    let mut session = session;
    args.sampling.apply(&mut session)?;
    let meta = base_meta(&args, pid, &target, Some(&session));
    let mut profile = Profile::new(meta);
    if args.sampling.opcodes && session.sampler.code.opcode_table().is_none() {
        let v = &session.runtime.version;
        let note = format!(
            "no opcode table for Python {}.{}: instructions are not recorded (regenerate src/code/opcode_tables.rs with scripts/gen_opcodes.py)",
            v.major, v.minor
        );
        eprintln!("pyprof: warning: {note}");
        profile.meta.notes.push(note);
        profile.meta.opcodes = false;
    }
    for m in &session.runtime.layout_mismatches {
        profile.meta.notes.push(m.clone());
    }
    let mut alive = || match &mut child {
        Some(c) => matches!(c.try_wait(), Ok(None)),
        None => pyprof::process::live::is_alive(pid),
    };
    let mut targets = sampler::Targets::new(session);
    targets.follow_children = args.subprocesses;
    let mut progress = Progress::new(!args.quiet, args.sampling.rate);
    let reason = sampler::record(
        &mut targets,
        &config,
        &stop,
        &mut alive,
        &mut profile,
        &mut |p, t| progress.tick(p, t),
    );
    progress.clear();
    let instrumented: u64 = targets
        .sessions
        .iter()
        .map(|s| s.sampler.instrumented)
        .sum();
    let executor: u64 = targets.sessions.iter().map(|s| s.sampler.executor).sum();
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
    let root = targets.sessions.remove(0);
    finish(
        profile,
        Some(&root),
        &args,
        output.as_deref(),
        reason,
        child,
    )
}

/// A one-line progress display on a terminal: elapsed time, samples, errors, rate.
struct Progress {
    on: bool,
    last: Option<Instant>,
    rate: f64,
}

impl Progress {
    fn new(wanted: bool, rate: f64) -> Progress {
        use std::io::IsTerminal;
        Progress {
            on: wanted && std::io::stderr().is_terminal(),
            last: None,
            rate,
        }
    }

    fn tick(&mut self, p: &Profile, elapsed: Duration) {
        if !self.on
            || self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_millis(250))
        {
            return;
        }
        self.last = Some(Instant::now());
        let secs = elapsed.as_secs_f64().max(1e-9);
        eprint!(
            "\r\x1b[Kpyprof: {:.1} s, {} samples, {} errors, {:.0} of {} Hz (Ctrl-C to stop)",
            secs,
            p.meta.samples,
            p.meta.error_count(),
            p.meta.ticks as f64 / secs,
            self.rate
        );
    }

    fn clear(&self) {
        if self.on && self.last.is_some() {
            eprint!("\r\x1b[K");
        }
    }
}

fn base_meta(args: &RecordArgs, pid: i32, target: &str, s: Option<&Session>) -> Meta {
    Meta {
        pyprof_version: env!("CARGO_PKG_VERSION").into(),
        target: target.into(),
        pid,
        command: if args.command.is_empty() {
            None
        } else {
            Some(args.command.clone())
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
        rate_hz: args.sampling.rate,
        opcodes: args.sampling.opcodes,
        mode: if args.sampling.nonblocking {
            "nonblocking"
        } else {
            "blocking"
        }
        .into(),
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

fn finish(
    profile: Profile,
    session: Option<&Session>,
    args: &RecordArgs,
    output: Option<&std::path::Path>,
    reason: StopReason,
    child: Option<Child>,
) -> Result<ExitCode> {
    let mut data = profile.to_data();
    if let (Some(s), true) = (session, args.sampling.opcodes) {
        data.code = s.code_snapshots(&data);
    }
    let opts = args.labels.render_options();
    match output {
        Some(path) => output::write(&data, args.format, &opts, path)?,
        None => output::write_stdout(&data, args.format, &opts)?,
    }
    let written = output
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "report to standard output".into());
    let m = &data.meta;
    let errors = if m.errors.is_empty() {
        "0 failed".to_string()
    } else {
        let why: Vec<String> = m.errors.iter().map(|(k, v)| format!("{v} {k}")).collect();
        format!("{} failed: {}", m.error_count(), why.join(", "))
    };
    let why = match reason {
        StopReason::Duration => "duration reached",
        StopReason::Interrupted => "interrupted",
        StopReason::TargetExited => "target exited",
    };
    eprintln!(
        "pyprof: {} samples in {} ticks over {:.1} s ({why}); {errors}; {} late; wrote {written}",
        m.samples, m.ticks, m.duration_secs, m.late,
    );
    if let Some(mut c) = child {
        // We launched it: do not leave it running behind us.
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
    Ok(ExitCode::SUCCESS)
}

fn load_profile(path: &std::path::Path) -> Result<pyprof::profile::ProfileData> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let data: pyprof::profile::ProfileData = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a pyprof JSON profile", path.display()))?;
    if data.format != pyprof::profile::FORMAT_NAME {
        bail!(
            "{} is not a pyprof JSON profile (format {:?})",
            path.display(),
            data.format
        );
    }
    Ok(data)
}

fn report(args: ReportArgs) -> Result<ExitCode> {
    let data = load_profile(&args.profile)?;
    let opts = args.labels.render_options();
    let output = match (&args.output, args.format) {
        (Some(p), _) => Some(p.clone()),
        (None, Format::Opcodes) | (None, Format::Collapsed) => None,
        (None, f) => Some(args.profile.with_extension(f.extension())),
    };
    match &output {
        Some(path) => {
            output::check_writable(path)?;
            output::write(&data, args.format, &opts, path)?;
            eprintln!("pyprof: wrote {}", path.display());
        }
        None => output::write_stdout(&data, args.format, &opts)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn annotate(args: AnnotateArgs) -> Result<ExitCode> {
    use pyprof::output::annotate;
    let data = load_profile(&args.profile)?;
    let listings = annotate::listings(&data, args.function.as_deref(), args.top)?;
    let render = |w: &mut dyn std::io::Write| {
        if args.html {
            annotate::write_html(&data, &listings, w)
        } else {
            annotate::write_text(&data, &listings, w)
        }
    };
    match &args.output {
        Some(path) => {
            output::check_writable(path)?;
            output::write_atomic(path, render)?;
            eprintln!("pyprof: wrote {}", path.display());
        }
        None => render(&mut std::io::stdout().lock())?,
    }
    Ok(ExitCode::SUCCESS)
}

fn dump(args: DumpArgs) -> Result<ExitCode> {
    let mut session = Session::attach(args.pid, sampler::DEFAULT_MAX_DEPTH, false)?;
    let d = pyprof::dump::dump(&mut session, !args.nonblocking, args.locals)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &d)?;
        writeln!(out)?;
    } else {
        pyprof::dump::write_text(&d, &mut out)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn diff(args: DiffArgs) -> Result<ExitCode> {
    use pyprof::output::diff;
    let before = load_profile(&args.before)?;
    let after = load_profile(&args.after)?;
    output::check_writable(&args.output)?;
    let opts = args.labels.render_options();
    output::write_atomic(&args.output, |w| diff::write_svg(&before, &after, &opts, w))?;
    match &args.table {
        Some(p) => output::write_atomic(p, |w| diff::write_table(&before, &after, w, 20))?,
        None => diff::write_table(&before, &after, &mut std::io::stdout().lock(), 20)?,
    }
    eprintln!("pyprof: wrote {}", args.output.display());
    Ok(ExitCode::SUCCESS)
}

fn top(args: TopArgs) -> Result<ExitCode> {
    let mut session = Session::attach(
        args.pid,
        args.sampling.max_depth.max(1),
        args.sampling.opcodes,
    )
    .map_err(anyhow::Error::from)?;
    args.sampling.apply(&mut session)?;
    let opts = pyprof::top::TopOptions {
        rate_hz: args.sampling.rate,
        blocking: !args.sampling.nonblocking,
        opcodes: args.sampling.opcodes,
        target_label: format!("pid {} ({})", args.pid, short_cmdline(args.pid)),
    };
    pyprof::top::run(session, opts)?;
    Ok(ExitCode::SUCCESS)
}

/// The command line with the program's folder left out: "python3.12 app.py --flag".
fn short_cmdline(pid: i32) -> String {
    let cmd = pyprof::process::live::cmdline(pid);
    let (prog, rest) = cmd.split_once(' ').unwrap_or((cmd.as_str(), ""));
    let prog = prog.rsplit('/').next().unwrap_or(prog);
    if rest.is_empty() {
        prog.to_string()
    } else {
        format!("{prog} {rest}")
    }
}
