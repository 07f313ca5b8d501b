//! The `pyprof` command line: a thin clap front over the library's pipeline.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use pyprof::output::{self, Format, RenderOptions};
use pyprof::profile::Profile;
use pyprof::sampler::{self, Config, Session, StopReason};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
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
    #[arg(short, long, value_name = "HZ", default_value = "100", value_parser = parse_rate, allow_hyphen_values = true)]
    rate: f64,
    /// Never stop the target: the bpf sampler, else plain reads (approximate on hot code)
    #[arg(long, conflicts_with_all = ["blocking", "sampler"])]
    nonblocking: bool,
    /// Pause what can move for each sample (the ptrace sampler)
    #[arg(long, conflicts_with = "sampler")]
    blocking: bool,
    /// The sampler: bpf (in the kernel, consistent, never stops the target), ptrace
    /// (pauses the GIL holder or the threads on a CPU), read (plain reads, approximate).
    /// Default: bpf where it can run, else ptrace
    #[arg(long, value_enum, value_name = "SAMPLER")]
    sampler: Option<SamplerArg>,
    /// Record the bytecode instruction each frame executes (specialized names on 3.11+)
    #[arg(long)]
    opcodes: bool,
    /// Include idle threads (by default threads the OS reports as waiting are dropped)
    #[arg(short, long)]
    idle: bool,
    /// Only sample the thread holding the GIL
    #[arg(short, long)]
    gil: bool,
    /// Native (C, C++, Rust) frames interleaved with the Python frames, unwound with each
    /// library's DWARF call-frame information and symbolized (ptrace sampler)
    #[arg(short, long)]
    native: bool,
    /// Deepest stack to follow; deeper stacks are cut at the root and marked [truncated]
    #[arg(long, value_name = "FRAMES", default_value_t = sampler::DEFAULT_MAX_DEPTH, value_parser = parse_depth)]
    max_depth: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum SamplerArg {
    Bpf,
    Ptrace,
    Read,
}

impl SamplingArgs {
    fn filter(&self) -> sampler::ThreadFilter {
        sampler::ThreadFilter {
            idle: self.idle,
            gil_only: self.gil,
        }
    }

    fn choice(&self) -> Result<sampler::SamplerChoice> {
        use sampler::{SamplerChoice, SamplerKind};
        if self.native {
            if self.opcodes {
                bail!("{NATIVE_WITH_OPCODES}");
            }
            if self.sampler == Some(SamplerArg::Read) {
                bail!("{NATIVE_NOT_READ}");
            }
            if self.nonblocking {
                // Never stop the target, and see native stacks: only the kernel can.
                return Ok(SamplerChoice::Exactly(SamplerKind::Bpf));
            }
        }
        Ok(match (self.sampler, self.blocking, self.nonblocking) {
            (Some(SamplerArg::Bpf), ..) => SamplerChoice::Exactly(SamplerKind::Bpf),
            (Some(SamplerArg::Ptrace), ..) => SamplerChoice::Exactly(SamplerKind::Ptrace),
            (Some(SamplerArg::Read), ..) => SamplerChoice::Exactly(SamplerKind::Read),
            (None, true, _) => SamplerChoice::Exactly(SamplerKind::Ptrace),
            (None, _, true) => SamplerChoice::NonBlocking,
            (None, false, false) => SamplerChoice::Default,
        })
    }
}

/// What `--async-aware` records of each sample of a thread running an event loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum AsyncMode {
    /// The running task only (CPU time by task)
    Running,
    /// Also every task that waits, where it is suspended (wall-clock time by task;
    /// idle threads are sampled too)
    All,
}

#[derive(Args)]
struct TopArgs {
    /// PID of a running Python process (decimal, or hex with 0x)
    #[arg(short, long, value_name = "PID", value_parser = parse_pid, conflicts_with = "command")]
    pid: Option<i32>,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// asyncio (Python 3.7+): a thread running a task counts as that task's stack, so
    /// each task (`<task NAME>`, and the tasks awaiting it) has a row
    #[arg(long)]
    async_aware: bool,
    /// With --async-aware: `running` (default) records the running task, `all` also
    /// each waiting task at every sample
    #[arg(long, value_enum, value_name = "MODE", requires = "async_aware")]
    async_mode: Option<AsyncMode>,
    /// The command to launch and watch (after --)
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
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
    /// Flamegraphs: draw imports in full (default: each import is one `[import name]` frame)
    #[arg(long)]
    imports: bool,
}

