//! Shared test support: find the interpreters to test, spawn target programs that signal
//! readiness, run the pyprof binary, parse its JSON profiles.
#![allow(dead_code)]

use pyprof::profile::ProfileData;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// An interpreter under test.
#[derive(Clone, Debug)]
pub struct Python {
    /// "3.12.1", "3.11-debian", ...
    pub label: String,
    /// The command that runs it (a path, or e.g. `chroot /opt/sid python3.14`).
    pub cmd: Vec<String>,
    pub major: u8,
    pub minor: u8,
    /// Directory the target sees as `/` (for chroot targets), to place scripts in.
    pub root: Option<PathBuf>,
    /// The interpreter's own full version and build: "3.12.1", "3.13.15t" (free-threaded),
    /// "3.14.10 debug": how the README's version table names it.
    pub key: String,
}

impl Python {
    pub fn at_least(&self, major: u8, minor: u8) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

const PYENV_VERSIONS: &[&str] = &[
    "2.7.18", "3.6.15", "3.7.16", "3.8.18", "3.9.18", "3.10.13", "3.11.7", "3.12.1", "3.13.0",
];

/// (major, minor, key) of an interpreter, from the interpreter itself.
fn probe(cmd: &[String]) -> Option<(u8, u8, String)> {
    let script = "import sys, sysconfig\n\
        v = sys.version_info\n\
        t = 't' if sysconfig.get_config_var('Py_GIL_DISABLED') else ''\n\
        d = ' debug' if hasattr(sys, 'gettotalrefcount') else ''\n\
        print('%d %d %d.%d.%d%s%s' % (v[0], v[1], v[0], v[1], v[2], t, d))";
    let out = Command::new(&cmd[0])
        .args(&cmd[1..])
        .args(["-c", script])
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout);
    let mut it = s.trim().splitn(3, ' ');
    Some((
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.to_string(),
    ))
}

/// Where notices that must be seen go: skipped interpreters and tests, waivers. The
/// test command prints this file at the end of the run (libtest hides what passing
/// tests print).
pub fn notices_file() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-notices.txt")
}

/// Say something the person reading the run must see (a SKIP, a waiver): on stderr at
/// once, and in the notices file.
pub fn notice(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(notices_file())
    {
        let _ = writeln!(f, "{line}");
    }
}

/// Interpreter keys or labels waived by PYPROF_WAIVE_PYTHONS (comma-separated): their
/// absence does not fail the suite, and each waiver is a notice.
pub fn waived(py_key_or_label: &str) -> bool {
    std::env::var("PYPROF_WAIVE_PYTHONS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .any(|w| !w.is_empty() && w == py_key_or_label)
}

/// Every interpreter to test: the pyenv builds, Debian's /usr/bin/python3.11, and
/// PYPROF_PYTHONS (colon-separated paths, or `label=command with args`). A missing one
/// is reported by name on stderr, never silently dropped.
pub fn pythons() -> Vec<Python> {
    static ALL: std::sync::OnceLock<Vec<Python>> = std::sync::OnceLock::new();
    ALL.get_or_init(find_pythons).clone()
}

fn find_pythons() -> Vec<Python> {
    let root = std::env::var("PYENV_ROOT").unwrap_or_else(|_| "/root/.pyenv".into());
    let mut cands: Vec<(String, Vec<String>)> = PYENV_VERSIONS
        .iter()
        .map(|v| {
            (
                v.to_string(),
                vec![format!("{root}/versions/{v}/bin/python")],
            )
        })
        .collect();
    cands.push(("3.11-debian".into(), vec!["/usr/bin/python3.11".into()]));
    if let Ok(extra) = std::env::var("PYPROF_PYTHONS") {
        for item in extra.split(':').filter(|s| !s.is_empty()) {
            let (label, cmd) = match item.split_once('=') {
                Some((l, c)) => (l.to_string(), c),
                None => (item.to_string(), item),
            };
            cands.push((label, cmd.split_whitespace().map(String::from).collect()));
        }
    }
    // The free-threaded builds scripts/install-pythons.sh makes (when it can): looked for
    // even without PYPROF_PYTHONS, so that their absence is reported by name.
    for label in ["3.14t", "3.15t"] {
        if !cands.iter().any(|c| c.0 == label) {
            let path = format!("/opt/pythons/{label}/bin/python{label}");
            cands.push((label.to_string(), vec![path]));
        }
    }
    let mut out = Vec::new();
    for (label, cmd) in cands {
        match probe(&cmd) {
            Some((major, minor, key)) => {
                let root = if cmd[0] == "chroot" {
                    cmd.get(1).map(PathBuf::from)
                } else {
                    None
                };
                out.push(Python {
                    label,
                    cmd,
                    major,
                    minor,
                    root,
                    key,
                })
            }
            None => notice(&format!(
                "SKIP python {label}: not found or not runnable ({})",
                cmd.join(" ")
            )),
        }
    }
    out
}

pub fn pyprof_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pyprof"))
}

pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts")
}

