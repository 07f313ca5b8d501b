//! Choosing the sampler: the default is bpf where it can run, else ptrace; --nonblocking
//! never stops the target (bpf, else plain reads, with a warning that says so); an
//! explicit --sampler that cannot run is an error. Where bpf cannot run (here: run
//! without CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN, as a container would be), one line
//! says why and which sampler is used instead. Deep stacks and the kernel-side thread
//! discovery are checked here too.

mod common;

use common::*;
use std::process::{Command, Stdio};

fn py312() -> Python {
    pythons()
        .into_iter()
        .find(|p| p.major == 3 && p.minor == 12)
        .expect("Python 3.12")
}

/// Run pyprof without the capabilities bpf needs (dropped from the bounding set, so
/// that root's exec does not regain them); CAP_SYS_PTRACE stays.
fn pyprof_without_bpf_caps(args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args(["--bounding-set", "-bpf,-perfmon,-sys_admin", "--"])
        .arg(pyprof_bin())
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .output()
        .expect("setpriv (util-linux)")
}

#[test]
fn without_bpf_privileges_the_default_falls_back_to_ptrace_and_says_why() {
    if !samplers().contains(&"bpf") {
        panic!("bpf does not run here at all: nothing to take away");
    }
    let py = py312();
    let target = Target::spawn(&py, "split.py", &[]);
    let pid = target.pid.to_string();
    let dir = temp_dir();
    let out = dir.path().join("p.json");
    let out_s = out.to_str().unwrap();
    // Default: ptrace, with one line saying why.
    let o =
        pyprof_without_bpf_caps(&["record", "-p", &pid, "-d", "0.5", "-f", "json", "-o", out_s]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let notes: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("bpf sampler unavailable"))
        .collect();
    assert_eq!(notes.len(), 1, "one line about bpf: {err}");
    assert!(
        notes[0].contains("using ptrace") && notes[0].contains("CAP_BPF"),
        "{}",
        notes[0]
    );
    let p = read_profile(&out);
    assert_eq!(p.meta.sampler, "ptrace");
    assert!(p.meta.samples > 0);
    // --nonblocking: plain reads, and the warning about what that costs.
    let o = pyprof_without_bpf_caps(&[
        "record",
        "-p",
        &pid,
        "-d",
        "0.5",
        "--nonblocking",
        "-f",
        "json",
        "-o",
        out_s,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("bpf sampler unavailable") && err.contains("under-counted"),
        "{err}"
    );
    assert_eq!(read_profile(&out).meta.sampler, "read");
    // An explicit --sampler bpf cannot be honoured: one line, non-zero exit.
    let o = pyprof_without_bpf_caps(&[
        "record",
        "-p",
        &pid,
        "-d",
        "0.5",
        "--sampler",
        "bpf",
        "-o",
        out_s,
    ]);
    let err = assert_one_line_error(&o, "--sampler bpf without privileges");
    assert!(
        err.contains("--sampler bpf") && err.contains("not permitted"),
        "{err}"
    );
}

#[test]
fn with_privileges_the_default_is_bpf_and_the_title_says_so() {
    if !samplers().contains(&"bpf") {
        panic!("the bpf sampler cannot run here");
    }
    let py = py312();
    let target = Target::spawn(&py, "split.py", &[]);
    let pid = target.pid.to_string();
    let dir = temp_dir();
    let svg = dir.path().join("p.svg");
    let o = pyprof(&[
        "record",
        "-p",
        &pid,
        "-d",
        "0.5",
        "-o",
        svg.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("unavailable"), "{err}");
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("bpf"), "the SVG title names the sampler");
    let (p, _) = record_json(target.pid, 0.3, &["--no-idle"]);
    assert_eq!(p.meta.sampler, "bpf");
    let (p, _) = record_json(target.pid, 0.3, &["--blocking"]);
    assert_eq!(
        (p.meta.sampler.as_str(), p.meta.mode.as_str()),
        ("ptrace", "blocking")
    );
    let (p, _) = record_json(target.pid, 0.3, &["--nonblocking"]);
    assert_eq!(
        (p.meta.sampler.as_str(), p.meta.mode.as_str()),
        ("bpf", "nonblocking")
    );
    // --blocking and --nonblocking together make no sense.
    let o = pyprof(&["record", "-p", &pid, "--blocking", "--nonblocking"]);
    let err = assert_usage_error(&o, "--blocking --nonblocking");
    assert!(err.contains("cannot be used with"), "{err}");
}

/// A 5,000-frame recursion on a CPU: walked whole in the kernel (bpf_loop), and cut at
/// --max-depth with the cut marked, as the other samplers do.
#[test]
fn five_thousand_frames_are_walked_in_the_kernel_and_max_depth_cuts_visibly() {
    let py = py312();
    for spin in [false, true] {
        let target = Target::spawn(
            &py,
            "deep.py",
            if spin { &["5000", "spin"] } else { &["5000"] },
        );
        for sampler in samplers() {
            let mut args = vec!["-r", "50", "--sampler", sampler];
            if spin {
                args.push("--no-idle");
            }
            let (p, _) = record_json(target.pid, 0.5, &args);
            assert!(!p.stacks.is_empty(), "{sampler} spin={spin}: no stacks");
            for s in &p.stacks {
                // <module> + 5001 calls of down().
                assert_eq!(s.frames.len(), 5002, "{sampler} spin={spin}: frames walked");
                assert!(!s.truncated);
            }
            let mut args = args.clone();
            args.extend(["--max-depth", "100"]);
            let (p, _) = record_json(target.pid, 0.5, &args);
            for s in &p.stacks {
                assert!(s.truncated, "{sampler} spin={spin}");
                assert_eq!(s.frames.len(), 100, "{sampler} spin={spin}");
            }
        }
    }
}

/// A program whose cycle is exactly the sampling interval (tests/scripts/in_step.py:
/// `short` a quarter of every cycle, `long` the rest) is sampled in proportion by every
/// sampler, at a rate the kernel's timer runs in steps (250 Hz) and at one it runs every
/// fire (5 kHz, bpf): the sampling instants are dithered. Without that, equal intervals
/// land on the same point of every cycle and report 0% or 100% of `short`.
#[test]
fn a_program_in_step_with_the_rate_is_sampled_in_proportion() {
    let py = py312();
    let _cpu = exclusive();
    let mut failures = Vec::new();
    for rate in ["250", "5000"] {
        let target = Target::spawn(&py, "in_step.py", &[rate]);
        for sampler in samplers() {
            if rate == "5000" && sampler != "bpf" {
                continue; // (a stopping sampler cannot keep 5 kHz on this machine)
            }
            let (p, _) = record_json(
                target.pid,
                2.0,
                &["--sampler", sampler, "-r", rate, "--no-idle"],
            );
            let (mut short, mut total) = (0u64, 0u64);
            for (_, frames, n) in stacks(&p) {
                match frames.last().map(|f| f.0.as_str()) {
                    Some("short") => short += n,
                    Some("long") => {}
                    _ => continue,
                }
                total += n;
            }
            let share = short as f64 / total.max(1) as f64;
            // A quarter, within 4 σ of 500 samples' binomial noise (±8 points); fewer
            // samples than that is a failure of its own.
            let line = format!(
                "{sampler} at {rate} Hz: short {short} of {total} ({:.1}%)",
                share * 100.0
            );
            println!("{line}");
            if total < 300 || (share - 0.25).abs() > 0.08 {
                failures.push(line);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "sampled out of proportion: {failures:?}"
    );
}

/// A launched program that spends its time importing the standard library, under bpf.
/// Module and class bodies run once and their code objects are freed at once: often
/// before userspace drains the kernel's samples of them (tried: even when draining every
/// 2 ms, a quarter of the import-time samples failed as "invalid code object"). The
/// kernel saw those frames run, so the code objects were alive then: such a frame is
/// `<freed code object>`, under the import machinery that ran it, and the sample keeps
/// the rest of its stack. Samples still in the ring buffer when the program exits are
/// recorded with the code objects decoded before. Nothing fails. (Without this, 15-25%
/// of the samples of this program failed.)
#[test]
fn import_time_under_bpf_keeps_every_sample() {
    if !samplers().contains(&"bpf") {
        panic!("bpf does not run here");
    }
    for_each_python("imports", |py| {
        if py.major < 3 {
            // (2.7 imports in C: no importlib frames to find the freed bodies under.)
            return Ok("skipped: 2.7 imports in C".into());
        }
        let dir = temp_dir();
        let out = dir.path().join("imports.json");
        let script = script_path(py, "imports.py");
        let mut args = vec![
            "record",
            "--sampler",
            "bpf",
            "-r",
            "2000",
            "-f",
            "json",
            "-o",
        ];
        args.push(out.to_str().unwrap());
        args.push("--");
        args.extend(py.cmd.iter().map(|s| s.as_str()));
        args.push(script.as_str());
        let o = pyprof(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        if !o.status.success() {
            return Err(format!("pyprof failed: {err}"));
        }
        let p = read_profile(&out);
        let failed: u64 = p.meta.errors.values().sum();
        let total = p.meta.samples + failed;
        if total < 200 {
            return Err(format!("only {total} samples: {err}"));
        }
        if failed * 100 > total {
            return Err(format!(
                "{failed} of {total} samples failed: {:?}",
                p.meta.errors
            ));
        }
        let mut freed = 0;
        let mut importing = 0;
        let mut settle = 0;
        for (_, frames, count) in stacks(&p) {
            if frames.last().is_some_and(|f| f.0 == "settle") {
                settle += count;
            }
            let under_import = |i: usize| {
                frames[..i]
                    .iter()
                    .any(|f| f.0 == "_find_and_load" || f.0 == "_call_with_frames_removed")
            };
            if frames.iter().any(|f| f.0 == "import_all") {
                importing += count;
            }
            for (i, f) in frames.iter().enumerate() {
                if f.0 == "<freed code object>" {
                    freed += count;
                    // (Or code the interpreter's finalization freed while the last
                    // samples waited to be drained: the main script's body, and with it
                    // every frame of such a stack.)
                    let finalized = i == 0 || frames.iter().all(|f| f.0 == "<freed code object>");
                    if !under_import(i) && !finalized {
                        return Err(format!("a freed code object outside an import: {frames:?}"));
                    }
                }
            }
        }
        let notes: Vec<&String> = p
            .meta
            .notes
            .iter()
            .filter(|n| n.contains("freed before pyprof could read them"))
            .collect();
        if notes.len() > 1 {
            return Err(format!("the freed-code note is there {} times: {notes:?}", notes.len()));
        }
        match notes.first() {
            Some(n) if n.starts_with(&format!("{freed} frames ")) => {}
            None if freed == 0 => {}
            other => return Err(format!("{freed} freed frames, note {other:?}")),
        }
        // The program's last 0.3 s (its exit follows): sampled, not lost with it.
        if settle < 200 {
            return Err(format!(
                "settle has {settle} samples; 0.3 s at 2 kHz is ~600"
            ));
        }
        Ok(format!(
            "{total} samples, {importing} importing, {freed} freed-code frames, settle {settle}, {failed} failed"
        ))
    });
}

/// System calls per tick in steady state: the slope of `meta.syscalls` (pyprof counts its
/// own, at each call site) between a 1 s and a 3 s recording of the same process, so
/// that attaching is not counted. The issue's goal is ≤ 3 per tick for plain reads: one
/// batched read, the process CPU clock, and rarely a state letter. ptrace adds pausing
/// the thread (seize, interrupt, wait, detach). With 1,000 parked threads the monitor's
/// occasional look at every thread (one read each) is allowed on top.
#[test]
fn steady_ticks_make_few_system_calls() {
    let slope = |pid: i32, extra: &[&str]| -> Result<(f64, String), String> {
        let (a, _) = record_json(pid, 1.0, extra);
        let (b, _) = record_json(pid, 3.0, extra);
        if b.meta.ticks <= a.meta.ticks + 50 {
            return Err(format!("ticks {} then {}", a.meta.ticks, b.meta.ticks));
        }
        let per = (b.meta.syscalls as f64 - a.meta.syscalls as f64)
            / (b.meta.ticks - a.meta.ticks) as f64;
        Ok((per, format!("{per:.2}")))
    };
    for_each_python("steady syscalls", |py| {
        if py.minor != 12 && py.minor != 15 && py.major == 3 {
            return Ok("not one of 2.7, 3.12, 3.15 (kept short)".into());
        }
        let _cpu = exclusive();
        let mut shown = Vec::new();
        {
            // One thread running at depth 20 (in a C call that never returns).
            let target = Target::spawn(py, "deep.py", &["20", "spin"]);
            for (sampler, most) in [("read", 3.0), ("ptrace", 7.0)] {
                let (per, s) = slope(
                    target.pid,
                    &["--no-idle", "--sampler", sampler, "-r", "1000"],
                )?;
                if per > most {
                    return Err(format!(
                        "{sampler}: {s} system calls per tick (at most {most})"
                    ));
                }
                shown.push(format!("{sampler} {s}"));
            }
        }
        let target = Target::spawn(py, "many_threads.py", &["1000"]);
        // (That look comes every 10 s with 1,000 threads: the 3 s recording may hold
        // one more than the 1 s one, over its 200 more ticks.)
        let most = 3.0 + 1000.0 / 200.0;
        let (per, s) = slope(target.pid, &["--no-idle", "--sampler", "read", "-r", "100"])?;
        if per > most {
            return Err(format!(
                "read, 1,000 threads: {s} system calls per tick (at most {most})"
            ));
        }
        shown.push(format!("read with 1,000 threads {s}"));
        Ok(shown.join(", "))
    });
}
