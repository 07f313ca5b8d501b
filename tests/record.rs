//! `pyprof record` against real interpreters: every available version, each target
//! signalling readiness before pyprof attaches.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The stack blocked.py prints the truth for: (function, line, dis offset of the call
/// it is blocked in), root first.
fn blocked_truth(t: &Target) -> Vec<(String, i32, u32)> {
    t.lines
        .iter()
        .filter_map(|l| {
            let mut it = l.strip_prefix("truth ")?.split_whitespace();
            let (f, off, line) = (it.next()?, it.next()?, it.next()?);
            Some((f.to_string(), line.parse().ok()?, off.parse().ok()?))
        })
        .collect()
}

#[test]
fn known_blocked_stack_has_exact_names_lines_and_call_offsets() {
    for_each_python("blocked stack", |py| {
        let _cpu = exclusive();
        let mut seen = Vec::new();
        // Blocked off the CPU (read with --idle), and in a C call on the CPU (where the
        // bpf sampler walks it in the kernel).
        for spin in [false, true] {
            let target = Target::spawn(py, "blocked.py", if spin { &["spin"] } else { &[] });
            let truth = blocked_truth(&target);
            if truth.len() != 4 || truth.iter().any(|t| t.2 > 100_000) {
                return Err(format!("the target's truth lines: {:?}", target.lines));
            }
            let want: Vec<(String, i32)> = truth.iter().map(|t| (t.0.clone(), t.1)).collect();
            for sampler in samplers() {
                for opcodes in [false, true] {
                    let mut args = vec!["--sampler", sampler, "-r", "200"];
                    if opcodes {
                        args.push("--opcodes");
                    }
                    if spin {
                        args.push("--no-idle");
                    }
                    let (p, _, cpu) = record_json_cpu(target.pid, 0.3, &args);
                    let what = format!(
                        "{sampler}{}{}",
                        if opcodes { " --opcodes" } else { "" },
                        if spin { " spinning" } else { " sleeping" }
                    );
                    let all = stacks(&p);
                    // 200 Hz for 0.3 s: one sample per tick of the one thread (asleep and
                    // kept by --idle, or on a CPU; bpf samples only a thread on a CPU, so
                    // spinning it gets the rate times the CPU time it had).
                    let need = if spin {
                        min_samples(sampler, 200.0, p.meta.ticks as f64 / 200.0, cpu)
                    } else {
                        0.9 * p.meta.ticks as f64
                    };
                    if (p.meta.samples as f64) < need || p.meta.ticks < 40 {
                        return Err(format!(
                            "{what}: {} samples in {} ticks (need {need:.0}; target CPU {cpu:.2} s)",
                            p.meta.samples, p.meta.ticks
                        ));
                    }
                    for (_, frames, _) in &all {
                        if frames != &want {
                            return Err(format!("{what}: got {frames:?}, want {want:?}"));
                        }
                    }
                    if p.meta.sampler != sampler {
                        return Err(format!("{what}: meta.sampler is {:?}", p.meta.sampler));
                    }
                    let file = &p.frames[p.stacks[0].frames[0] as usize].file;
                    if !file.ends_with("blocked.py") {
                        return Err(format!("file name {file}"));
                    }
                    if p.meta.error_count() != 0 {
                        return Err(format!("{what}: errors: {:?}", p.meta.errors));
                    }
                    if opcodes {
                        // Each frame sits exactly at the call dis gives for its line.
                        for st in &p.stacks {
                            for (k, &id) in st.frames.iter().enumerate() {
                                let f = &p.frames[id as usize];
                                if f.offset != Some(truth[k].2) {
                                    return Err(format!(
                                        "{what}: {} at offset {:?} ({:?}), dis says {}",
                                        f.function, f.offset, f.opcode, truth[k].2
                                    ));
                                }
                                let base = f.base_opcode.as_deref().unwrap_or("");
                                if !base.starts_with("CALL") {
                                    return Err(format!("{what}: {} executes {base}", f.function));
                                }
                            }
                        }
                    }
                }
                seen.push(format!(
                    "{sampler}{}",
                    if spin { "/spin" } else { "/sleep" }
                ));
            }
        }
        Ok(format!("{seen:?}"))
    });
}

