//! Free-threaded builds (3.13t, 3.14t, 3.15t), against real interpreters:
//! * several threads run Python at the same time, and `--threads` shows each;
//! * `--gil` is refused with one line (there is no GIL to follow);
//! * 3.14t+: each thread executes its own copy of the bytecode (`co_tlbc[tlbc_index]`),
//!   so two threads running the same function on ints and on floats at the same time
//!   report different specialized forms, each matching that thread's own copy as the
//!   target itself reads it (`_testinternalcapi.get_tlbc`).
//!
//! Interpreters without a free-threaded build are controls for the parallelism measure
//! (one thread at a time runs Python under a GIL). A missing free-threaded interpreter is
//! reported by name (`SKIP`), never hidden.

mod common;

use common::*;
use pyprof::profile::ProfileData;
use serde::Deserialize;
use std::collections::HashMap;
use std::process::Command;

/// Is this interpreter a free-threaded build (`Py_GIL_DISABLED`)?
fn free_threaded(py: &Python) -> bool {
    let out = Command::new(&py.cmd[0])
        .args(&py.cmd[1..])
        .args([
            "-c",
            "import sysconfig; print(1 if sysconfig.get_config_var('Py_GIL_DISABLED') else 0)",
        ])
        .output();
    matches!(out, Ok(o) if String::from_utf8_lossy(&o.stdout).trim() == "1")
}

/// The free-threaded interpreters at or above 3.`minor`, reporting when there are none.
fn free_threaded_pythons(minor: u8, what: &str) -> Vec<Python> {
    let found: Vec<Python> = pythons()
        .into_iter()
        .filter(|p| p.at_least(3, minor) && free_threaded(p))
        .collect();
    if found.is_empty() {
        eprintln!(
            "SKIP {what}: no free-threaded Python 3.{minor}+ found (scripts/install-pythons.sh \
             builds them into /opt/pythons/3.1Xt; list them in PYPROF_PYTHONS)"
        );
    }
    for p in &found {
        eprintln!("{what}: testing {} ({})", p.label, p.cmd.join(" "));
    }
    found
}

/// Samples per thread name, and which `spin_*` function they were in, for the threads
/// named `spin-*`.
fn spin_samples(p: &ProfileData) -> HashMap<String, (u64, HashMap<String, u64>)> {
    let mut out: HashMap<String, (u64, HashMap<String, u64>)> = HashMap::new();
    for s in &p.stacks {
        let name = p.threads[s.thread as usize]
            .name
            .clone()
            .unwrap_or_default();
        if !name.starts_with("spin-") {
            continue;
        }
        let e = out.entry(name).or_default();
        e.0 += s.count;
        // The innermost spin_* function of the stack (the leaf may be Event.is_set).
        if let Some(f) = s
            .frames
            .iter()
            .rev()
            .map(|&i| &p.frames[i as usize].function)
            .find(|f| f.starts_with("spin_"))
        {
            *e.1.entry(f.clone()).or_default() += s.count;
        }
    }
    out
}