impl LabelArgs {
    /// Was any label option given?
    fn any(&self) -> bool {
        self.threads || self.function || self.nolineno || self.full_filenames || self.imports
    }

    fn render_options(&self) -> RenderOptions {
        RenderOptions {
            threads: self.threads,
            function: self.function,
            nolineno: self.nolineno,
            full_filenames: self.full_filenames,
            imports: self.imports,
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
    /// PID of a running Python process (decimal, or hex with 0x)
    #[arg(short, long, value_name = "PID", value_parser = parse_pid)]
    pid: i32,
    /// JSON instead of text
    #[arg(short, long)]
    json: bool,
    /// Do not pause the target while reading
    #[arg(long)]
    nonblocking: bool,
    /// Show each frame's arguments and local variables
    #[arg(short, long)]
    locals: bool,
    /// Show file names as the interpreter has them (default: shortened)
    #[arg(long)]
    full_filenames: bool,
    /// Native (C, C++, Rust) frames interleaved with the Python frames, unwound from each
    /// paused thread's registers and stack
    #[arg(short, long)]
    native: bool,
    /// asyncio (Python 3.7+): a thread running a task is shown as that task's stack,
    /// under `<task NAME>` frames for it and the tasks awaiting it, outermost first
    #[arg(long)]
    async_aware: bool,
}

#[derive(Args)]
struct ReportArgs {
    /// A profile written by `pyprof record -f json`
    #[arg(value_name = "PROFILE.json")]
    profile: PathBuf,
    /// Output format (default: from the output's extension, else flamegraph)
    #[arg(short, long, value_enum)]
    format: Option<Format>,
    /// Output file, `-` for standard output (default: standard output for text formats,
    /// else PROFILE.<ext>)
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
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = parse_count)]
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
    /// PID of a running Python process (decimal, or hex with 0x); a process that is not
    /// Python is followed to its Python descendants
    #[arg(short, long, value_name = "PID", value_parser = parse_pid, conflicts_with = "command")]
    pid: Option<i32>,
    /// Output file, `-` for standard output (default: a name from the program or pid and
    /// the time)
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,
    /// Output format (default: from the output's extension, else flamegraph)
    #[arg(short, long, value_enum)]
    format: Option<Format>,
    /// Stop after this many seconds (default: when the target exits or on Ctrl-C)
    #[arg(short, long, value_name = "SECONDS", value_parser = parse_duration, allow_hyphen_values = true)]
    duration: Option<f64>,
    /// Also profile Python child processes (multiprocessing, worker pools), each under a root frame
    #[arg(short, long)]
    subprocesses: bool,
    /// asyncio (Python 3.7+): a thread running a task is recorded as that task's stack,
    /// under `<task NAME>` frames for it and the tasks awaiting it, outermost first
    #[arg(long)]
    async_aware: bool,
    /// With --async-aware: `running` (default) records the running task, `all` also
    /// each waiting task at every sample, where its coroutines are suspended
    #[arg(long, value_enum, value_name = "MODE", requires = "async_aware")]
    async_mode: Option<AsyncMode>,
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

fn parse_pid(s: &str) -> Result<i32, String> {
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => i64::from_str_radix(hex, 16),
        None => s.parse::<i64>(),
    }
    .map_err(|_| format!("'{s}' is not a process id"))?;
    if v <= 0 || v > i32::MAX as i64 {
        return Err(format!("'{s}' is not a process id (it must be positive)"));
    }
    Ok(v as i32)
}

fn parse_depth(s: &str) -> Result<usize, String> {
    let v: usize = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of frames"))?;
    if v == 0 {
        return Err("the deepest stack must be at least 1 frame".into());
    }
    Ok(v)
}