/// The stacks split.py can have, root first, as (function, allowed lines): anything else
/// is a torn or wrong stack. A prefix of a possible stack is possible (main between its
/// calls, the module before main's frame is set up).
struct SplitStacks {
    module: i32,
    main: std::ops::RangeInclusive<i32>,
    call70: i32,
    call30: i32,
    hot70: std::ops::RangeInclusive<i32>,
    hot30: std::ops::RangeInclusive<i32>,
}

impl SplitStacks {
    fn new() -> SplitStacks {
        let m = |k| marker_line("split.py", k);
        SplitStacks {
            module: m("module_call"),
            main: m("main_loop")..=m("call30"),
            call70: m("call70"),
            call30: m("call30"),
            hot70: m("hot70_def")..=m("hot70_end"),
            hot30: m("hot30_def")..=m("hot30_end"),
        }
    }

    /// Is this stack (root first) one split.py can have?
    fn valid(&self, frames: &[(String, i32)]) -> bool {
        let at = |i: usize, f: &str| frames.get(i).map(|x| x.0.as_str()) == Some(f);
        match frames.len() {
            1 => at(0, "<module>") && frames[0].1 == self.module,
            2 => {
                at(0, "<module>")
                    && frames[0].1 == self.module
                    && at(1, "main")
                    && self.main.contains(&frames[1].1)
            }
            3 => {
                let (f, line) = (&frames[2].0, frames[2].1);
                at(0, "<module>")
                    && frames[0].1 == self.module
                    && at(1, "main")
                    && ((f == "hot70" && frames[1].1 == self.call70 && self.hot70.contains(&line))
                        || (f == "hot30"
                            && frames[1].1 == self.call30
                            && self.hot30.contains(&line)))
            }
            _ => false,
        }
    }
}

/// Every sampler: 1 kHz for 3 s of split.py. Every stack must be one the program can have
/// (at most 0.1% otherwise; beyond that, for the read sampler, only stacks it flagged as
/// read while they moved), hot70 must get 70% ± 3 points of hot70 + hot30, and the
/// samples must be at least 90% of the ticks.
#[test]
fn cpu_split_70_30_and_every_stack_possible_in_every_sampler() {
    let shape = SplitStacks::new();
    for_each_python("70/30 split", |py| {
        let _cpu = exclusive();
        let target = Target::spawn(py, "split.py", &[]);
        let mut notes = Vec::new();
        for sampler in samplers() {
            let (p, _, cpu) = record_json_cpu(
                target.pid,
                3.0,
                &["-r", "1000", "--sampler", sampler, "--no-idle"],
            );
            let (mut hot70, mut hot30, mut invalid, mut total) = (0u64, 0u64, 0u64, 0u64);
            let mut examples = Vec::new();
            for (_, frames, count) in stacks(&p) {
                total += count;
                if !shape.valid(&frames) {
                    invalid += count;
                    if examples.len() < 3 {
                        examples.push(frames.clone());
                    }
                    continue;
                }
                match frames.last().map(|f| f.0.as_str()) {
                    Some("hot70") => hot70 += count,
                    Some("hot30") => hot30 += count,
                    _ => {}
                }
            }
            let n = hot70 + hot30;
            let need = min_samples(sampler, 1000.0, 3.0, cpu);
            if (total as f64) < need || (n as f64) < 0.95 * need {
                return Err(format!(
                    "{sampler}: {total} samples, {n} in hot70/hot30, in 3 s at 1 kHz (need {need:.0}; target CPU {cpu:.2} s; {} ticks, {} late, errors {:?})",
                    p.meta.ticks, p.meta.late, p.meta.errors
                ));
            }
            // (The read sampler may tear a stack: beyond 0.1%, only the ones it flagged.)
            let flagged = p.meta.unsettled + p.meta.moving_kept;
            if invalid * 1000 > total && (sampler != "read" || invalid > flagged) {
                return Err(format!(
                    "{sampler}: {invalid} of {total} stacks impossible ({flagged} flagged), e.g. {examples:?}"
                ));
            }
            let share = 100.0 * hot70 as f64 / n as f64;
            if (share - 70.0).abs() > 3.0 {
                return Err(format!("{sampler}: hot70 share {share:.1}% of {n} samples"));
            }
            if p.meta.error_count() * 1000 > p.meta.ticks {
                return Err(format!("{sampler}: failed samples {:?}", p.meta.errors));
            }
            notes.push(format!(
                "{sampler} {share:.1}% of {n} ({invalid} impossible, {} failed)",
                p.meta.error_count()
            ));
        }
        Ok(notes.join("; "))
    });
}

