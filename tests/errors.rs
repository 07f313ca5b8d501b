//! Bad input: one clear line on stderr and a non-zero exit, never a panic or a backtrace
//! (RUST_BACKTRACE=1 is set by `common::pyprof`, as on CI machines).

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn no_such_pid() {
    let o = pyprof(&["record", "-p", "999999999", "-o", "/tmp/pyprof-never.svg"]);
    let err = assert_one_line_error(&o, "no such pid");
    assert!(err.contains("no process with pid 999999999"), "{err}");
}

/// A process that is not Python: said at once, its Python descendants followed; when it
/// ends without running any, an error and nothing written.
#[test]
fn not_a_python_process_says_what_was_found() {
    let mut sleep = Command::new("sleep").arg("1").spawn().unwrap();
    let out = format!("/tmp/pyprof-never-{}.svg", std::process::id());
    let o = pyprof(&["record", "-p", &sleep.id().to_string(), "-o", &out]);
    let _ = sleep.wait();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "{err}");
    let lines: Vec<&str> = err.trim_end().lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains("is not a Python process")
            && lines[0].contains("sleep")
            && lines[0].contains("following its Python descendants"),
        "{err}"
    );
    assert!(
        lines[1].contains("ended before running any Python"),
        "{err}"
    );
    assert!(
        !err.contains("panicked") && !std::path::Path::new(&out).exists(),
        "{err}"
    );
}

/// A launched command that never runs Python (waited for: it may start one later).
#[test]
fn launched_command_that_is_not_python() {
    let dir = temp_dir();
    let out = dir.path().join("x.svg");
    let o = pyprof(&["record", "-o", out.to_str().unwrap(), "--", "sleep", "1"]);
    let err = assert_one_line_error(&o, "launched non-python");
    assert!(
        err.contains("sleep 1 ended before running any Python"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn command_that_cannot_be_started() {
    let o = pyprof(&[
        "record",
        "-o",
        "/tmp/pyprof-never.svg",
        "--",
        "/nonexistent/python-nope",
    ]);
    let err = assert_one_line_error(&o, "bad command");
    assert!(
        err.contains("cannot start /nonexistent/python-nope"),
        "{err}"
    );
}

#[test]
fn nothing_to_profile() {
    let o = pyprof(&["record", "-o", "/tmp/pyprof-never.svg"]);
    let err = assert_one_line_error(&o, "no target");
    assert!(err.contains("--pid"), "{err}");
}

/// A process that looks like Python 3.5 (a `_PyRuntime` symbol and a "3.5.10" version
/// string in a binary named python3.5): pyprof must name the version it does not support.
#[test]
fn unsupported_version_is_named() {
    let dir = temp_dir();
    let src = dir.path().join("fake.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\n#include <unistd.h>\nchar _PyRuntime[4096];\n\
         const char *volatile version = \"3.5.10\";\n\
         int main(void) { printf(\"ready %s\\n\", version); fflush(stdout); _PyRuntime[0] = 1; pause(); return 0; }\n",
    )
    .unwrap();
    let exe = dir.path().join("python3.5");
    let st = Command::new("gcc")
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("gcc");
    assert!(st.success());
    let mut child = Command::new(&exe).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let o = pyprof(&[
        "record",
        "-p",
        &child.id().to_string(),
        "-o",
        "/tmp/pyprof-never.svg",
    ]);
    let _ = child.kill();
    let _ = child.wait();
    let err = assert_one_line_error(&o, "unsupported");
    assert!(
        err.contains("Python 3.5.10") && err.contains("does not support"),
        "{err}"
    );
    assert!(
        err.contains("3.12"),
        "the message lists supported versions: {err}"
    );
}

#[test]
fn permission_denied_says_what_grants_access() {
    let py = pythons().into_iter().next().expect("a python");
    let target = Target::spawn(&py, "blocked.py", &[]);
    let out = format!("/tmp/pyprof-perm-{}.svg", std::process::id());
    let o = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(pyprof_bin())
        .args([
            "record",
            "-p",
            &target.pid.to_string(),
            "-d",
            "1",
            "-o",
            &out,
        ])
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("setpriv");
    let err = assert_one_line_error(&o, "permission");
    assert!(err.contains("permission denied"), "{err}");
    // Another user's process (the target runs as root): ptrace_scope cannot help there.
    assert!(
        err.contains("CAP_SYS_PTRACE") && err.contains("root") && err.contains("another user"),
        "{err}"
    );
    assert!(!err.contains("ptrace_scope"), "{err}");
    assert!(!std::path::Path::new(&out).exists());
}

#[test]
fn bad_rates_and_durations() {
    for (args, want) in [
        (vec!["-r", "0"], "more than 0"),
        (vec!["-r", "-5"], "-5"),
        (vec!["-r", "abc"], "not a number"),
        (vec!["-r", "10000000"], "maximum"),
        (vec!["-r", "inf"], "more than 0"),
        (vec!["-d", "0"], "positive"),
        (vec!["-d", "-1"], "-1"),
        (vec!["-d", "soon"], "not a number"),
    ] {
        let mut all = vec!["record", "-p", "1"];
        all.extend(args.iter());
        let o = pyprof(&all);
        let err = assert_usage_error(&o, &format!("{args:?}"));
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// Output problems are found before sampling starts: with a 60 s duration the command
/// returns at once instead of sampling first.
#[test]
fn unwritable_output_fails_before_sampling() {
    let py = pythons().into_iter().next().expect("a python");
    let target = Target::spawn(&py, "blocked.py", &[]);
    let dir = temp_dir();
    let pid = target.pid.to_string();
    for (out, want) in [
        (
            "/nonexistent-dir/x.svg".to_string(),
            "cannot write output /nonexistent-dir/x.svg",
        ),
        (dir.path().display().to_string(), "is a directory"),
    ] {
        let start = Instant::now();
        let o = pyprof(&["record", "-p", &pid, "-d", "60", "-o", &out]);
        let err = assert_one_line_error(&o, &out);
        assert!(err.contains(want), "{err}");
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "sampled before failing"
        );
    }
}
