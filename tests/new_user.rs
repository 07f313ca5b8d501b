//! What a new user hits (issue 12), each item against real processes: output onto
//! devices, FIFOs, symlinks and standard output; children and launchers followed from
//! their first milliseconds; one thread per thread; exit status; whole error messages;
//! formats from the extension; py-spy's flags; a demo that leaves the checkout clean.

mod common;

use common::*;
use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::process::{Command, Stdio};
use std::time::Duration;

/// One interpreter (the tests here are about the CLI, not versions): the first 3.8+ one
/// outside a chroot (the demo and launch lines take its command as a path).
fn python() -> Python {
    let all = pythons();
    all.iter()
        .find(|p| p.root.is_none() && p.at_least(3, 8))
        .or(all.first())
        .cloned()
        .expect("an interpreter")
}

/// `record -r 100 [extra] -- python split.py SECS`: (output, stderr, rc).
fn launch_split(extra: &[&str], secs: &str) -> std::process::Output {
    let py = python();
    let script = script_path(&py, "split.py");
    let mut args = vec!["record", "-r", "100"];
    args.extend_from_slice(extra);
    args.push("--");
    args.extend(py.cmd.iter().map(|s| s.as_str()));
    args.extend([script.as_str(), secs]);
    pyprof(&args)
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

// 1. Output onto non-regular files -----------------------------------------------------

#[test]
fn devices_fifos_and_symlinks_are_written_in_place() {
    // /dev/null stays the device.
    let o = launch_split(&["-o", "/dev/null"], "0.3");
    assert!(o.status.success(), "{}", stderr(&o));
    let m = std::fs::metadata("/dev/null").unwrap();
    assert!(
        m.file_type().is_char_device(),
        "/dev/null is no longer a device"
    );

    // A full disk is one line and a non-zero exit.
    let o = launch_split(&["-o", "/dev/full"], "0.3");
    let err = assert_one_line_error(&o, "/dev/full");
    assert!(err.contains("No space left"), "{err}");

    // A FIFO gets the SVG and stays a FIFO.
    let dir = temp_dir();
    let fifo = dir.path().join("out.svg");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let f2 = fifo.clone();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::fs::File::open(&f2)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    });
    let o = launch_split(&["-o", fifo.to_str().unwrap()], "0.3");
    assert!(o.status.success(), "{}", stderr(&o));
    let svg = reader.join().unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("hot70"),
        "FIFO got: {svg:.200}"
    );
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());

    // A symlink stays a link; the file it points to gets the profile.
    let real = dir.path().join("real.json");
    std::fs::write(&real, "old").unwrap();
    let link = dir.path().join("link.json");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let o = launch_split(&["-o", link.to_str().unwrap()], "0.3");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    let p = read_profile(&real);
    assert!(p.meta.samples > 0);

    // `report`, `annotate` and `diff` too.
    let rec = dir.path().join("ops.json");
    let o = launch_split(&["--opcodes", "-o", rec.to_str().unwrap()], "0.3");
    assert!(o.status.success(), "{}", stderr(&o));
    let r = rec.to_str().unwrap();
    for args in [
        vec!["report", r, "-o", "/dev/null"],
        vec!["report", r, "-f", "pprof", "-o", "/dev/null"],
        vec!["annotate", r, "-o", "/dev/null"],
        vec!["annotate", r, "--html", "-o", "/dev/null"],
        vec!["diff", r, r, "-o", "/dev/null", "--table", "/dev/null"],
    ] {
        let o = pyprof(&args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert!(std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device());
    }
    let o = pyprof(&["report", r, "-o", "/dev/full"]);
    assert!(assert_one_line_error(&o, "report /dev/full").contains("No space left"));
}

#[test]
fn dash_is_standard_output_and_the_program_prints_to_standard_error() {
    let o = launch_split(&["-o", "-"], "0.3");
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.starts_with("<?xml") && out.contains("hot70"),
        "{out:.300}"
    );
    // The program's own output does not corrupt the profile: it goes to stderr.
    assert!(!out.contains("ready"), "{out:.300}");
    assert!(stderr(&o).contains("ready"), "{}", stderr(&o));
    for f in ["collapsed", "json"] {
        let o = launch_split(&["-o", "-", "-f", f], "0.3");
        assert!(o.status.success(), "{}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        match f {
            "json" => {
                let v: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
                assert_eq!(v["format"], "pyprof-profile");
            }
            _ => assert!(out.lines().all(|l| l.contains(" (split.py:")), "{out}"),
        }
    }
}