/// Several threads running Python at once: sampled in parallel (per tick, both spinning
/// threads are seen running, not waiting), each under its own root with `--threads`.
/// Under a GIL (the controls) only one of them runs Python at a time and the other waits
/// for the GIL most of the time (measured 1.1–1.5 threads per tick on 3.13–3.15, against
/// 2.0 on 3.13t): the measure tells the two apart.
#[test]
fn threads_run_python_in_parallel() {
    let pythons: Vec<Python> = pythons()
        .into_iter()
        .filter(|p| p.at_least(3, 13))
        .collect();
    let mut failures = Vec::new();
    let mut any_ft = false;
    for py in &pythons {
        let ft = free_threaded(py);
        any_ft |= ft;
        let _cpu = exclusive();
        let target = Target::spawn(py, "ft_parallel.py", &[]);
        // Idle (waiting) threads are dropped: what is left ran, or was ready to run.
        let (p, _) = record_json(target.pid, 1.5, &["--no-idle", "-r", "200", "--threads"]);
        let result = (|| -> Result<String, String> {
            let per = spin_samples(&p);
            let ticks = p.meta.ticks.max(1);
            let mut total = 0;
            for (name, func) in [("spin-a", "spin_a"), ("spin-b", "spin_b")] {
                let Some((n, leaves)) = per.get(name) else {
                    return Err(format!("no samples of thread {name}: {:?}", per.keys()));
                };
                let own = leaves.get(func).copied().unwrap_or(0);
                if own * 10 < n * 9 {
                    return Err(format!(
                        "{name}: {own} of {n} samples in {func}: {leaves:?}"
                    ));
                }
                total += n;
            }
            let per_tick = total as f64 / ticks as f64;
            // ptrace and read count the spinning threads that are running or ready to run
            // (2 of 2). bpf samples a thread only when it is on a CPU: a free-threaded build
            // keeps both on CPUs at once (this machine has 2 or more, a test alongside may
            // take some), a GIL build only one at a time.
            let bpf = p.meta.sampler == "bpf";
            let (ft_min, gil_max) = if bpf { (1.4, 1.3) } else { (1.8, 1.75) };
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            if ft && bpf && cpus < 2 {
                eprintln!(
                    "SKIP parallel check on {}: 1 CPU, bpf samples on-CPU threads",
                    py.label
                );
            } else if ft && per_tick < ft_min {
                return Err(format!(
                    "free-threaded, yet {per_tick:.2} spinning threads running per tick \
                     ({total} samples, {ticks} ticks)"
                ));
            }
            if !ft && per_tick > gil_max {
                return Err(format!(
                    "GIL build, yet {per_tick:.2} threads running Python per tick"
                ));
            }
            // --threads: a root per thread, each over its own function.
            let dir = temp_dir();
            let json = dir.path().join("p.json");
            std::fs::write(&json, serde_json::to_string(&p).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
            let collapsed = dir.path().join("p.txt");
            let o = pyprof(&[
                "report",
                json.to_str().unwrap(),
                "-f",
                "collapsed",
                "--threads",
                "-o",
                collapsed.to_str().unwrap(),
            ]);
            if !o.status.success() {
                return Err(format!("report: {}", String::from_utf8_lossy(&o.stderr)));
            }
            let text = std::fs::read_to_string(&collapsed).map_err(|e| e.to_string())?;
            for (name, func) in [("spin-a", "spin_a"), ("spin-b", "spin_b")] {
                let root = format!("thread {name} (tid ");
                if !text
                    .lines()
                    .any(|l| l.starts_with(&root) && l.contains(&format!(";{func} (")))
                {
                    return Err(format!("no `{root}…;{func}` stack in --threads output"));
                }
            }
            Ok(format!(
                "{per_tick:.2} spinning threads running per tick ({total} samples, {ticks} ticks)"
            ))
        })();
        let build = if ft { "free-threaded" } else { "GIL control" };
        match result {
            Ok(m) => eprintln!("parallel {} ({build}): ok {m}", py.label),
            Err(e) => {
                eprintln!("parallel {} ({build}): FAILED {e}", py.label);
                failures.push(format!("{}: {e}", py.label));
            }
        }
    }
    if !any_ft {
        eprintln!("SKIP parallel: no free-threaded Python found, only the GIL controls ran");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `--gil` on a free-threaded target: one line saying why, no sampling.
#[test]
fn gil_filter_is_refused_on_a_free_threaded_target() {
    for py in free_threaded_pythons(13, "--gil refused") {
        let target = Target::spawn(&py, "blocked.py", &[]);
        let dir = temp_dir();
        let out = dir.path().join("p.json");
        let o = pyprof(&[
            "record",
            "--gil",
            "-p",
            &target.pid.to_string(),
            "-d",
            "0.5",
            "-f",
            "json",
            "-o",
            out.to_str().unwrap(),
        ]);
        let err = assert_one_line_error(&o, &format!("{} --gil", py.label));
        assert!(
            err.contains("--gil") && err.contains("free-threaded"),
            "{}: {err}",
            py.label
        );
        assert!(!out.exists(), "{}: wrote a profile anyway", py.label);
        eprintln!("--gil refused {}: ok: {}", py.label, err.trim());
    }
}

#[derive(Deserialize)]
struct Views {
    gil_disabled: bool,
    add_first_line: i32,
    threads: HashMap<String, ThreadView>,
}

#[derive(Deserialize)]
struct ThreadView {
    ident: u64,
    source: String,
    instructions: Option<Vec<ViewIns>>,
}

#[derive(Deserialize)]
struct ViewIns {
    offset: u32,
    opname: String,
    base: String,
}

/// 3.14t+: two threads in the same function at the same time, on ints and on floats.
/// Each thread's sampled instructions must match its own copy of the bytecode, and the
/// two report different specializations of the same `BINARY_OP`s. Read from the code
/// object's own bytecode (the main thread's copy, which neither thread runs) the frames
/// would have no offset at all, or the main copy's opcodes: both fail here.
#[test]
fn each_thread_reports_its_own_specialized_bytecode() {
    let mut failures = Vec::new();
    for py in free_threaded_pythons(14, "thread-local bytecode") {
        let result = (|| -> Result<String, String> {
            let dir = temp_dir();
            let out = dir.path().join("p.json");
            let (views_arg, views_path) = match &py.root {
                Some(root) => {
                    let rel = format!("/tmp/pyprof-tests/views-{}.json", std::process::id());
                    (rel.clone(), root.join(rel.trim_start_matches('/')))
                }
                None => {
                    let p = dir.path().join("views.json");
                    (p.display().to_string(), p)
                }
            };
            let script = script_path(&py, "ft_tlbc.py");
            let mut args = vec![
                "record",
                "--opcodes",
                "--threads",
                "-r",
                "500",
                "-f",
                "json",
                "-o",
                out.to_str().unwrap(),
                "--",
            ];
            args.extend(py.cmd.iter().map(|s| s.as_str()));
            args.extend([script.as_str(), "2.5", views_arg.as_str()]);
            let o = pyprof(&args);
            if !o.status.success() {
                return Err(format!("pyprof: {}", String::from_utf8_lossy(&o.stderr)));
            }
            let text =
                std::fs::read_to_string(&views_path).map_err(|e| format!("views file: {e}"))?;
            let views: Views = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            if !views.gil_disabled {
                return Err("the GIL is enabled in this free-threaded build".into());
            }
            let p = read_profile(&out);
            let add_line = marker_line("ft_tlbc.py", "add");
            let mut report = Vec::new();
            let mut specialized: HashMap<&str, HashMap<String, u64>> = HashMap::new();
            for (name, suffix) in [("ints", "_INT"), ("floats", "_FLOAT")] {
                let view = views
                    .threads
                    .get(name)
                    .ok_or_else(|| format!("no view of thread {name}"))?;
                let ins = view.instructions.as_ref().ok_or_else(|| {
                    format!("{name}: no view of its own bytecode ({})", view.source)
                })?;
                let by_offset: HashMap<u32, (&str, &str)> = ins
                    .iter()
                    .map(|i| (i.offset, (i.opname.as_str(), i.base.as_str())))
                    .collect();
                // `t + b * b - b`: three BINARY_OPs, specialized for this thread's type.
                let binary: Vec<&str> = ins
                    .iter()
                    .filter(|i| i.base == "BINARY_OP")
                    .map(|i| i.opname.as_str())
                    .collect();
                if binary.len() != 3 || !binary.iter().all(|o| o.ends_with(suffix)) {
                    return Err(format!(
                        "{name}: the thread's own copy is not specialized for it: {binary:?}"
                    ));
                }
                // This thread's samples with `add` as the leaf.
                let (mut n, mut base_ok, mut exact_ok) = (0u64, 0u64, 0u64);
                let mut bad = Vec::new();
                for s in &p.stacks {
                    if p.threads[s.thread as usize].thread_id != view.ident {
                        continue;
                    }
                    let Some(&leaf) = s.frames.last() else {
                        continue;
                    };
                    let f = &p.frames[leaf as usize];
                    if f.function != "add" || f.first_line != views.add_first_line {
                        continue;
                    }
                    let (Some(off), Some(op), Some(base)) = (f.offset, &f.opcode, &f.base_opcode)
                    else {
                        return Err(format!("{name}: a sample of add without an opcode"));
                    };
                    n += s.count;
                    match by_offset.get(&off) {
                        Some((tname, tbase)) => {
                            if tbase == base {
                                base_ok += s.count;
                            } else {
                                bad.push(format!("@{off} {base} (own copy: {tbase})"));
                            }
                            if tname == op {
                                exact_ok += s.count;
                            } else {
                                bad.push(format!("@{off} {op} (own copy: {tname})"));
                            }
                        }
                        None => bad.push(format!("@{off}: no instruction there")),
                    }
                    if f.line == add_line && base == "BINARY_OP" {
                        *specialized
                            .entry(name)
                            .or_default()
                            .entry(op.clone())
                            .or_default() += s.count;
                    }
                }
                if n < 200 {
                    return Err(format!("{name}: only {n} samples in add"));
                }
                let base_pct = 100.0 * base_ok as f64 / n as f64;
                let exact_pct = 100.0 * exact_ok as f64 / n as f64;
                if base_pct < 99.0 || exact_pct < 95.0 {
                    bad.truncate(8);
                    return Err(format!(
                        "{name}: base {base_pct:.1}% exact {exact_pct:.1}% of {n}: {bad:?}"
                    ));
                }
                let ops = specialized.get(name).cloned().unwrap_or_default();
                let all: u64 = ops.values().sum();
                let hits: u64 = ops
                    .iter()
                    .filter(|(o, _)| o.ends_with(suffix))
                    .map(|(_, n)| n)
                    .sum();
                if hits < 20 || hits * 100 < all * 95 {
                    return Err(format!(
                        "{name}: BINARY_OP at line {add_line} sampled as {ops:?}, want *{suffix}"
                    ));
                }
                report.push(format!(
                    "{name}: {n} samples in add, exact {exact_pct:.1}%, {hits} of {} \
                     BINARY_OP samples *{suffix}",
                    all
                ));
            }
            Ok(report.join("; "))
        })();
        match result {
            Ok(m) => eprintln!("thread-local bytecode {}: ok {m}", py.label),
            Err(e) => {
                eprintln!("thread-local bytecode {}: FAILED {e}", py.label);
                failures.push(format!("{}: {e}", py.label));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// What the interpreter itself shows of `split.py`'s hot loop once warm: the forms of
/// its instructions (`dis.get_instructions(adaptive=True)`) that are not base opcodes.
fn specialized_forms_seen_by(py: &Python) -> Result<Vec<String>, String> {
    let script = script_path(py, "split.py");
    let code = format!(
        "import dis, sys, runpy\n\
         sys.argv = [{script:?}, '0']\n\
         g = runpy.run_path({script:?})\n\
         for _ in range(200): g['hot70']()\n\
         print(' '.join(sorted({{i.opname for i in dis.get_instructions(g['hot70'], adaptive=True) if i.opname not in dis.opmap}})))"
    );
    let o = Command::new(&py.cmd[0])
        .args(&py.cmd[1..])
        .args(["-c", &code])
        .output()
        .map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).into_owned());
    }
    let out = String::from_utf8_lossy(&o.stdout);
    Ok(out
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .map(String::from)
        .collect())
}

/// 3.13's free-threaded build compiles its specializing interpreter out: its bytecode has
/// the inline caches, but an instruction runs in its generic form whatever its operands.
/// A flamegraph of it must not call those forms "unspecialized" (a missed specialization,
/// as on the GIL build): the legend says the build does not specialize. The interpreter
/// is asked first: no specialized form in the warm loop (the GIL build of 3.13, where
/// present, shows them, e.g. BINARY_OP_ADD_INT).
#[test]
fn a_build_that_does_not_specialize_is_not_called_unspecialized() {
    let mut failures = Vec::new();
    for py in pythons()
        .into_iter()
        .filter(|p| p.major == 3 && p.minor == 13)
    {
        let ft = free_threaded(&py);
        let result = (|| -> Result<String, String> {
            let forms = specialized_forms_seen_by(&py)?;
            if !ft {
                // The control: the GIL build specializes this loop.
                return if forms.is_empty() {
                    Err("the GIL build shows no specialized form".into())
                } else {
                    Ok(format!("GIL build specializes: {}", forms.join(" ")))
                };
            }
            if !forms.is_empty() {
                return Err(format!("the free-threaded build specialized: {forms:?}"));
            }
            let target = Target::spawn(&py, "split.py", &[]);
            let dir = temp_dir();
            let svg = dir.path().join("p.svg");
            let pid = target.pid.to_string();
            let o = pyprof(&[
                "record",
                "-p",
                &pid,
                "-d",
                "1",
                "--opcodes",
                "-f",
                "flamegraph",
                "-o",
                svg.to_str().unwrap(),
            ]);
            if !o.status.success() {
                return Err(format!("pyprof: {}", String::from_utf8_lossy(&o.stderr)));
            }
            let text = std::fs::read_to_string(&svg).map_err(|e| e.to_string())?;
            let legend = text
                .split("<g id=\"legend\">")
                .nth(1)
                .ok_or("no legend in the SVG")?;
            if legend.contains("unspecialized") {
                return Err(format!("the legend says unspecialized: {legend:.400}"));
            }
            if !legend.contains("(free-threaded) does not specialize") {
                return Err(format!("the legend does not say so: {legend:.400}"));
            }
            Ok("no specialized form; the legend says the build does not specialize".into())
        })();
        match result {
            Ok(note) => eprintln!("no specializer {}: ok, {note}", py.label),
            Err(e) => failures.push(format!("{}: {e}", py.label)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