fn parse_count(s: &str) -> Result<usize, String> {
    let v: usize = s.parse().map_err(|_| format!("'{s}' is not a count"))?;
    if v == 0 {
        return Err("the count must be at least 1".into());
    }
    Ok(v)
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
            // clap's whole message: what is wrong, and for a missing or bad value what
            // it takes (the list of formats, the required --pid), then the usage.
            let text = e.render().to_string();
            let text = text.trim_end();
            let text = text.strip_prefix("error: ").unwrap_or(text);
            eprintln!("pyprof: {text}");
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
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "pyprof", &mut script);
            write_stdout_bytes(&script).map(|()| ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        // The reader of our standard output went away (`pyprof report … | head`).
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("pyprof: error: {msg}");
            ExitCode::from(1)
        }
    }
}

fn default_output(args: &RecordArgs, format: Format) -> PathBuf {
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
    // Unique: two recordings started in the same second do not overwrite each other.
    let stem = format!("{name}-{}", timestamp());
    let mut path = PathBuf::from(format!("{stem}.{}", format.extension()));
    let mut n = 2;
    while path.exists() {
        path = PathBuf::from(format!("{stem}-{n}.{}", format.extension()));
        n += 1;
    }
    path
}

/// The format of an output: `-f` if given (refused when the output's extension names
/// another), else the extension's, else `default`.
fn output_format(
    f: Option<Format>,
    output: Option<&std::path::Path>,
    default: Format,
) -> Result<Format> {
    let by_name = output.and_then(Format::from_path);
    match (f, output) {
        (Some(f), Some(out)) if !f.fits(out) => bail!(
            "-f {} does not match the output {} (which names {}): change one of them",
            format_name(f),
            out.display(),
            by_name.map(format_name).unwrap_or("another format")
        ),
        (Some(f), _) => Ok(f),
        (None, _) => Ok(by_name.unwrap_or(default)),
    }
}

fn format_name(f: Format) -> &'static str {
    use clap::ValueEnum;
    match f.to_possible_value() {
        Some(v) => match v.get_name() {
            "flamegraph" => "flamegraph",
            "collapsed" => "collapsed",
            "json" => "json",
            "opcodes" => "opcodes",
            "speedscope" => "speedscope",
            "chrometrace" => "chrometrace",
            _ => "pprof",
        },
        None => "?",
    }
}

/// Write bytes to standard output: a closed pipe ends quietly, a full disk is an error.
fn write_stdout_bytes(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(anyhow::Error::from(e).context("cannot write to standard output")),
    }
}

fn timestamp() -> String {
    pyprof::record::timestamp()
}