// 2, 3. Children and launchers ---------------------------------------------------------

/// A forked child busy for 2 s gets ≥ 95% of its samples (sampled from its first
/// milliseconds), labelled with its process from the first sample.
#[test]
fn forked_child_is_sampled_from_its_start() {
    for py in pythons() {
        let _cpu = exclusive();
        let dir = temp_dir();
        let out = dir.path().join("f.json");
        let script = script_path(&py, "forked.py");
        let mut args = vec!["record", "-s", "-r", "200", "-f", "json", "-o"];
        args.push(out.to_str().unwrap());
        args.push("--");
        args.extend(py.cmd.iter().map(|s| s.as_str()));
        args.extend([script.as_str(), "2"]);
        let o = pyprof(&args);
        assert!(o.status.success(), "{}: {}", py.label, stderr(&o));
        let p = read_profile(&out);
        let mut child = 0u64;
        let mut labels = std::collections::BTreeSet::new();
        for s in &p.stacks {
            let leaf = &p.frames[*s.frames.last().unwrap() as usize];
            if leaf.function == "child_spin" {
                child += s.count;
                labels.insert(p.threads[s.thread as usize].process.clone());
            }
        }
        // 2 s at 200 Hz: 400 (bpf samples CPU time: the CPU time the child had).
        let stdout = String::from_utf8_lossy(&o.stdout);
        let (cpu, wall) = stdout
            .lines()
            .find_map(|l| {
                let mut w = l.strip_prefix("child cpu ")?.split(" wall ");
                Some((
                    w.next()?.parse::<f64>().ok()?,
                    w.next()?.trim().parse::<f64>().ok()?,
                ))
            })
            .unwrap_or_else(|| panic!("{}: forked.py printed no child times: {stdout}", py.label));
        let need = if p.meta.sampler == "bpf" {
            min_samples("bpf", 200.0, wall, cpu)
        } else {
            0.95 * 200.0 * wall
        };
        assert!(
            child as f64 >= need,
            "{}: child_spin has {child} samples (need {need:.0}; {} sampler)",
            py.label,
            p.meta.sampler
        );
        assert_eq!(labels.len(), 1, "{}: child labels {labels:?}", py.label);
        let label = labels.into_iter().next().unwrap().unwrap_or_default();
        assert!(label.starts_with("process "), "{}: {label}", py.label);
        assert_ne!(
            label,
            format!("process {}", p.meta.pid),
            "{}: parent's label",
            py.label
        );
        eprintln!("forked child {}: ok {child} samples", py.label);
    }
}

/// A Python started by a shell script (launch mode), and a shell that execs Python
/// after a while (attach mode): both profiled; the launcher ends normally.
#[test]
fn python_under_a_launcher_is_profiled() {
    let py = python();
    let script = script_path(&py, "split.py");
    let run = scripts_dir().join("run.sh");
    let dir = temp_dir();
    let out = dir.path().join("r.json");
    let mut args = vec![
        "record",
        "-r",
        "200",
        "-f",
        "json",
        "-o",
        out.to_str().unwrap(),
    ];
    args.push("--");
    args.push(run.to_str().unwrap());
    args.extend(py.cmd.iter().map(|s| s.as_str()));
    args.extend([script.as_str(), "1"]);
    let o = pyprof(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let p = read_profile(&out);
    // split.py prints its CPU time before and after its 1 s loop.
    let stdout = String::from_utf8_lossy(&o.stdout);
    let at = |tag: &str| -> f64 {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(tag)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("split.py printed no {tag:?}: {stdout}"))
    };
    let need = min_samples(&p.meta.sampler, 200.0, 1.0, at("cpu ") - at("cpu0 "));
    let hot: u64 = stacks(&p)
        .iter()
        .filter(|s| s.1.last().is_some_and(|f| f.0.starts_with("hot")))
        .map(|s| s.2)
        .sum();
    assert!(
        hot as f64 >= need,
        "{hot} samples under run.sh (need {need:.0})"
    );
    assert!(
        p.meta.target.contains("run.sh") && p.meta.target.contains("→ pid"),
        "{}",
        p.meta.target
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("run.sh: done"));

    // Attach to a shell that execs Python half a second later.
    let line = format!("sleep 0.5; exec {} {script} 1.5", py.cmd.join(" "));
    let mut sh = Command::new("sh")
        .args(["-c", &line])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let out2 = dir.path().join("r2.json");
    let o = pyprof(&[
        "record",
        "-r",
        "200",
        "-f",
        "json",
        "-o",
        out2.to_str().unwrap(),
        "-p",
        &sh.id().to_string(),
    ]);
    let _ = sh.wait();
    assert!(o.status.success(), "{}", stderr(&o));
    let p = read_profile(&out2);
    // (1.5 s of split.py, at least a second of it on a CPU.)
    assert!(p.meta.samples >= 100, "{} samples", p.meta.samples);

    // A shell that never runs Python: an error, nothing written.
    let mut sh = Command::new("sh")
        .args(["-c", "sleep 0.5"])
        .spawn()
        .unwrap();
    let out3 = dir.path().join("r3.svg");
    let o = pyprof(&[
        "record",
        "-o",
        out3.to_str().unwrap(),
        "-p",
        &sh.id().to_string(),
    ]);
    let _ = sh.wait();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("ended before running any Python"),
        "{}",
        stderr(&o)
    );
    assert!(!out3.exists());
}