/// The read sampler reads a target that runs on: a stack read while the thread returns
/// from one call and makes the next mixes the two (hot70 on top of main at its call of
/// hot30). Such stacks are kept (reading again until a read settles favours the frames
/// that stay put, and biased the leaf distribution on pyperformance by 0.1 more), but
/// the sampler sees them: each thread's top frame, its code object and its caller's
/// instruction are read again at the end of the read, and a stack where one moved is
/// counted in `meta.unsettled`. split.py with calls of 100 iterations (a few µs: the
/// stack changes hundreds of times per ms) at 1 kHz for 3 s, every interpreter: the
/// impossible stacks are at most the ones flagged, and some are flagged.
#[test]
fn read_sampler_flags_the_stacks_it_may_have_torn() {
    let shape = SplitStacks::new();
    for_each_python("short calls under read", |py| {
        let _cpu = exclusive();
        let target = Target::spawn(py, "split.py", &["1e9", "100"]);
        let (p, _, _) = record_json_cpu(
            target.pid,
            3.0,
            &["-r", "1000", "--sampler", "read", "--no-idle"],
        );
        let (mut invalid, mut total) = (0u64, 0u64);
        let mut examples = Vec::new();
        for (_, frames, count) in stacks(&p) {
            total += count;
            if !shape.valid(&frames) {
                invalid += count;
                if examples.len() < 3 {
                    examples.push(frames.clone());
                }
            }
        }
        let flagged = p.meta.unsettled + p.meta.moving_kept;
        if total < 1000 {
            return Err(format!("{total} samples in 3 s at 1 kHz"));
        }
        if invalid > flagged || flagged == 0 {
            return Err(format!(
                "{invalid} of {total} stacks impossible, {flagged} flagged, e.g. {examples:?}"
            ));
        }
        if p.meta.error_count() * 100 > p.meta.ticks {
            return Err(format!("failed samples {:?}", p.meta.errors));
        }
        Ok(format!(
            "{invalid} of {total} impossible, {} unsettled, {} kept mixed; {} retries, {} failed",
            p.meta.unsettled,
            p.meta.moving_kept,
            p.meta.retries,
            p.meta.error_count()
        ))
    });
}

#[test]
fn split_stack_shape_refuses_torn_stacks() {
    let s = SplitStacks::new();
    let f = |v: &[(&str, i32)]| -> Vec<(String, i32)> {
        v.iter().map(|(a, b)| (a.to_string(), *b)).collect()
    };
    let (m, c70, c30) = (s.module, s.call70, s.call30);
    let h70 = *s.hot70.start() + 1;
    assert!(s.valid(&f(&[("<module>", m), ("main", c70), ("hot70", h70)])));
    assert!(s.valid(&f(&[("<module>", m), ("main", c30)])));
    // hot70 under main's call of hot30: torn.
    assert!(!s.valid(&f(&[("<module>", m), ("main", c30), ("hot70", h70)])));
    // A frame missing in the middle, a wrong line, a wrong module line.
    assert!(!s.valid(&f(&[("<module>", m), ("hot70", h70)])));
    assert!(!s.valid(&f(&[("<module>", m), ("main", c70), ("hot70", c70)])));
    assert!(!s.valid(&f(&[("<module>", m + 1), ("main", c70), ("hot70", h70)])));
}