/// A target program that prints a line with `ready` once it is in position.
pub struct Target {
    pub child: Child,
    pub pid: i32,
    /// Lines printed before `ready`.
    pub lines: Vec<String>,
    /// Lines printed after `ready`, as they come.
    pub later: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Target {
    pub fn spawn(py: &Python, script: &str, args: &[&str]) -> Target {
        let path = script_path(py, script);
        let mut child = Command::new(&py.cmd[0])
            .args(&py.cmd[1..])
            .arg(&path)
            .args(args)
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {} {}: {e}", py.label, script));
        let pid = child.id() as i32;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let later = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let later2 = later.clone();
        std::thread::spawn(move || {
            let mut lines = Vec::new();
            let mut ready = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if ready {
                    if let Ok(mut l) = later2.lock() {
                        l.push(line);
                    }
                } else if line.trim() == "ready" {
                    ready = true;
                    let _ = tx.send(Some(std::mem::take(&mut lines)));
                } else {
                    lines.push(line);
                }
            }
            let _ = tx.send(None);
        });
        let lines = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(lines)) => lines,
            other => {
                let _ = child.kill();
                panic!(
                    "{} {script}: target never printed ready ({other:?})",
                    py.label
                )
            }
        };
        // "ready" is printed just before the target settles (e.g. flush, then sleep):
        // give it a moment to get there, so a test never samples the line that printed it.
        std::thread::sleep(Duration::from_millis(150));
        Target {
            child,
            pid: target_pid(pid),
            lines,
            later,
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.kill();
    }
}

/// For `chroot DIR python`, the Python process is the chroot's child after exec (same
/// pid, since chroot execs); otherwise the child itself.
fn target_pid(pid: i32) -> i32 {
    pid
}

/// Where the target sees a test script (copied into the chroot when there is one).
pub fn script_path(py: &Python, script: &str) -> String {
    let src = scripts_dir().join(script);
    match &py.root {
        Some(root) => {
            let dir = root.join("tmp/pyprof-tests");
            std::fs::create_dir_all(&dir).expect("mkdir in chroot");
            std::fs::copy(&src, dir.join(script)).expect("copy script into chroot");
            format!("/tmp/pyprof-tests/{script}")
        }
        None => src.display().to_string(),
    }
}

/// Run `pyprof` with arguments, RUST_BACKTRACE=1 as CI machines have it.
pub fn pyprof(args: &[&str]) -> Output {
    Command::new(pyprof_bin())
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .output()
        .expect("running pyprof")
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

pub fn read_profile(path: &Path) -> ProfileData {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// Record `pid` for `secs` seconds into JSON and parse it.
pub fn record_json(pid: i32, secs: f64, extra: &[&str]) -> (ProfileData, Output) {
    let dir = temp_dir();
    let out = dir.path().join("p.json");
    let d = secs.to_string();
    let pid_s = pid.to_string();
    // All threads, idle ones included, unless the caller asks otherwise.
    let mut args = vec!["record", "-p", &pid_s, "-d", &d, "-f", "json"];
    if !extra.contains(&"--no-idle") {
        args.push("--idle");
    }
    args.push("-o");
    let out_s = out.display().to_string();
    args.push(&out_s);
    args.extend(extra.iter().filter(|a| **a != "--no-idle"));
    let o = pyprof(&args);
    assert!(
        o.status.success(),
        "pyprof failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    (read_profile(&out), o)
}

/// The line of `marker` (a comment like `# MARK:name`) in a test script, 1-based.
pub fn marker_line(script: &str, marker: &str) -> i32 {
    let text = std::fs::read_to_string(scripts_dir().join(script)).expect("script");
    let tag = format!("# MARK:{marker}");
    text.lines()
        .position(|l| l.trim_end().ends_with(&tag))
        .map(|i| i as i32 + 1)
        .unwrap_or_else(|| panic!("no {tag} in {script}"))
}

/// Stacks of a profile as (thread index, [(function, line)] root first, count).
pub fn stacks(p: &ProfileData) -> Vec<(u32, Vec<(String, i32)>, u64)> {
    p.stacks
        .iter()
        .map(|s| {
            let frames = s
                .frames
                .iter()
                .map(|&i| {
                    let f = &p.frames[i as usize];
                    (f.function.clone(), f.line)
                })
                .collect();
            (s.thread, frames, s.count)
        })
        .collect()
}

/// Wait until `f` holds or the timeout passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A command-line mistake: clap's whole message (what is wrong on its first line, the
/// usage hint after), exit status 2, no panic. Returns the first line.
pub fn assert_usage_error(o: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(2), "{what}: {err}");
    assert!(
        err.contains("For more information, try '--help'."),
        "{what}: {err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{what}: {err}"
    );
    err.lines().next().unwrap_or_default().to_string()
}

/// One line of stderr, no panic, no backtrace.
pub fn assert_one_line_error(o: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        !o.status.success(),
        "{what}: expected failure, got success: {err}"
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{what}: expected one line, got: {err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace") && !err.contains("internal error"),
        "{what}: {err}"
    );
    err
}

/// The sampler backends to test: bpf where it can run here, ptrace, read. Each test that
/// iterates them says which ran.
pub fn samplers() -> Vec<&'static str> {
    static ALL: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        let mut v = Vec::new();
        match pyprof::sampler::bpf::BpfSampler::open(10.0) {
            Ok(_) => v.push("bpf"),
            Err(why) => {
                if std::env::var("PYPROF_REQUIRE_BPF").as_deref() == Ok("1") {
                    panic!("PYPROF_REQUIRE_BPF=1 but the bpf sampler cannot run: {why}");
                }
                notice(&format!("SKIP sampler bpf: {why}"));
            }
        }
        v.push("ptrace");
        v.push("read");
        v
    })
    .clone()
}