// 4. One thread, one entry --------------------------------------------------------------

#[test]
fn every_thread_is_one_thread_named_in_every_format() {
    let py = python();
    let target = Target::spawn(&py, "threads.py", &[]);
    // Longer than a second: names are read again, and must not split a thread in two.
    let (p, _) = record_json(target.pid, 1.5, &["-r", "50"]);
    let mut tids: Vec<u64> = p.threads.iter().filter_map(|t| t.native_id).collect();
    let n = tids.len();
    tids.sort();
    tids.dedup();
    assert_eq!(tids.len(), n, "a thread listed twice: {:?}", p.threads);
    let os_threads = std::fs::read_dir(format!("/proc/{}/task", target.pid))
        .unwrap()
        .count();
    assert_eq!(n, os_threads, "{:?}", p.threads);
    assert!(
        p.threads.iter().all(|t| t.name.is_some()),
        "unnamed: {:?}",
        p.threads
    );
    let dir = temp_dir();
    let json = dir.path().join("t.json");
    std::fs::write(&json, serde_json::to_string(&p).unwrap()).unwrap();
    let o = pyprof(&[
        "report",
        json.to_str().unwrap(),
        "-f",
        "collapsed",
        "--threads",
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    let roots: std::collections::BTreeSet<&str> =
        text.lines().filter_map(|l| l.split(';').next()).collect();
    assert_eq!(roots.len(), n, "{roots:?}");
    assert!(
        roots
            .iter()
            .all(|r| r.starts_with("thread ") && !r.starts_with("thread tid")),
        "{roots:?}"
    );
}

// 5. Exit status -------------------------------------------------------------------------

#[test]
fn launched_command_exit_status_is_reported_and_returned() {
    let py = python();
    let dir = temp_dir();
    let run = |code: &str| {
        let out = dir.path().join("x.svg");
        let _ = std::fs::remove_file(&out);
        let mut args = vec!["record", "-o", out.to_str().unwrap(), "--"];
        args.extend(py.cmd.iter().map(|s| s.as_str()));
        let full =
            format!("import time\nend = time.time() + 0.3\nwhile time.time() < end: pass\n{code}");
        args.extend(["-c", full.as_str()]);
        (pyprof(&args), out)
    };
    let (o, out) = run("import sys; sys.exit(3)");
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("exited with status 3"),
        "{}",
        stderr(&o)
    );
    assert!(out.exists());
    let (o, _) = run("import os, signal; os.kill(os.getpid(), signal.SIGTERM)");
    assert_eq!(o.status.code(), Some(128 + 15), "{}", stderr(&o));
    assert!(stderr(&o).contains("killed by SIGTERM"), "{}", stderr(&o));

    // A missing script: the interpreter fails before any sample; nothing is written.
    let out = dir.path().join("missing.svg");
    let mut args = vec!["record", "-o", out.to_str().unwrap(), "--"];
    args.extend(py.cmd.iter().map(|s| s.as_str()));
    args.push("/nonexistent/script.py");
    let o = pyprof(&args);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("before any sample was taken: nothing written"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
}

#[test]
fn an_all_idle_recording_says_so_and_suggests_idle() {
    let py = python();
    let target = Target::spawn(&py, "blocked.py", &[]);
    let dir = temp_dir();
    let out = dir.path().join("idle.svg");
    let o = pyprof(&[
        "record",
        "-p",
        &target.pid.to_string(),
        "-d",
        "0.5",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("0 samples") && err.contains("--idle"), "{err}");
}

// 6. Errors --------------------------------------------------------------------------------

#[test]
fn whole_clap_messages_and_argument_checks() {
    let o = pyprof(&["dump"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--pid <PID>"), "{}", stderr(&o));
    let o = pyprof(&["record", "-f", "bogus", "-p", "1"]);
    let err = stderr(&o);
    assert!(
        err.contains("possible values") && err.contains("speedscope"),
        "{err}"
    );
    for (args, want) in [
        (vec!["record", "-r", "-5", "-p", "1"], "more than 0 Hz"),
        (
            vec!["record", "-d", "-1", "-p", "1"],
            "positive number of seconds",
        ),
        (
            vec!["record", "--max-depth", "0", "-p", "1"],
            "at least 1 frame",
        ),
        (vec!["annotate", "x.json", "--top", "0"], "at least 1"),
        (vec!["record", "-p", "zz"], "not a process id"),
        (
            vec!["record", "-n", "--opcodes", "-p", "1"],
            "cannot be combined yet",
        ),
        (
            vec!["record", "-n", "--sampler", "read", "-p", "1"],
            "plain reads",
        ),
    ] {
        let o = pyprof(&args);
        assert!(!o.status.success(), "{args:?}");
        let err = stderr(&o);
        assert!(
            err.contains(want) && !err.contains("unexpected argument"),
            "{args:?}: {err}"
        );
    }
    // Hex pids, as py-spy takes them.
    let py = python();
    let target = Target::spawn(&py, "blocked.py", &[]);
    let o = pyprof(&["dump", "-p", &format!("{:#x}", target.pid)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("leaf"));
}

#[test]
fn closed_pipes_are_quiet_and_full_disks_one_line() {
    let sh = |line: &str| {
        Command::new("bash")
            .args(["-c", line])
            .env("RUST_BACKTRACE", "1")
            .env("PYPROF", pyprof_bin())
            .output()
            .unwrap()
    };
    // `set -o pipefail` off: ${PIPESTATUS[0]} is pyprof's status.
    let o = sh(r#""$PYPROF" completions zsh | head -1 >/dev/null; echo "rc=${PIPESTATUS[0]}""#);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "rc=0",
        "{}",
        stderr(&o)
    );
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
    let o = sh(r#""$PYPROF" completions zsh > /dev/full"#);
    let err = assert_one_line_error(&o, "completions > /dev/full");
    assert!(err.contains("No space left"), "{err}");

    let dir = temp_dir();
    let rec = dir.path().join("ops.json");
    let o = launch_split(&["--opcodes", "-o", rec.to_str().unwrap()], "0.3");
    assert!(o.status.success(), "{}", stderr(&o));
    for cmd in ["annotate", "report"] {
        let line = format!(
            r#""$PYPROF" {cmd} {} -f opcodes 2>/tmp/pyprof-pipe-err-$$ | head -1 >/dev/null; echo "rc=${{PIPESTATUS[0]}}"; cat /tmp/pyprof-pipe-err-$$ >&2; rm -f /tmp/pyprof-pipe-err-$$"#,
            rec.display()
        );
        let line = if cmd == "annotate" {
            line.replace(" -f opcodes", "")
        } else {
            line
        };
        let o = sh(&line);
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            "rc=0",
            "{cmd}: {}",
            stderr(&o)
        );
        assert!(o.stderr.is_empty(), "{cmd}: {}", stderr(&o));
    }
}

#[test]
fn stopped_zombie_and_other_users_processes() {
    let py = python();
    // A SIGSTOPped target: dump shows its stack and leaves it stopped.
    let target = Target::spawn(&py, "blocked.py", &[]);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(target.pid, libc::SIGSTOP) };
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{}/stat", target.pid)).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('T'))
        })
    }));
    let o = pyprof(&["dump", "-p", &target.pid.to_string()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("): stopped") && text.contains("leaf"),
        "{text}"
    );
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", target.pid)).unwrap();
    assert!(
        stat.rsplit_once(')')
            .unwrap()
            .1
            .trim_start()
            .starts_with('T'),
        "{stat}"
    );
    // SAFETY: as above.
    unsafe { libc::kill(target.pid, libc::SIGCONT) };

    // A zombie: said for what it is.
    let mut z = Command::new("sh").args(["-c", "exit 0"]).spawn().unwrap();
    let zpid = z.id();
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{zpid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
    }));
    for cmd in ["record", "dump"] {
        let o = pyprof(&[cmd, "-p", &zpid.to_string()]);
        let err = assert_one_line_error(&o, "zombie");
        assert!(err.contains("is a zombie"), "{cmd}: {err}");
    }
    let _ = z.wait();
}