#[test]
fn every_thread_is_sampled() {
    for_each_python("threads", |py| {
        let target = Target::spawn(py, "threads.py", &[]);
        let (p, _) = record_json(target.pid, 0.5, &[]);
        // Each function's leaf lines, by samples: thread_c also runs its loop line for a
        // few µs between its sleeps, and may be sampled there (CI once kept only that).
        let mut leaves: std::collections::BTreeMap<String, std::collections::BTreeMap<i32, u64>> =
            Default::default();
        for (_, frames, count) in stacks(&p) {
            if let Some((func, line)) = frames.last() {
                *leaves
                    .entry(func.clone())
                    .or_default()
                    .entry(*line)
                    .or_default() += count;
            }
        }
        for (func, mark) in [("thread_a", "a"), ("thread_b", "b"), ("thread_c", "c")] {
            let most = leaves
                .get(func)
                .and_then(|lines| lines.iter().max_by_key(|(_, n)| **n).map(|(l, _)| *l));
            if most != Some(marker_line("threads.py", mark)) {
                return Err(format!(
                    "{func}: most samples at line {most:?} in {leaves:?}"
                ));
            }
        }
        let ids: std::collections::BTreeSet<u32> = p.stacks.iter().map(|s| s.thread).collect();
        if ids.len() < 4 || p.threads.len() < 4 {
            return Err(format!("{} threads seen", ids.len()));
        }
        // With --threads, collapsed output has one root per thread.
        let dir = temp_dir();
        let out = dir.path().join("t.txt");
        let o = pyprof(&[
            "record",
            "--idle",
            "-p",
            &target.pid.to_string(),
            "-d",
            "0.3",
            "-f",
            "collapsed",
            "-t",
            "-o",
            out.to_str().unwrap(),
        ]);
        if !o.status.success() {
            return Err(String::from_utf8_lossy(&o.stderr).into());
        }
        let text = std::fs::read_to_string(&out).unwrap();
        let roots: std::collections::BTreeSet<&str> =
            text.lines().filter_map(|l| l.split(';').next()).collect();
        if roots.len() < 4 || !roots.iter().all(|r| r.starts_with("thread ")) {
            return Err(format!("thread roots {roots:?}"));
        }
        // Roots carry the threads' Python names.
        for name in ["MainThread", "worker-a", "worker-b", "worker-c"] {
            if !roots
                .iter()
                .any(|r| r.starts_with(&format!("thread {name} (")))
            {
                return Err(format!("no root for {name}: {roots:?}"));
            }
        }
        Ok(format!("{} threads", ids.len()))
    });
}

#[test]
fn launch_mode_profiles_until_exit() {
    for_each_python("launch", |py| {
        let dir = temp_dir();
        let out = dir.path().join("launch.json");
        let script = script_path(py, "split.py");
        let mut args = vec![
            "record",
            "-r",
            "200",
            "-f",
            "json",
            "-o",
            out.to_str().unwrap(),
            "--",
        ];
        args.extend(py.cmd.iter().map(|s| s.as_str()));
        args.extend([script.as_str(), "1.0"]);
        let o = pyprof(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        if !o.status.success() {
            return Err(format!("pyprof failed: {err}"));
        }
        if !err.contains("target exited") {
            return Err(format!("summary does not say the target exited: {err}"));
        }
        let p = read_profile(&out);
        let hot = stacks(&p)
            .iter()
            .filter(|(_, f, _)| f.last().map(|l| l.0.starts_with("hot")).unwrap_or(false))
            .map(|s| s.2)
            .sum::<u64>();
        // The program ran its loop for 1 s (and printed its CPU time before and after).
        let stdout = String::from_utf8_lossy(&o.stdout);
        let line = |tag: &str| -> Option<f64> {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(tag)?.trim().parse().ok())
        };
        let (Some(cpu0), Some(cpu1)) = (line("cpu0 "), line("cpu ")) else {
            return Err(format!("split.py printed no cpu lines: {stdout}"));
        };
        let cpu = cpu1 - cpu0;
        let need = min_samples(&p.meta.sampler, 200.0, 1.0, cpu);
        if (hot as f64) < need {
            return Err(format!(
                "only {hot} samples in hot functions of {need:.0} ({} total, {} sampler)",
                p.meta.samples, p.meta.sampler
            ));
        }
        if p.meta.command.is_none() || !p.meta.target.contains("split.py") {
            return Err(format!("target {:?}", p.meta.target));
        }
        Ok(format!("{hot} samples"))
    });
}