/// Tests whose figures depend on having the CPU to themselves (rates, shares) take this
/// lock, so that the harness's parallel threads do not run two of them at once.
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run `check` for every interpreter; report all failures at the end, by name.
pub fn for_each_python(name: &str, mut check: impl FnMut(&Python) -> Result<String, String>) {
    let pythons = pythons();
    assert!(!pythons.is_empty(), "no interpreter found at all");
    let mut failures = Vec::new();
    for py in &pythons {
        match check(py) {
            Ok(note) => eprintln!("{name} {}: ok {note}", py.label),
            Err(e) => {
                eprintln!("{name} {}: FAILED {e}", py.label);
                failures.push(format!("{}: {e}", py.label));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{name} failed on:\n{}",
        failures.join("\n")
    );
}

/// Version keys the README lists but does not mark verified (✓), and their short forms
/// ("3.14.10t" → "3.14t"): the only interpreters whose absence a drift check may skip.
pub fn unverified_versions() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .unwrap_or_default();
    let section = text.split("## Supported versions").nth(1).unwrap_or("");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut out = Vec::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 6 || !cells[1].starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        if cells[3].contains('✓') {
            continue;
        }
        for v in cells[1].split(',').map(str::trim) {
            out.push(v.to_string());
            let parts: Vec<&str> = v.split('.').collect();
            if parts.len() == 3 {
                let flags: String = parts[2]
                    .chars()
                    .skip_while(|c| c.is_ascii_digit())
                    .collect();
                out.push(format!("{}.{}{}", parts[0], parts[1], flags));
            }
        }
    }
    out
}

/// A drift check's output (the generator run with --check) may skip only interpreters
/// the README does not mark verified, or that PYPROF_WAIVE_PYTHONS waives. Every other
/// SKIP or WARNING line fails `what`; the allowed ones become notices.
pub fn check_drift_output(what: &str, output: &str) {
    let allowed = unverified_versions();
    let waivers: Vec<String> = std::env::var("PYPROF_WAIVE_PYTHONS")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let mentions = |line: &str, token: &str| {
        line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
            .any(|w| w == token)
    };
    let mut bad = Vec::new();
    for line in output.lines() {
        let t = line.trim_start_matches(['!', ' ']).trim();
        if !(t.starts_with("SKIP") || t.starts_with("WARNING")) {
            continue;
        }
        if let Some(w) = waivers.iter().find(|w| mentions(t, w)) {
            notice(&format!("WAIVED in {what} ({w}): {t}"));
        } else if allowed.iter().any(|a| mentions(t, a)) {
            notice(&format!(
                "SKIP in {what} (not marked verified in README.md): {t}"
            ));
        } else {
            bad.push(t.to_string());
        }
    }
    assert!(
        bad.is_empty(),
        "{what} skipped or warned about interpreters the README marks verified \
         (install them, or waive with PYPROF_WAIVE_PYTHONS):\n{}",
        bad.join("\n")
    );
}

/// CPU time of every thread of `pid` so far, in seconds (schedstat run times).
pub fn cpu_seconds(pid: i32) -> f64 {
    let mut ns = 0u64;
    if let Ok(d) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for e in d.flatten() {
            let p = e.path().join("schedstat");
            if let Ok(t) = std::fs::read_to_string(p) {
                ns += t
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    ns as f64 / 1e9
}

/// `record_json`, also measuring the CPU time the target used meanwhile (seconds).
pub fn record_json_cpu(pid: i32, secs: f64, extra: &[&str]) -> (ProfileData, Output, f64) {
    let before = cpu_seconds(pid);
    let (p, o) = record_json(pid, secs, extra);
    let cpu = cpu_seconds(pid) - before;
    (p, o, cpu)
}

/// The fewest samples of busy threads a sampler working as it should records: 90% of
/// the requested ones. The bpf sampler samples a thread when it is on a CPU (CPU time),
/// so for it the request is the rate times the CPU time the target got (on a machine
/// busy with other things that is less than the wall time); ptrace and read sample every
/// active thread at every tick (wall time). A thread sharing its CPU with others is on
/// it at some of the kernel's instants and not at others, at random: for bpf the count
/// may also fall 4 standard deviations (of a binomial count) short of the expectation,
/// which matters for short recordings (200 expected: 143).
pub fn min_samples(sampler: &str, rate: f64, wall_secs: f64, cpu_secs: f64) -> f64 {
    if sampler == "bpf" {
        let expected = rate * cpu_secs.min(wall_secs);
        (0.9 * expected).min(expected - 4.0 * expected.sqrt())
    } else {
        0.9 * rate * wall_secs
    }
}