// 7. Formats ---------------------------------------------------------------------------------

#[test]
fn the_format_comes_from_the_extension_and_clashes_are_refused() {
    let dir = temp_dir();
    let at = |name: &str| dir.path().join(name).display().to_string();
    let json = at("run.json");
    let o = launch_split(&["-o", &json], "0.3");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(read_profile(std::path::Path::new(&json)).meta.samples > 0);
    for (name, check) in [
        ("run.txt", "collapsed"),
        ("run.collapsed", "collapsed"),
        ("run.speedscope.json", "speedscope"),
        ("run.trace.json", "chrometrace"),
        ("run.pb.gz", "pprof"),
        ("run.svg", "svg"),
    ] {
        let o = pyprof(&["report", &json, "-o", &at(name)]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let bytes = std::fs::read(at(name)).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let ok = match check {
            "collapsed" => text.lines().all(|l| {
                l.rsplit_once(' ')
                    .is_some_and(|(_, n)| n.parse::<u64>().is_ok())
            }),
            "speedscope" => text.contains("speedscope.app/file-format-schema.json"),
            "chrometrace" => text.contains("\"traceEvents\""),
            "pprof" => bytes.starts_with(&[0x1f, 0x8b]),
            _ => text.contains("<svg"),
        };
        assert!(ok, "{name} is not {check}: {:.200}", text);
    }
    let o = pyprof(&["report", &json, "-f", "flamegraph", "-o", &at("x.json")]);
    assert!(
        assert_one_line_error(&o, "clash").contains("x.json"),
        "{}",
        stderr(&o)
    );
    // Its own input is never the output.
    let o = pyprof(&["report", &json, "-f", "json", "-o", &json]);
    assert!(assert_one_line_error(&o, "self").contains("the profile being read"));

    // A profile of an unknown format version, or with a bad frame index: refused.
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let mut future = v.clone();
    future["format_version"] = 99.into();
    std::fs::write(at("future.json"), future.to_string()).unwrap();
    let o = pyprof(&["report", &at("future.json"), "-o", &at("f.svg")]);
    assert!(assert_one_line_error(&o, "version").contains("format version 99"));
    v["stacks"][0]["frames"][0] = 123456.into();
    std::fs::write(at("bad.json"), v.to_string()).unwrap();
    let o = pyprof(&["report", &at("bad.json"), "-o", &at("b.svg")]);
    assert!(assert_one_line_error(&o, "frame index").contains("not a valid pyprof profile"));
}

#[test]
fn default_output_names_do_not_collide() {
    let py = python();
    let dir = temp_dir();
    let script = script_path(&py, "split.py");
    for _ in 0..2 {
        let mut c = Command::new(pyprof_bin());
        c.current_dir(dir.path()).args(["record", "-r", "50", "--"]);
        c.args(&py.cmd).args([script.as_str(), "0.2"]);
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

// 10. The demo ---------------------------------------------------------------------------------

#[test]
fn demo_leaves_the_checkout_clean() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = || {
        Command::new("git")
            .args(["status", "--porcelain", "--untracked-files=all"])
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let Some(before) = status() else {
        eprintln!("SKIP demo_leaves_the_checkout_clean: not a git checkout");
        return;
    };
    let dir = temp_dir();
    let py = python();
    let o = Command::new("bash")
        .arg(root.join("scripts/demo.sh"))
        .arg(dir.path())
        .env("PYPROF_BIN", pyprof_bin())
        .env("PYTHON", &py.cmd[0])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(status().unwrap(), before, "demo.sh changed the checkout");
    let svg = std::fs::read_to_string(dir.path().join("demo.svg")).unwrap();
    assert!(svg.contains("<svg"));
    let report = std::fs::read_to_string(dir.path().join("demo-opcodes.txt")).unwrap();
    assert!(!report.is_empty());
}