#[test]
fn target_exit_writes_everything_sampled() {
    let py = pythons()
        .into_iter()
        .find(|p| p.at_least(3, 8))
        .expect("a python 3.8+");
    let target = Target::spawn(&py, "split.py", &["1.5"]);
    let dir = temp_dir();
    let out = dir.path().join("exit.json");
    let o = pyprof(&[
        "record",
        "-p",
        &target.pid.to_string(),
        "-f",
        "json",
        "-o",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("target exited"), "{err}");
    let p = read_profile(&out);
    assert!(p.meta.samples > 50, "{} samples", p.meta.samples);
    assert_eq!(
        p.meta.error_count(),
        0,
        "errors when the target exited: {:?}",
        p.meta.errors
    );
}

#[test]
fn interrupt_and_terminate_write_output() {
    let py = pythons()
        .into_iter()
        .find(|p| p.at_least(3, 8))
        .expect("a python 3.8+");
    let target = Target::spawn(&py, "split.py", &[]);
    for (signal, name) in [
        (nix::sys::signal::Signal::SIGINT, "SIGINT"),
        (nix::sys::signal::Signal::SIGTERM, "SIGTERM"),
    ] {
        let dir = temp_dir();
        let out = dir.path().join("int.svg");
        let child = Command::new(pyprof_bin())
            .args([
                "record",
                "-p",
                &target.pid.to_string(),
                "-o",
                out.to_str().unwrap(),
            ])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1000));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{name}: {err}");
        assert!(err.contains("interrupted"), "{name}: {err}");
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("hot70"),
            "{name}: svg lacks samples"
        );
        // The target was resumed and keeps running.
        assert!(
            pyprof::process::live::is_alive(target.pid),
            "{name}: target died"
        );
    }
}

