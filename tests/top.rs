//! `pyprof top` as a person uses it: in a real terminal (tmux), against a running
//! Python 3.12 that spends most of its time in `hot_a` and the rest in `hot_b`. The
//! screen is read with `tmux capture-pane`, keys are typed with `tmux send-keys`.
//!
//! Every tmux server here has its own socket (`-L`), so nothing touches a user's tmux;
//! servers and targets are killed by Drop guards whatever happens.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The machine has two cores: one busy target and one pyprof at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const SCRIPT: &str = r#"import sys


def hot_a():
    s = 0
    for i in range(20000):
        s += i
    return s


def hot_b():
    s = 0
    for i in range(20000):
        s += i
    return s


def main():
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        for _ in range(4):
            hot_a()
        hot_b()


main()
"#;

fn pyprof_bin() -> &'static str {
    env!("CARGO_BIN_EXE_pyprof")
}

fn python312() -> PathBuf {
    let root = std::env::var("PYENV_ROOT").unwrap_or_else(|_| "/root/.pyenv".into());
    let py = Path::new(&root).join("versions/3.12.1/bin/python");
    assert!(
        py.exists(),
        "Python 3.12.1 not found at {} (scripts/install-pythons.sh installs it)",
        py.display()
    );
    py
}

/// tmux must be there: install it from Debian's packages when it is not.
fn ensure_tmux() {
    let have = || {
        Command::new("sh")
            .args(["-c", "command -v tmux"])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if have() {
        return;
    }
    eprintln!("tmux is missing: installing it with apt-get");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "tmux"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !install() {
        let _ = Command::new("apt-get").args(["update", "-q"]).status();
        install();
    }
    assert!(
        have(),
        "these tests need tmux, and `apt-get install -y tmux` did not install it: install tmux and run them again"
    );
}

/// A Python target that printed `ready`; killed on drop.
struct Target {
    child: Child,
    pid: i32,
    _dir: tempfile::TempDir,
}

impl Target {
    fn start() -> Target {
        Target::start_script(SCRIPT, &[])
    }

    /// Python 3.12 running `text` as top_target.py with `args`, once it printed ready.
    fn start_script(text: &str, args: &[&str]) -> Target {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("top_target.py");
        std::fs::write(&script, text).expect("writing the target script");
        let mut child = Command::new(python312())
            .arg(&script)
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting Python 3.12.1");
        let pid = child.id() as i32;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) if l.trim() == "ready" => {
                        let _ = tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        let mut t = Target {
            child,
            pid,
            _dir: dir,
        };
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            t.kill();
            panic!("the target never printed ready");
        }
        t
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A private tmux server with one 120x40 session running `pyprof top`; killed on drop.
/// The pane's shell prints pyprof's exit status when it ends and stays a while (tmux
/// may lose the last output of a pane whose program has exited), so the status and the
/// restored screen can be read.
struct Tmux {
    socket: String,
    conf: tempfile::NamedTempFile,
}

const SESSION: &str = "top";
const EXITED: &str = "pyprof exited with status ";

impl Tmux {
    fn start(pyprof_args: &str) -> Tmux {
        static N: AtomicUsize = AtomicUsize::new(0);
        let socket = format!(
            "pyprof-top-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let conf = tempfile::NamedTempFile::new().expect("tmux config");
        std::fs::write(conf.path(), "set -g remain-on-exit on\nset -g status off\n")
            .expect("writing the tmux config");
        let t = Tmux { socket, conf };
        let cmd = format!(
            "'{}' {pyprof_args}; echo \"{EXITED}$?\"; sleep 120",
            pyprof_bin()
        );
        let conf_path = t.conf.path().display().to_string();
        let out = t
            .command(&[
                "-f",
                &conf_path,
                "new-session",
                "-d",
                "-x",
                "120",
                "-y",
                "40",
                "-s",
                SESSION,
                &cmd,
            ])
            .output()
            .expect("running tmux");
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-L")
            .arg(&self.socket)
            .args(args)
            .env("LANG", "C.UTF-8")
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::null());
        c
    }

    fn output(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("running tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The visible screen.
    fn screen(&self) -> String {
        self.output(&["capture-pane", "-p", "-t", SESSION])
    }

    /// The normal screen with its scrollback, wrapped lines joined.
    fn history(&self) -> String {
        self.output(&["capture-pane", "-p", "-J", "-S", "-", "-t", SESSION])
    }

    fn keys(&self, keys: &str) {
        let ok = self
            .command(&["send-keys", "-t", SESSION, keys])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "tmux send-keys {keys} failed");
    }

    /// pyprof's exit status, once the pane's shell has printed it.
    fn exit_status(&self) -> Option<i32> {
        let h = self.history();
        let rest = h.split(EXITED).nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    }

    /// Wait until the screen satisfies `ok`; panic with the screen when it never does
    /// (at once when pyprof has ended: its error is on the screen then).
    fn wait_screen(&self, what: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            let ended = self.exit_status();
            if ended.is_some() || start.elapsed() > timeout {
                panic!(
                    "{what}: not on screen after {:?} (pyprof exit status {ended:?}):\n{}",
                    start.elapsed(),
                    self.history()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Wait for pyprof to end; its exit status.
    fn wait_exit(&self, timeout: Duration) -> i32 {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exit_status() {
                return status;
            }
            if start.elapsed() > timeout {
                panic!(
                    "pyprof top still runs {timeout:?} later:\n{}",
                    self.screen()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self
            .command(&["kill-server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The process state letter (R, S, T, t, Z...), None when gone.
fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn alive(pid: i32) -> bool {
    !matches!(state(pid), None | Some('Z') | Some('X'))
}

/// Live pyprof processes that profile `target`.
fn pyprofs_of(target: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let pid_arg = target.to_string();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_pyprof = args.first().is_some_and(|a| a.ends_with("/pyprof"));
        if is_pyprof && args.iter().any(|a| a == "top") && args.contains(&pid_arg) && alive(pid) {
            out.push(pid);
        }
    }
    out
}

/// The one pyprof profiling `target`, once it runs.
fn pyprof_pid(target: i32) -> i32 {
    let start = Instant::now();
    loop {
        match pyprofs_of(target).as_slice() {
            [pid] => return *pid,
            [] if start.elapsed() < Duration::from_secs(5) => {
                std::thread::sleep(Duration::from_millis(50))
            }
            other => panic!("expected one pyprof top for pid {target}, found {other:?}"),
        }
    }
}

/// The screen line of the row for `function`.
fn row<'a>(screen: &'a str, function: &str) -> Option<(usize, &'a str)> {
    let needle = format!("{function} (");
    screen
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(&needle))
}

/// The screen line number of `function`'s row.
fn row_index(screen: &str, function: &str) -> usize {
    row(screen, function)
        .map(|r| r.0)
        .unwrap_or_else(|| panic!("no {function} row:\n{screen}"))
}

/// The first percentage of `function`'s row (the %Own column).
fn own_pct(screen: &str, function: &str) -> f64 {
    let (_, line) = row(screen, function).unwrap_or_else(|| panic!("no {function} row:\n{screen}"));
    line.split_whitespace()
        .next()
        .and_then(|t| t.trim_end_matches('%').parse().ok())
        .unwrap_or_else(|| panic!("no %Own in {line:?}"))
}

/// The second percentage of `function`'s row (the %Total column).
fn total_pct(screen: &str, function: &str) -> f64 {
    let (_, line) = row(screen, function).unwrap_or_else(|| panic!("no {function} row:\n{screen}"));
    line.split_whitespace()
        .nth(1)
        .and_then(|t| t.trim_end_matches('%').parse().ok())
        .unwrap_or_else(|| panic!("no %Total in {line:?}"))
}

/// "Sampled: 3s" from the counters line.
fn sampled_secs(screen: &str) -> u64 {
    screen
        .split("Sampled: ")
        .nth(1)
        .and_then(|s| s.split('s').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The first row of the function table (the line after the column header).
fn first_row(screen: &str) -> &str {
    let mut lines = screen
        .lines()
        .skip_while(|l| !l.contains("Function (file:line)"));
    lines.next();
    lines.next().unwrap_or("")
}

/// Quit with `q`; pyprof exits 0, leaves the normal screen (no table), no process of it
/// stays behind, and the target runs on (not left stopped by ptrace).
fn quit_and_check(tmux: &Tmux, target: &Target, pyprof_pid: i32) {
    tmux.keys("q");
    let status = tmux.wait_exit(Duration::from_secs(5));
    let after = tmux.history();
    assert_eq!(status, 0, "pyprof top exited with {status}:\n{after}");
    assert!(
        !after.contains("%Own") && !after.contains("Function (file:line)"),
        "the terminal was not restored (the alternate screen is still shown):\n{after}"
    );
    assert!(!alive(pyprof_pid), "pyprof (pid {pyprof_pid}) still runs");
    let stray = pyprofs_of(target.pid);
    assert!(stray.is_empty(), "stray pyprof processes: {stray:?}");
    std::thread::sleep(Duration::from_millis(200));
    let st = state(target.pid);
    assert!(
        matches!(st, Some('R') | Some('S')),
        "the target should run on after pyprof quits, its state is {st:?}"
    );
}

#[test]
fn top_shows_hot_functions_sorts_and_quits() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    ensure_tmux();
    let target = Target::start();
    let tmux = Tmux::start(&format!("top --pid {} --rate 200", target.pid));
    std::thread::sleep(Duration::from_secs(3));
    let screen = tmux.wait_screen(
        "hot_a and hot_b after 2 s of samples",
        Duration::from_secs(15),
        |s| row(s, "hot_a").is_some() && row(s, "hot_b").is_some() && sampled_secs(s) >= 2,
    );
    let pyprof_pid = pyprof_pid(target.pid);
    assert!(alive(pyprof_pid), "pyprof is not running:\n{screen}");

    // Header: the target's pid and command, the Python version, the counters.
    let header = screen.lines().next().unwrap_or("");
    assert!(
        header.contains(&format!("pid {}", target.pid)) && header.contains("top_target.py"),
        "header without the target: {header}"
    );
    assert!(
        header.contains("Python 3.12"),
        "header without Python 3.12: {header}"
    );
    for field in ["Samples: ", "Errors: ", "Rate: ", "Threads: 1"] {
        assert!(
            screen.contains(field),
            "no {field:?} in the header:\n{screen}"
        );
    }
    assert!(
        screen.contains("%Own▼"),
        "not sorted by %Own at start:\n{screen}"
    );

    // hot_a (4 calls in 5) above hot_b, with plausible shares of the window.
    assert!(
        row_index(&screen, "hot_a") < row_index(&screen, "hot_b"),
        "hot_a should be above hot_b:\n{screen}"
    );
    let (a, b) = (own_pct(&screen, "hot_a"), own_pct(&screen, "hot_b"));
    assert!(
        (55.0..=97.0).contains(&a) && (3.0..=45.0).contains(&b) && a > b,
        "implausible %Own: hot_a {a}, hot_b {b}:\n{screen}"
    );
    assert!(
        first_row(&screen).contains("hot_a ("),
        "hot_a should lead by %Own:\n{screen}"
    );

    // Key 2: sort by %Total; main and <module> (on every stack) now lead.
    tmux.keys("2");
    let sorted = tmux.wait_screen("the %Total sort marker", Duration::from_secs(5), |s| {
        s.contains("%Total▼")
    });
    assert!(!sorted.contains("%Own▼"), "two sort markers:\n{sorted}");
    let top = first_row(&sorted);
    assert!(
        (top.contains("main (") || top.contains("<module> (")) && top.contains("100.00%"),
        "by %Total, main or <module> should lead with 100%:\n{sorted}"
    );
    assert!(
        row_index(&sorted, "hot_a") < row_index(&sorted, "hot_b"),
        "hot_a should stay above hot_b:\n{sorted}"
    );

    // `s` moves on to OwnTime; hot_a leads again.
    tmux.keys("s");
    let sorted = tmux.wait_screen("the OwnTime sort marker", Duration::from_secs(5), |s| {
        s.contains("OwnTime▼")
    });
    assert!(
        first_row(&sorted).contains("hot_a ("),
        "by OwnTime:\n{sorted}"
    );

    quit_and_check(&tmux, &target, pyprof_pid);
}

#[test]
fn top_opcodes_view_shows_specialized_opcodes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    ensure_tmux();
    let target = Target::start();
    let tmux = Tmux::start(&format!("top --pid {} --rate 200 --opcodes", target.pid));
    tmux.wait_screen("hot_a", Duration::from_secs(15), |s| {
        row(s, "hot_a").is_some() && sampled_secs(s) >= 1
    });
    let pyprof_pid = pyprof_pid(target.pid);
    tmux.keys("o");
    // `for i in range(...): s += i` specializes on 3.12.
    let screen = tmux.wait_screen("specialized opcodes", Duration::from_secs(10), |s| {
        s.contains("BINARY_OP_ADD_INT") || s.contains("FOR_ITER_RANGE")
    });
    assert!(screen.contains("Hot opcodes"), "{screen}");
    assert!(screen.contains("Hotspots"), "{screen}");
    // A hotspot: hot_a (top_target.py:LINE) OFFSET OPCODE.
    let spot = screen
        .lines()
        .find(|l| l.contains("hot_a (top_target.py:"))
        .unwrap_or_else(|| panic!("no hot_a hotspot:\n{screen}"));
    let words: Vec<&str> = spot.split_whitespace().collect();
    assert!(
        words.len() >= 2 && words[words.len() - 2].parse::<u32>().is_ok(),
        "no offset in hotspot {spot:?}"
    );
    // And back to the functions.
    tmux.keys("o");
    tmux.wait_screen("the function table", Duration::from_secs(5), |s| {
        s.contains("Function (file:line)") && !s.contains("Hot opcodes")
    });
    quit_and_check(&tmux, &target, pyprof_pid);
}

#[test]
fn top_says_when_the_target_exits_and_ends() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    ensure_tmux();
    let mut target = Target::start();
    let pid = target.pid;
    let tmux = Tmux::start(&format!("top --pid {pid} --rate 200"));
    tmux.wait_screen("hot_a", Duration::from_secs(15), |s| {
        row(s, "hot_a").is_some()
    });
    let pyprof_pid = pyprof_pid(target.pid);
    target.kill();
    tmux.wait_screen("the target's exit", Duration::from_secs(5), |s| {
        s.contains("target process exited")
    });
    // It ends by itself, with status 0, and says so on the restored screen.
    let status = tmux.wait_exit(Duration::from_secs(10));
    let after = tmux.history();
    assert_eq!(status, 0, "exit status {status}:\n{after}");
    assert!(
        after.contains(&format!("pid {pid}")) && after.contains("exited"),
        "no exit message after the view closed:\n{after}"
    );
    assert!(!alive(pyprof_pid), "pyprof (pid {pyprof_pid}) still runs");
    assert!(pyprofs_of(pid).is_empty(), "stray pyprof processes");
}

#[test]
fn top_ends_when_its_terminal_goes_away() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    ensure_tmux();
    let target = Target::start();
    let tmux = Tmux::start(&format!("top --pid {} --rate 200", target.pid));
    tmux.wait_screen("hot_a", Duration::from_secs(15), |s| {
        row(s, "hot_a").is_some()
    });
    let pyprof_pid = pyprof_pid(target.pid);
    // Closing the window: the terminal hangs up under pyprof.
    drop(tmux);
    let start = Instant::now();
    while alive(pyprof_pid) && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !alive(pyprof_pid),
        "pyprof top (pid {pyprof_pid}) still runs after its terminal went away"
    );
    assert!(pyprofs_of(target.pid).is_empty(), "stray pyprof processes");
    std::thread::sleep(Duration::from_millis(200));
    let st = state(target.pid);
    assert!(
        matches!(st, Some('R') | Some('S')),
        "the target should run on, its state is {st:?}"
    );
}

/// A target in its own PID namespace (a container, `unshare --pid --fork --mount-proc`)
/// with a busy thread and a sleeping one: `top` on its host pid shows the busy thread's
/// function and not the sleeping one's (idle filtering looks at the right OS threads,
/// mapped through NSpid): one thread sampled of the three.
#[test]
fn top_on_a_target_in_a_pid_namespace() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    ensure_tmux();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/container.py");
    let mut unshare = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(python312())
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("unshare (util-linux)");
    let out = unshare.stdout.take().expect("piped stdout");
    let mut ready = false;
    let mut lines = BufReader::new(out).lines();
    for line in lines.by_ref() {
        match line {
            Ok(l) if l.trim() == "ready" => {
                ready = true;
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let upid = unshare.id();
    let pid: i32 = std::fs::read_to_string(format!("/proc/{upid}/task/{upid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let finish = |mut u: Child| {
        let _ = u.kill();
        let _ = u.wait();
        if pid > 0 {
            // SAFETY: signalling the namespace's init, our grandchild.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    };
    if !ready || pid == 0 {
        finish(unshare);
        panic!("the contained target did not start (ready {ready}, pid {pid})");
    }
    // (ptrace: the sampler whose idle filtering reads the OS threads; bpf samples only
    // threads on a CPU.)
    let tmux = Tmux::start(&format!("top --pid {pid} --rate 200 --sampler ptrace"));
    let screen = tmux.wait_screen(
        "the busy thread's function after 2 s of samples",
        Duration::from_secs(20),
        |s| row(s, "busy").is_some() && sampled_secs(s) >= 2,
    );
    let header = screen.lines().next().unwrap_or("").to_string();
    let ok_busy = own_pct(&screen, "busy") >= 90.0;
    let sleeper = row(&screen, "sleeper").is_some();
    let threads = screen.contains("Threads: 1 ");
    tmux.keys("q");
    finish(unshare);
    assert!(
        header.contains(&format!("pid {pid}")),
        "header without the host pid: {header}"
    );
    assert!(
        ok_busy,
        "busy should have nearly all own samples:\n{screen}"
    );
    assert!(
        !sleeper,
        "the sleeping thread is sampled as active (idle filtering looked at the wrong thread):\n{screen}"
    );
    assert!(threads, "not exactly the busy thread sampled:\n{screen}");
}

/// `top --async-aware`: each asyncio task of tests/scripts/asyncio_tree.py has a row,
/// the four that burn CPU in turn a quarter of the time each, and the tasks awaiting one
/// (main > gamma > alpha) as much as it.
#[test]
fn top_async_aware_has_a_row_per_task() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    ensure_tmux();
    let tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/asyncio_tree.py");
    let text = std::fs::read_to_string(tree).expect("asyncio_tree.py");
    let target = Target::start_script(&text, &[]);
    let tmux = Tmux::start(&format!(
        "top --pid {} --rate 200 --async-aware",
        target.pid
    ));
    let burning = ["alpha", "beta", "g1", "t1"];
    let screen = tmux.wait_screen("a row per task", Duration::from_secs(20), |s| {
        burning
            .iter()
            .chain(&["main", "gamma"])
            .all(|t| row(s, &format!("<task {t}>")).is_some())
            && sampled_secs(s) >= 3
    });
    let pyprof_pid = pyprof_pid(target.pid);
    assert!(
        screen.contains("<task alpha> (asyncio task)"),
        "task rows are not labelled as tasks:\n{screen}"
    );
    for t in burning {
        let total = total_pct(&screen, &format!("<task {t}>"));
        assert!(
            (12.0..=40.0).contains(&total),
            "<task {t}> has {total}% of the samples, not about a quarter:\n{screen}"
        );
    }
    let alpha = total_pct(&screen, "<task alpha>");
    for t in ["main", "gamma"] {
        let total = total_pct(&screen, &format!("<task {t}>"));
        assert!(
            (total - alpha).abs() < 0.5,
            "<task {t}> awaits alpha: {total}% vs alpha's {alpha}%:\n{screen}"
        );
    }
    quit_and_check(&tmux, &target, pyprof_pid);
}

#[test]
fn top_native_shows_the_library_functions_below_python() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    ensure_tmux();
    let script = r#"import os
import sys
import zlib

DATA = os.urandom(1 << 16) * 8


def squeeze():
    return zlib.compress(DATA, 9)


def main():
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        squeeze()


main()
"#;
    let target = Target::start_script(script, &[]);
    let tmux = Tmux::start(&format!("top --pid {} --rate 200 --native", target.pid));
    // zlib's own functions (in libz, or named by address in it when stripped) take the
    // time; squeeze, the Python function calling them, holds it all in total.
    let screen = tmux.wait_screen("libz rows", Duration::from_secs(20), |s| {
        sampled_secs(s) >= 2 && row(s, "squeeze").is_some()
    });
    let libz_own: f64 = screen
        .lines()
        .filter(|l| l.contains("(libz"))
        .filter_map(|l| {
            l.split_whitespace()
                .next()?
                .trim_end_matches('%')
                .parse::<f64>()
                .ok()
        })
        .sum();
    assert!(libz_own > 50.0, "libz rows own {libz_own}%:\n{screen}");
    assert!(total_pct(&screen, "squeeze") > 90.0, "{screen}");
    let pyprof_pid = pyprof_pid(target.pid);
    quit_and_check(&tmux, &target, pyprof_pid);
}