fn record(args: RecordArgs) -> Result<ExitCode> {
    if args.pid.is_none() && args.command.is_empty() {
        bail!("nothing to profile: give --pid PID or a command after --, e.g. pyprof record -- python app.py");
    }
    let format = output_format(args.format, args.output.as_deref(), Format::Flamegraph)?;
    if format == Format::Opcodes && !args.sampling.opcodes {
        bail!("-f opcodes needs --opcodes (record the instruction of each sample)");
    }
    // The opcode report is for a terminal: without -o it goes to standard output.
    let output = match (&args.output, format) {
        (Some(p), _) => Some(p.clone()),
        (None, Format::Opcodes) => None,
        (None, _) => Some(default_output(&args, format)),
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
    let target = match args.pid {
        Some(pid) => pyprof::record::Target::Pid(pid),
        None => pyprof::record::Target::Command(args.command.clone()),
    };
    let mut req = pyprof::record::Request::new(target);
    req.rate_hz = args.sampling.rate;
    req.duration = args.duration.map(Duration::from_secs_f64);
    req.sampler = args.sampling.choice()?;
    req.opcodes = args.sampling.opcodes;
    req.native = args.sampling.native;
    req.max_depth = args.sampling.max_depth.max(1);
    req.filter = args.sampling.filter();
    req.subprocesses = args.subprocesses;
    req.child_stdout_to_stderr = args.output.as_deref().is_some_and(|o| o.as_os_str() == "-");
    req.async_aware = args.async_aware;
    req.async_all = args.async_mode == Some(AsyncMode::All);
    if req.async_all {
        if req.opcodes {
            bail!("--async-mode all cannot be combined with --opcodes (a waiting task executes no instruction)");
        }
        // Waiting is wall-clock time: the loop's thread is sampled while it waits too.
        req.filter.idle = true;
    }
    let mut progress = Progress::new(!args.quiet, args.sampling.rate, args.duration);
    let rec = pyprof::record::record(&req, &stop, &mut progress)?;
    progress.clear();
    finish(rec, &args, format, output.as_deref())
}

/// A one-line progress display on a terminal: elapsed time, samples, errors, rate.
struct Progress {
    on: bool,
    last: Option<(Instant, u64)>,
    rate: f64,
    duration: Option<f64>,
}

impl Progress {
    fn new(wanted: bool, rate: f64, duration: Option<f64>) -> Progress {
        use std::io::IsTerminal;
        Progress {
            on: wanted && std::io::stderr().is_terminal(),
            last: None,
            rate,
            duration,
        }
    }

    fn tick(&mut self, p: &Profile, elapsed: Duration) {
        let now = Instant::now();
        let Some((then, before)) = self.last else {
            self.last = Some((now, p.meta.samples));
            return;
        };
        if !self.on || now.duration_since(then) < Duration::from_millis(500) {
            return;
        }
        // The rate over the last half second, not since the start (noisy at first, and
        // slow to show a change).
        let window = now.duration_since(then).as_secs_f64().max(1e-3);
        self.last = Some((now, p.meta.samples));
        let secs = elapsed.as_secs_f64();
        let end = match self.duration {
            Some(d) => format!("{:.0} s left", (d - secs).max(0.0)),
            None => "Ctrl-C to stop".to_string(),
        };
        eprint!(
            "\r\x1b[Kpyprof: {:.1} s, {} samples ({:.0}/s at {} Hz), {} errors ({end})",
            secs,
            p.meta.samples,
            p.meta.samples.saturating_sub(before) as f64 / window,
            self.rate,
            p.meta.error_count(),
        );
    }

    fn clear(&self) {
        if self.on && self.last.is_some() {
            eprint!("\r\x1b[K");
        }
    }
}

impl pyprof::record::Observer for Progress {
    fn note(&mut self, line: &str) {
        self.clear();
        eprintln!("pyprof: {line}");
    }

    fn tick(&mut self, p: &Profile, elapsed: Duration) {
        Progress::tick(self, p, elapsed);
    }
}

fn finish(
    rec: pyprof::record::Recording,
    args: &RecordArgs,
    format: Format,
    output: Option<&std::path::Path>,
) -> Result<ExitCode> {
    let data = rec.data;
    let opts = args.labels.render_options();
    if let Some(e) = rec.exit.filter(|e| !e.success() && data.meta.samples == 0) {
        // A command that failed before any Python ran (a missing script, say).
        bail!("the command {e} before any sample was taken: nothing written");
    }
    match output {
        Some(path) => output::write(&data, format, &opts, path)?,
        None => output::write_stdout(&data, format, &opts)?,
    }
    let written = match output {
        Some(p) if p.as_os_str() == "-" => "standard output".to_string(),
        Some(p) => p.display().to_string(),
        None => "report to standard output".into(),
    };
    let m = &data.meta;
    let errors = if m.errors.is_empty() {
        "0 failed".to_string()
    } else {
        let why: Vec<String> = m.errors.iter().map(|(k, v)| format!("{v} {k}")).collect();
        format!("{} failed: {}", m.error_count(), why.join(", "))
    };
    let why = match (rec.reason, rec.exit) {
        (StopReason::Duration, _) => "duration reached".to_string(),
        (StopReason::Interrupted, _) => "interrupted".to_string(),
        (StopReason::TargetExited, Some(e)) => format!("target {e}"),
        (StopReason::TargetExited, None) => "target exited".to_string(),
    };
    if m.sampler == "bpf" {
        // The kernel times the samples (per thread, on CPU): userspace's wake-ups are
        // not ticks of the rate, and none can be late.
        eprintln!(
            "pyprof: {} samples over {:.1} s ({why}, bpf sampler: CPU time sampled in the kernel at {} Hz); {errors}; wrote {written}",
            m.samples, m.duration_secs, m.rate_hz,
        );
    } else {
        eprintln!(
            "pyprof: {} samples in {} ticks over {:.1} s ({why}, {} sampler); {errors}; {} late; wrote {written}",
            m.samples, m.ticks, m.duration_secs, m.sampler, m.late,
        );
    }
    if m.samples == 0 && m.sampler == "bpf" && !m.idle {
        eprintln!(
            "pyprof: no thread of the target ran on a CPU while recording: nothing was \
             recorded; --idle samples waiting threads too"
        );
    } else if m.samples == 0 && rec.dropped_idle > 0 {
        eprintln!(
            "pyprof: every thread was idle (waiting) at every sample: nothing was recorded; \
             --idle keeps idle threads"
        );
    }
    // Launched: end as the target did, as `time` does.
    Ok(match rec.exit {
        Some(e) => ExitCode::from(e.code()),
        None => ExitCode::SUCCESS,
    })
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
    if data.format_version != pyprof::profile::FORMAT_VERSION {
        bail!(
            "{} is a pyprof profile of format version {}, which this pyprof ({}) does not read \
             (it reads version {})",
            path.display(),
            data.format_version,
            env!("CARGO_PKG_VERSION"),
            pyprof::profile::FORMAT_VERSION
        );
    }
    if let Err(why) = data.check() {
        bail!("{} is not a valid pyprof profile: {why}", path.display());
    }
    Ok(data)
}

fn report(args: ReportArgs) -> Result<ExitCode> {
    let data = load_profile(&args.profile)?;
    let opts = args.labels.render_options();
    let format = output_format(args.format, args.output.as_deref(), Format::Flamegraph)?;
    if format == Format::Json && args.labels.any() {
        bail!(
            "-f json writes the profile as recorded: --threads, -F, --nolineno, \
             --full-filenames and --imports apply to the other formats"
        );
    }
    let output = match (&args.output, format) {
        (Some(p), _) => Some(p.clone()),
        (None, Format::Opcodes) | (None, Format::Collapsed) => None,
        (None, f) => Some(args.profile.with_extension(f.extension())),
    };
    if let Some(path) = &output {
        let same = |a: &std::path::Path, b: &std::path::Path| {
            std::fs::canonicalize(a)
                .ok()
                .is_some_and(|x| std::fs::canonicalize(b).ok() == Some(x))
        };
        if same(path, &args.profile) {
            bail!(
                "the output {} is the profile being read: give another -o",
                path.display()
            );
        }
    }
    match &output {
        Some(path) => {
            output::check_writable(path)?;
            output::write(&data, format, &opts, path)?;
            if path.as_os_str() != "-" {
                eprintln!("pyprof: wrote {}", path.display());
            }
        }
        None => output::write_stdout(&data, format, &opts)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn annotate(args: AnnotateArgs) -> Result<ExitCode> {
    use pyprof::output::annotate;
    let data = load_profile(&args.profile)?;
    let listings = annotate::listings(&data, args.function.as_deref(), args.top)?;
    let style = match &args.output {
        Some(_) => output::TextStyle::file(),
        None => output::TextStyle::stdout(),
    };
    let render = |w: &mut dyn std::io::Write| {
        if args.html {
            annotate::write_html(&data, &listings, w)
        } else {
            annotate::write_text(&data, &listings, w, style)
        }
    };
    let path = args.output.clone().unwrap_or_else(|| PathBuf::from("-"));
    output::check_writable(&path)?;
    output::write_atomic(&path, render)?;
    if path.as_os_str() != "-" {
        eprintln!("pyprof: wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Why `-n/--native` is refused with the read sampler.
const NATIVE_NOT_READ: &str = "-n/--native needs each thread's registers and a stack copy of \
    the same instant: the bpf sampler (in the kernel's sampling event) or ptrace (while \
    the thread is paused); plain reads (--sampler read) cannot see registers";
/// Why `-n/--native` is refused with `--opcodes`.
const NATIVE_WITH_OPCODES: &str = "-n/--native and --opcodes cannot be combined yet; \
    --opcodes alone already counts the time in native code each instruction called";

fn dump(args: DumpArgs) -> Result<ExitCode> {
    pyprof::record::check_attachable(args.pid)?;
    let mut session = Session::attach(args.pid, sampler::DEFAULT_MAX_DEPTH, false)?;
    let d = pyprof::dump::dump_with(
        &mut session,
        !args.nonblocking,
        args.locals,
        args.async_aware,
        args.native,
    )?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &d)?;
        writeln!(out)?;
    } else {
        pyprof::dump::write_text(&d, args.full_filenames, &mut out)?;
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
        Some(p) => output::write_atomic(p, |w| {
            diff::write_table(&before, &after, w, 50, output::TextStyle::file())
        })?,
        None => diff::write_table(
            &before,
            &after,
            &mut std::io::stdout().lock(),
            50,
            output::TextStyle::stdout(),
        )?,
    }
    eprintln!("pyprof: wrote {}", args.output.display());
    Ok(ExitCode::SUCCESS)
}

fn top(args: TopArgs) -> Result<ExitCode> {
    use std::io::IsTerminal;
    let target = match (args.pid, args.command.is_empty()) {
        (Some(pid), _) => pyprof::record::Target::Pid(pid),
        (None, false) => pyprof::record::Target::Command(args.command.clone()),
        (None, true) => {
            bail!(
                "pyprof top: give a process (--pid PID) or a command to launch (-- python app.py)"
            )
        }
    };
    // Said before a command is launched for nothing.
    if !std::io::stdout().is_terminal() {
        bail!("pyprof top needs a terminal: standard output is not one (use pyprof record to write a profile)");
    }
    let max_depth = args.sampling.max_depth.max(1);
    let mut req = pyprof::record::Request::new(target);
    req.rate_hz = args.sampling.rate;
    req.opcodes = args.sampling.opcodes;
    req.native = args.sampling.native;
    req.max_depth = max_depth;
    req.filter = args.sampling.filter();
    req.sampler = args.sampling.choice()?;
    let async_all = args.async_mode == Some(AsyncMode::All);
    if async_all {
        if req.opcodes {
            bail!("--async-mode all cannot be combined with --opcodes (a waiting task executes no instruction)");
        }
        req.filter.idle = true;
    }
    let stop = AtomicBool::new(false);
    struct Say;
    impl pyprof::record::Observer for Say {
        fn note(&mut self, line: &str) {
            eprintln!("pyprof: {line}");
        }
    }
    let mut started = pyprof::record::start(&req, &stop, &mut Say)?;
    let mut guard = started.guard;
    if !started.found {
        guard.finish();
        match guard.exit() {
            Some(e) => bail!("{} {e} before running any Python", started.label),
            None => bail!("{} ended before running any Python", started.label),
        }
    }
    if args.async_aware {
        pyprof::record::async_aware(&mut started.targets, async_all)?;
    }
    let session = &started.targets.sessions[0];
    if args.sampling.gil && !session.sampler.walker.has_gil() {
        bail!(
            "--gil: Python {} has no GIL to follow (free-threaded build)",
            session.runtime.version
        );
    }
    let opened = sampler::open(req.sampler, args.sampling.rate).map_err(anyhow::Error::msg)?;
    if let Some(note) = &opened.note {
        eprintln!("pyprof: {note}");
    }
    let config = Config {
        rate_hz: args.sampling.rate,
        duration: None,
        sampler: opened.kind,
        opcodes: args.sampling.opcodes,
        max_depth,
    };
    let target_label = match args.pid {
        Some(pid) if session.pid == pid => format!("pid {pid} ({})", short_cmdline(pid)),
        _ => format!("pid {} ({})", session.pid, short_cmdline(session.pid)),
    };
    let opts = pyprof::top::TopOptions {
        rate_hz: args.sampling.rate,
        sampler: opened.kind,
        opcodes: args.sampling.opcodes,
        target_label,
    };
    let sampler =
        sampler::Sampler::new(started.targets, opened, &config).map_err(anyhow::Error::msg)?;
    let result = pyprof::top::run(sampler, opts);
    guard.finish();
    result?;
    Ok(match guard.exit() {
        Some(e) => ExitCode::from(e.code()),
        None => ExitCode::SUCCESS,
    })
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