#[test]
fn svg_title_says_what_was_profiled() {
    let py = pythons()
        .into_iter()
        .find(|p| p.at_least(3, 8))
        .expect("a python 3.8+");
    let target = Target::spawn(&py, "blocked.py", &[]);
    let dir = temp_dir();
    let out = dir.path().join("t.svg");
    let o = pyprof(&[
        "record",
        "--idle",
        "-p",
        &target.pid.to_string(),
        "-d",
        "0.5",
        "-r",
        "50",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let svg = std::fs::read_to_string(&out).unwrap();
    assert!(
        svg.contains(&format!("pid {}", target.pid)),
        "title lacks the pid"
    );
    assert!(svg.contains("blocked.py"), "title lacks the command");
    assert!(
        svg.contains(&format!("Python {}.{}", py.major, py.minor)),
        "title lacks the version"
    );
    assert!(svg.contains("50 Hz"), "subtitle lacks the rate");
    assert!(
        svg.contains("leaf (") && svg.contains("samples"),
        "no frames in svg"
    );
}

#[test]
fn collapsed_format_and_label_options() {
    let py = pythons()
        .into_iter()
        .find(|p| p.at_least(3, 11))
        .expect("a python 3.11+");
    let target = Target::spawn(&py, "blocked.py", &[]);
    let dir = temp_dir();
    let pid = target.pid.to_string();
    let run = |extra: &[&str]| -> String {
        let out = dir.path().join("c.txt");
        let mut args = vec![
            "record",
            "--idle",
            "-p",
            &pid,
            "-d",
            "0.3",
            "-f",
            "raw",
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = pyprof(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read_to_string(&out).unwrap()
    };
    let sleep = marker_line("blocked.py", "sleep");
    let text = run(&[]);
    let line = text.lines().next().unwrap();
    let (stack, count) = line.rsplit_once(' ').unwrap();
    assert!(count.parse::<u64>().unwrap() > 0);
    let frames: Vec<&str> = stack.split(';').collect();
    assert_eq!(frames.len(), 4, "{line}");
    assert!(frames[0].starts_with("<module> ("), "{line}");
    // Short file names, as py-spy shows them: the script's own name.
    assert_eq!(frames[3], format!("leaf (blocked.py:{sleep})"), "{line}");
    let text = run(&["--nolineno"]);
    assert!(
        text.contains("leaf (") && !text.contains(&format!(":{sleep})")),
        "{text}"
    );
    let text = run(&["-F"]);
    let leaf_def = marker_line("blocked.py", "leaf_def");
    assert!(text.contains(&format!("blocked.py:{leaf_def})")), "{text}");
    let text = run(&["--full-filenames"]);
    assert!(
        text.contains(&format!("{}/blocked.py:{sleep})", scripts_dir().display())),
        "{text}"
    );
}

/// Leaf functions of a profile and their samples.
fn leaf_counts(p: &pyprof::profile::ProfileData) -> std::collections::BTreeMap<String, u64> {
    let mut m = std::collections::BTreeMap::new();
    for s in &p.stacks {
        let f = &p.frames[*s.frames.last().unwrap() as usize];
        *m.entry(f.function.clone()).or_insert(0) += s.count;
    }
    m
}

/// gil_busy.py, 200 Hz for 1 s, every sampler: with --idle all four threads in every
/// tick; without, only the busy thread (in at least 90% of the ticks, or of its CPU time
/// for bpf) and no sleeper; with --gil only the busy thread (it holds the GIL nearly all
/// the time), never a sleeper; --gil refused where there is no GIL.
#[test]
fn idle_threads_are_dropped_unless_asked_for_and_gil_keeps_the_holder() {
    let _cpu = exclusive();
    for_each_python("idle and gil", |py| {
        let target = Target::spawn(py, "gil_busy.py", &[]);
        let mut notes = Vec::new();
        for sampler in samplers() {
            let base = ["-r", "200", "--sampler", sampler];
            // --idle: every thread, every tick.
            let (all, _) = record_json(target.pid, 1.0, &base);
            let a = leaf_counts(&all);
            let per_tick = |f: &str| a.get(f).copied().unwrap_or(0);
            let need = 0.9 * 200.0;
            let sleepers = per_tick("sleeper");
            if (sleepers as f64) < 2.0 * need
                || (per_tick("<module>") as f64) < need
                || ((per_tick("busy") as f64) < need && sampler != "bpf")
            {
                return Err(format!(
                    "{sampler} --idle: {a:?} in {} ticks",
                    all.meta.ticks
                ));
            }
            // Without --idle: the busy thread only.
            let mut args = base.to_vec();
            args.push("--no-idle");
            let (busy, _, cpu) = record_json_cpu(target.pid, 1.0, &args);
            let b = leaf_counts(&busy);
            let busy_n = b.get("busy").copied().unwrap_or(0);
            if b.keys().any(|k| k != "busy")
                || (busy_n as f64) < min_samples(sampler, 200.0, 1.0, cpu)
            {
                return Err(format!(
                    "{sampler}: without --idle {b:?} (target CPU {cpu:.2} s)"
                ));
            }
            // --gil (and --idle, so that only the GIL decides): the busy thread only.
            if py.key.ends_with('t') {
                let dir = temp_dir();
                let out = dir.path().join("g.json");
                let o = pyprof(&[
                    "record",
                    "--gil",
                    "-p",
                    &target.pid.to_string(),
                    "-d",
                    "0.3",
                    "--sampler",
                    sampler,
                    "-f",
                    "json",
                    "-o",
                    out.to_str().unwrap(),
                ]);
                let err = assert_one_line_error(&o, "--gil on a free-threaded build");
                if !err.contains("no GIL") {
                    return Err(format!("{sampler}: --gil said {err}"));
                }
                notes.push(format!("{sampler}: busy {busy_n}, --gil refused"));
                continue;
            }
            let mut args = base.to_vec();
            args.push("--gil");
            let (g, _, cpu) = record_json_cpu(target.pid, 1.0, &args);
            let gl = leaf_counts(&g);
            let held = gl.get("busy").copied().unwrap_or(0);
            // The busy thread gives the GIL up every 5 ms for a moment (the switch
            // interval); nobody else wants it, so it takes it straight back.
            if gl.keys().any(|k| k != "busy")
                || (held as f64) < 0.9 * min_samples(sampler, 200.0, 1.0, cpu)
            {
                return Err(format!(
                    "{sampler}: --gil kept {gl:?} (target CPU {cpu:.2} s)"
                ));
            }
            notes.push(format!("{sampler}: busy {busy_n}, --gil {held}"));
        }
        Ok(notes.join("; "))
    });
}
