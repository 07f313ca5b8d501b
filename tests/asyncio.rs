//! `pyprof record --async-aware` against real interpreters: a known task tree
//! (tests/scripts/asyncio_tree.py) must come out as exactly its await chains, on every
//! sampler; the offsets read from the target's `_Py_AsyncioModuleDebugOffsets` must be
//! where the interpreter's own objects are (tests/scripts/asyncio_offsets.py finds them
//! with ctypes), and so must the built-in table for 3.7–3.13; 10,000 pending tasks cost a
//! bounded number of reads; interpreters before 3.7 are refused with one line (and
//! skipped, loudly, by name).

mod common;

use common::*;
use pyprof::profile::ProfileData;
use std::collections::{BTreeMap, BTreeSet};

/// The first version `--async-aware` supports.
const FIRST: (u8, u8) = (3, 7);

/// Tasks have names (3.8+): the tests that tell tasks apart by name run.
fn supported(py: &Python) -> bool {
    py.at_least(3, 8)
}

/// Say loudly that test `what` skips `py`: before 3.7, refused; 3.7, whose tasks have
/// no names (each is named after its coroutine and address; the task tree test checks
/// its chains by those).
fn skip(py: &Python, what: &str) -> String {
    if py.at_least(FIRST.0, FIRST.1) {
        notice(&format!(
            "SKIP asyncio {what} on python {}: 3.7's tasks have no names (checked by the task tree test, named after their coroutines)",
            py.label
        ));
    } else {
        notice(&format!(
            "SKIP asyncio {what} on python {}: --async-aware supports 3.7+ only",
            py.label
        ));
    }
    "skipped".into()
}

/// A task's name as a test compares it: 3.7's `worker@0x7f…` without its address.
fn plain(name: &str) -> String {
    match name.split_once("@0x") {
        Some((func, _)) => func.to_string(),
        None => name.to_string(),
    }
}

/// On 3.7, the name asyncio_tree.py's tasks get: their coroutine's function.
fn as_37(name: &str) -> String {
    match name {
        "alpha" | "beta" | "g1" | "t1" => "worker",
        "gamma" => "waiter",
        "g2" => "sleep",
        other => other,
    }
    .to_string()
}

/// The chains of tasks asyncio_tree.py's burning tasks run under, outermost first.
fn expected_chains(py: &Python) -> BTreeSet<Vec<String>> {
    let mut chains = vec![
        vec!["main", "gamma", "alpha"],
        vec!["beta"],
        vec!["gatherer", "g1"],
    ];
    if py.at_least(3, 11) {
        chains.push(vec!["grouper", "t1"]);
    }
    chains
        .into_iter()
        .map(|c| c.into_iter().map(String::from).collect())
        .collect()
}

/// Task samples by chain, and every stack under a task checked for its shape: the task
/// frames first (a chain), then `worker`, then `crunch` or `asyncio.sleep`. Returns (chain → samples,
/// samples outside any task, what was wrong and in how many samples).
fn task_stacks(p: &ProfileData) -> (BTreeMap<Vec<String>, u64>, u64, Vec<(String, u64)>) {
    let mut chains = BTreeMap::new();
    let mut outside = 0;
    let mut wrong = Vec::new();
    for (_, frames, count) in stacks(p) {
        let tasks: Vec<String> = frames
            .iter()
            .take_while(|f| f.0.starts_with("<task "))
            .map(|f| f.0["<task ".len()..f.0.len() - 1].to_string())
            .collect();
        let rest: Vec<&str> = frames[tasks.len()..].iter().map(|f| f.0.as_str()).collect();
        if frames
            .iter()
            .skip(tasks.len())
            .any(|f| f.0.starts_with("<task "))
        {
            wrong.push((format!("task frame below a function: {frames:?}"), count));
            continue;
        }
        if tasks.is_empty() {
            outside += count;
            continue;
        }
        // worker, on its call of crunch or in its `await asyncio.sleep(0)`.
        let ok = rest.first() == Some(&"worker")
            && (rest[1..] == ["crunch"] || ["sleep", "__sleep0"].starts_with(&rest[1..]));
        if !ok {
            wrong.push((format!("under {tasks:?}: {rest:?}"), count));
            continue;
        }
        *chains.entry(tasks).or_insert(0) += count;
    }
    (chains, outside, wrong)
}

/// Record `pid` `--async-aware` (busy threads only) for `secs` with `sampler` at `rate`
/// Hz: the profile, its task samples by chain (stacks of a wrong shape checked), and
/// the samples outside any task.
fn record_tasks(
    pid: i32,
    secs: f64,
    sampler: &str,
    rate: &str,
) -> Result<(ProfileData, BTreeMap<Vec<String>, u64>, u64), String> {
    let (p, _) = record_json(
        pid,
        secs,
        &[
            "--async-aware",
            "--sampler",
            sampler,
            "-r",
            rate,
            "--no-idle",
        ],
    );
    let (chains, outside, wrong) = task_stacks(&p);
    check_shapes(sampler, &wrong, p.meta.samples)?;
    Ok((p, chains, outside))
}

/// Stacks of a wrong shape are an error; except a few (≤ 1% of `total`) with `read`,
/// the sampler that reads a running thread: a frame copied while the thread changed it
/// (a torn read that still looks like a stack) is what it documents.
fn check_shapes(sampler: &str, wrong: &[(String, u64)], total: u64) -> Result<(), String> {
    let n: u64 = wrong.iter().map(|w| w.1).sum();
    if n == 0 || (sampler == "read" && n * 100 <= total) {
        return Ok(());
    }
    Err(format!(
        "{sampler}: {n} of {total} samples in stacks of a wrong shape: {wrong:?}"
    ))
}

#[test]
fn task_tree_is_recorded_as_its_await_chains() {
    for_each_python("asyncio task tree", |py| {
        if !py.at_least(FIRST.0, FIRST.1) {
            return refused(py);
        }
        let _cpu = exclusive();
        let mut notes = vec![check_tree(py, &[])?];
        // 3.12+: the same tree of eager tasks (each ran its first step in its creator's).
        if py.at_least(3, 12) {
            notes.push(format!("eager: {}", check_tree(py, &["eager"])?));
        }
        // The same tree of pure-Python tasks (asyncio.tasks._PyTask).
        notes.push(format!("pytask: {}", check_tree(py, &["pytask"])?));
        Ok(notes.join("; "))
    });
}

/// Record asyncio_tree.py (with `args`) with every sampler and check its chains exactly.
fn check_tree(py: &Python, args: &[&str]) -> Result<String, String> {
    {
        let target = Target::spawn(py, "asyncio_tree.py", args);
        let mut want = expected_chains(py);
        if args.contains(&"pytask") && py.at_least(3, 14) {
            // 3.14+'s TaskGroup finds its parent only among C tasks: no grouper.
            want.remove(&vec!["grouper".to_string(), "t1".to_string()]);
        }
        if !supported(py) {
            want = want
                .iter()
                .map(|c| c.iter().map(|n| as_37(n)).collect())
                .collect();
        }
        let mut notes = Vec::new();
        for sampler in samplers() {
            let (p, chains, outside) = record_tasks(target.pid, 2.0, sampler, "250")?;
            let got: BTreeSet<Vec<String>> = chains
                .keys()
                .map(|c| c.iter().map(|n| plain(n)).collect())
                .collect();
            if got != want || (!supported(py) && chains.len() != want.len()) {
                return Err(format!(
                    "{sampler}: chains {:?}, want exactly {want:?}",
                    chains.keys().collect::<Vec<_>>()
                ));
            }
            let in_tasks: u64 = chains.values().sum();
            let total = in_tasks + outside;
            let errors = p.meta.error_count();
            // Four tasks burn CPU, one at a time: each gets a fair share of the samples.
            for (chain, n) in &chains {
                let share = *n as f64 / in_tasks as f64;
                if share < 0.10 {
                    return Err(format!(
                        "{sampler}: {chain:?} has {n} of {in_tasks} task samples ({:.0}%)",
                        share * 100.0
                    ));
                }
            }
            if (in_tasks as f64) < 0.7 * total as f64 {
                return Err(format!(
                    "{sampler}: only {in_tasks} of {total} samples inside a task"
                ));
            }
            // bpf reads the running task after the kernel copied the stack: a task that
            // switched meanwhile fails the sample (measured up to 4.8%, a debug build).
            let budget = if sampler == "bpf" { 0.08 } else { 0.05 };
            if errors as f64 > budget * (total + errors) as f64 {
                return Err(format!(
                    "{sampler}: {errors} failed samples of {}: {:?}",
                    total + errors,
                    p.meta.errors
                ));
            }
            if !p
                .meta
                .notes
                .iter()
                .any(|n| n.contains("samples recorded as an asyncio task's stack"))
            {
                return Err(format!(
                    "{sampler}: no --async-aware note: {:?}",
                    p.meta.notes
                ));
            }
            notes.push(format!(
                "{sampler}: {in_tasks}/{total} in tasks, {errors} failed, {}",
                chains
                    .iter()
                    .map(|(c, n)| format!("{}={n}", c.join(">")))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        Ok(notes.join("; "))
    }
}

/// Before 3.7: one line naming the version, non-zero exit; and a loud SKIP.
fn refused(py: &Python) -> Result<String, String> {
    let target = Target::spawn(py, "split.py", &[]);
    let pid = target.pid.to_string();
    let o = pyprof(&[
        "record",
        "-p",
        &pid,
        "-d",
        "0.2",
        "--async-aware",
        "-o",
        "/dev/null",
    ]);
    let err = assert_one_line_error(&o, "--async-aware before 3.7");
    let v = format!("{}.{}", py.major, py.minor);
    if !err.contains("3.7") || !err.contains(&v) {
        return Err(format!("the refusal does not name {v} and 3.7: {err}"));
    }
    notice(&format!(
        "SKIP asyncio task tree on python {}: --async-aware supports 3.7+ only (refused with: {})",
        py.label,
        err.trim()
    ));
    Ok("refused with one line".into())
}

/// The offsets pyprof reads from the target's `.AsyncioDebug` section (3.14+), or has in
/// its built-in table (3.8–3.13), are where the interpreter's own objects keep them
/// (found by the target with ctypes): the task's name, coroutine and awaiter, the
/// thread's running task (3.14+); the future a task waits on, the done callbacks, the
/// task in a wakeup callable, a function's closure, and `asyncio.tasks._current_tasks`
/// mapping the running loop (whose `_thread_id` is its thread) to the task (≤3.13).
#[test]
fn debug_offsets_match_the_interpreters_objects() {
    for_each_python("asyncio offsets", |py| {
        if !py.at_least(FIRST.0, FIRST.1) {
            return Ok(skip(py, "offsets"));
        }
        let target = Target::spawn(py, "asyncio_offsets.py", &[]);
        let truth: BTreeMap<String, Vec<u64>> = target
            .lines
            .iter()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let k = it.next()?.to_string();
                Some((k, it.filter_map(|v| v.parse().ok()).collect()))
            })
            .collect();
        let ours = if py.at_least(3, 14) {
            let mem = pyprof::process::live::LiveMemory::new(target.pid);
            let o = pyprof::runtime::asyncio::find_debug_offsets(target.pid, &mem)
                .map_err(|e| format!("reading the debug offsets: {e}"))?
                .ok_or("no .AsyncioDebug section found in the target")?;
            let mut v = vec![
                ("task_size", o.task_size),
                ("task_name", o.task_name),
                ("task_coro", o.task_coro),
                ("task_awaited_by", o.task_awaited_by),
                ("tstate_running_task", o.tstate_running_task),
            ];
            // The built-in callback fields (for pure-Python tasks), where it has them.
            let ft = py.key.contains('t') && !py.key.contains("debug");
            match pyprof::runtime::asyncio::callback_offsets(py.major, py.minor, ft) {
                Some(t) => v.extend([
                    ("fut_callback0", t.fut_callback0),
                    ("fut_callbacks", t.fut_callbacks),
                    ("wakeup_task", t.wakeup_task),
                    ("func_closure", t.func_closure),
                ]),
                None => notice(&format!(
                    "SKIP asyncio callback offsets on python {}: not in the built-in table (pure-Python tasks show without their awaiters)",
                    py.label
                )),
            }
            v
        } else {
            let ft = py.key.contains('t') && !py.key.contains("debug");
            let o = pyprof::runtime::asyncio::table_offsets(py.major, py.minor, ft).ok_or(
                format!("no built-in table for {} (free-threaded: {ft})", py.key),
            )?;
            let t = o.table.expect("a table");
            vec![
                ("task_size", o.task_size),
                ("task_name", o.task_name),
                ("task_coro", o.task_coro),
                ("task_fut_waiter", t.task_fut_waiter),
                ("fut_callback0", t.fut_callback0),
                ("fut_callbacks", t.fut_callbacks),
                ("wakeup_task", t.wakeup_task),
                ("func_closure", t.func_closure),
                ("current_tasks", 1),
                ("loop_thread_id", 1),
            ]
        };
        for &(k, v) in &ours {
            if k == "task_name" && !supported(py) {
                continue; // 3.7: none (the target printed none either)
            }
            let t = truth.get(k).ok_or(format!("the target printed no {k}"))?;
            if !t.contains(&v) {
                return Err(format!(
                    "{k}: pyprof reads {v}, the interpreter has it at {t:?}"
                ));
            }
        }
        Ok(format!("{ours:?}"))
    });
}

/// 10,000 pending tasks beside the task tree: the chains are still right and the reads
/// stay bounded (the task registry is read at most 4 times a second, and only when a
/// stack may run a task not known yet).
#[test]
fn ten_thousand_pending_tasks_stay_bounded() {
    for_each_python("asyncio 10k tasks", |py| {
        if !supported(py) {
            return Ok(skip(py, "10k tasks"));
        }
        let _cpu = exclusive();
        let target = Target::spawn(py, "asyncio_tree.py", &["10000"]);
        let mut notes = Vec::new();
        for sampler in samplers() {
            let (p, chains, outside) = record_tasks(target.pid, 2.0, sampler, "200")?;
            let want = expected_chains(py);
            let got: BTreeSet<Vec<String>> = chains.keys().cloned().collect();
            if got != want {
                return Err(format!("{sampler}: chains {got:?}, want {want:?}"));
            }
            let samples = chains.values().sum::<u64>() + outside;
            let reads_per_sample = p.meta.memory_reads as f64 / samples.max(1) as f64;
            // Bounded: a sample costs tens of reads; the registry of 10,000 tasks (up to
            // 3 reads a task) is read at most 4 times a second, only when a stack runs a
            // task not known yet.
            let bound = 2.0 * 4.0 * 3.0 * 10_000.0 + 100.0 * samples as f64;
            if p.meta.memory_reads as f64 > bound {
                return Err(format!(
                    "{sampler}: {} reads for {samples} samples over 2 s (bound {bound:.0})",
                    p.meta.memory_reads
                ));
            }
            notes.push(format!(
                "{sampler}: {samples} samples, {reads_per_sample:.1} reads/sample, {} failed",
                p.meta.error_count()
            ));
        }
        Ok(notes.join("; "))
    });
}

/// A task cancelled mid-run (tests/scripts/asyncio_cancel.py, SIGUSR1 halfway through a
/// recording): before, `victim` and `survivor` take turns; after, `survivor` and
/// `successor` (awaited by `main`; its task object may reuse the victim's memory). Every
/// sampler records exactly those chains, each in a fair share of the samples, and no
/// sample of the successor under the victim's name.
#[test]
fn a_task_cancelled_mid_run_ends_its_chain() {
    for_each_python("asyncio cancel", |py| {
        if !supported(py) {
            return Ok(skip(py, "cancel"));
        }
        let _cpu = exclusive();
        let mut notes = Vec::new();
        for sampler in samplers() {
            let target = Target::spawn(py, "asyncio_cancel.py", &[]);
            let pid = target.pid;
            let signal = std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(1500));
                // SAFETY: signalling our own child.
                unsafe { libc::kill(pid, libc::SIGUSR1) };
            });
            let (p, _) = record_json(
                pid,
                3.0,
                &[
                    "--async-aware",
                    "--sampler",
                    sampler,
                    "-r",
                    "250",
                    "--no-idle",
                ],
            );
            let _ = signal.join();
            let (chains, outside, mut wrong) = task_stacks(&p);
            // (`main` runs itself for a moment: when it cancels and starts a task.)
            wrong.retain(|w| !w.0.starts_with(r#"under ["main"]: ["main""#));
            check_shapes(sampler, &wrong, p.meta.samples)?;
            let chain =
                |names: &[&str]| -> Vec<String> { names.iter().map(|n| n.to_string()).collect() };
            let want: BTreeSet<Vec<String>> = [
                chain(&["victim"]),
                chain(&["survivor"]),
                chain(&["main", "successor"]),
            ]
            .into_iter()
            .collect();
            // (After `victim.cancel()` main awaits the victim: the victim's last step, its
            // CancelledError leaving `worker`, may be sampled under main.)
            let ending = chain(&["main", "victim"]);
            let got: BTreeSet<Vec<String>> = chains.keys().cloned().collect();
            if !want.is_subset(&got) || got.iter().any(|c| !want.contains(c) && *c != ending) {
                return Err(format!(
                    "{sampler}: chains {got:?}, want exactly {want:?} (and perhaps {ending:?})"
                ));
            }
            let in_tasks: u64 = chains.values().sum();
            let share = |names: &[&str]| chains[&chain(names)] as f64 / in_tasks as f64;
            // The survivor runs throughout (half the time), the other two for about half
            // of the recording each (a quarter).
            let (v, s, n) = (
                share(&["victim"]),
                share(&["survivor"]),
                share(&["main", "successor"]),
            );
            if !(0.35..=0.65).contains(&s)
                || !(0.08..=0.42).contains(&v)
                || !(0.08..=0.42).contains(&n)
            {
                return Err(format!(
                    "{sampler}: shares victim {v:.2}, survivor {s:.2}, successor {n:.2}"
                ));
            }
            let errors = p.meta.error_count();
            if errors as f64 > 0.05 * (in_tasks + outside + errors) as f64 {
                return Err(format!(
                    "{sampler}: {errors} failed samples: {:?}",
                    p.meta.errors
                ));
            }
            if !target
                .later
                .lock()
                .map_or(false, |l| l.iter().any(|l| l == "cancelled"))
            {
                return Err(format!("{sampler}: the target never cancelled its victim"));
            }
            notes.push(format!(
                "{sampler}: victim {v:.2} survivor {s:.2} successor {n:.2}, {errors} failed"
            ));
        }
        Ok(notes.join("; "))
    });
}

/// Chains and per-task shares of a collapsed profile whose task frames are `<task>:NAME:…`
/// (CPython 3.15's `profiling.sampling --async-aware --collapsed`): (chain → samples).
fn sampling_chains(text: &str) -> BTreeMap<Vec<String>, u64> {
    sampling_chains_of(text, true)
}

/// As [`sampling_chains`]; `burning_only`: only the stacks that end in worker's frames.
fn sampling_chains_of(text: &str, burning_only: bool) -> BTreeMap<Vec<String>, u64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some((stack, n)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        let chain: Vec<String> = stack
            .split(';')
            .filter_map(|f| f.strip_prefix("<task>:"))
            .map(|f| f.split(':').next().unwrap_or("").to_string())
            .collect();
        // Only the burning tasks' stacks (those that end in worker's frames).
        if !chain.is_empty() && (!burning_only || stack.contains(":worker:")) {
            *out.entry(chain).or_insert(0) += n;
        }
    }
    out
}

fn shares(chains: &BTreeMap<Vec<String>, u64>) -> BTreeMap<Vec<String>, f64> {
    let total: u64 = chains.values().sum();
    chains
        .iter()
        .map(|(c, n)| (c.clone(), *n as f64 * 100.0 / total.max(1) as f64))
        .collect()
}

/// On 3.15, the same process profiled by pyprof and by CPython's own
/// `python3.15 -m profiling.sampling attach --async-aware --collapsed` (one after the
/// other): the same task chains, each task's share within 3 points.
#[test]
fn agrees_with_cpythons_profiling_sampling_on_315() {
    let Some(py) = pythons()
        .into_iter()
        .find(|p| p.at_least(3, 15) && !p.key.contains('t'))
    else {
        notice("SKIP asyncio vs profiling.sampling: no Python 3.15 (default build) found");
        return;
    };
    let _cpu = exclusive();
    let target = Target::spawn(&py, "asyncio_tree.py", &[]);
    let (p, _) = record_json(
        target.pid,
        3.0,
        &["--async-aware", "-r", "1000", "--no-idle"],
    );
    let (ours, _, wrong) = task_stacks(&p);
    assert!(wrong.is_empty(), "stacks of a wrong shape: {wrong:?}");
    let file = format!("pyprof-asyncio-{}.txt", target.pid);
    let out = pyprof_run_sampling(&py, target.pid, &file);
    let theirs = sampling_chains(&out);
    assert_same_shares("asyncio vs profiling.sampling", &py, &ours, &theirs);
}

/// The same chains in pyprof's profile and profiling.sampling's, each one's share
/// within 3 points.
fn assert_same_shares(
    what: &str,
    py: &Python,
    ours: &BTreeMap<Vec<String>, u64>,
    theirs: &BTreeMap<Vec<String>, u64>,
) {
    let (a, b) = (shares(ours), shares(theirs));
    let keys = |m: &BTreeMap<Vec<String>, f64>| m.keys().cloned().collect::<BTreeSet<_>>();
    assert_eq!(
        keys(&a),
        keys(&b),
        "{what}: task chains differ: pyprof {a:?}, profiling.sampling {b:?}"
    );
    for (chain, share) in &a {
        let other = b[chain];
        assert!(
            (share - other).abs() <= 3.0,
            "{what}: {chain:?}: pyprof {share:.1}%, profiling.sampling {other:.1}% (pyprof {a:?}, theirs {b:?})"
        );
    }
    eprintln!(
        "{what} {}: pyprof {a:?}; profiling.sampling {b:?}",
        py.label
    );
}

/// On 3.15, `--async-mode all` against CPython's own `profiling.sampling attach
/// --async-aware --async-mode all` on the same process (asyncio_tree.py with 3 pending
/// tasks): the same chains of tasks (waiting ones included), each one's share within 3
/// points.
#[test]
fn async_mode_all_agrees_with_cpythons_profiling_sampling_on_315() {
    let Some(py) = pythons()
        .into_iter()
        .find(|p| p.at_least(3, 15) && !p.key.contains('t'))
    else {
        notice("SKIP asyncio all vs profiling.sampling: no Python 3.15 (default build) found");
        return;
    };
    let _cpu = exclusive();
    let target = Target::spawn(&py, "asyncio_tree.py", &["3"]);
    let (p, _) = record_json(
        target.pid,
        3.0,
        &["--async-aware", "--async-mode", "all", "-r", "1000"],
    );
    let mut ours: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    for (tasks, _, n) in all_mode_stacks(&p) {
        *ours.entry(tasks).or_insert(0) += n;
    }
    let file = format!("pyprof-asyncio-all-{}.txt", target.pid);
    let out = run_sampling(&py, target.pid, &file, &["--async-mode", "all"]);
    let theirs = sampling_chains_of(&out, false);
    assert_same_shares("asyncio all vs profiling.sampling", &py, &ours, &theirs);
}

/// Run `python -m profiling.sampling attach --async-aware --collapsed -d 3` on `pid`
/// (inside the interpreter's root, if any) and return what it wrote.
fn pyprof_run_sampling(py: &Python, pid: i32, file: &str) -> String {
    run_sampling(py, pid, file, &[])
}

/// As [`pyprof_run_sampling`], with `extra` arguments.
fn run_sampling(py: &Python, pid: i32, file: &str, extra: &[&str]) -> String {
    let inside = format!("/tmp/{file}");
    let o = std::process::Command::new(&py.cmd[0])
        .args(&py.cmd[1..])
        .args([
            "-m",
            "profiling.sampling",
            "attach",
            "--async-aware",
            "--collapsed",
        ])
        .args(extra)
        .args(["-d", "3", "-o", &inside, &pid.to_string()])
        .output()
        .expect("running profiling.sampling");
    assert!(
        o.status.success(),
        "profiling.sampling failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let outside = match &py.root {
        Some(root) => root.join(inside.trim_start_matches('/')),
        None => std::path::PathBuf::from(&inside),
    };
    let text = std::fs::read_to_string(&outside).expect("profiling.sampling's output");
    let _ = std::fs::remove_file(&outside);
    text
}

/// `pyprof dump --async-aware --json`: the thread running a task names its chain, and
/// its frames (innermost first) are the task's, then `<task NAME>` frames innermost
/// first; the text form shows the chain. A dump between two steps has no task.
#[test]
fn dump_shows_the_running_tasks_chain() {
    for_each_python("asyncio dump", |py| {
        if !py.at_least(FIRST.0, FIRST.1) {
            let target = Target::spawn(py, "split.py", &[]);
            let o = pyprof(&["dump", "-p", &target.pid.to_string(), "--async-aware"]);
            assert_one_line_error(&o, "dump --async-aware before 3.7");
            skip(py, "dump");
            return Ok("refused with one line".into());
        }
        if !supported(py) {
            return Ok(skip(py, "dump"));
        }
        let target = Target::spawn(py, "asyncio_tree.py", &[]);
        let want = expected_chains(py);
        let mut seen = BTreeSet::new();
        for _ in 0..20 {
            let o = pyprof(&[
                "dump",
                "-p",
                &target.pid.to_string(),
                "--async-aware",
                "--json",
            ]);
            if !o.status.success() {
                return Err(format!(
                    "dump failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                ));
            }
            let v: serde_json::Value =
                serde_json::from_slice(&o.stdout).map_err(|e| format!("dump's JSON: {e}"))?;
            let t = &v["threads"][0];
            let Some(tasks) = t["tasks"].as_array() else {
                continue;
            };
            let chain: Vec<String> = tasks
                .iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect();
            if !want.contains(&chain) {
                return Err(format!("dump's chain {chain:?} is none of {want:?}"));
            }
            let names: Vec<String> = t["frames"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["function"].as_str().map(String::from))
                .collect();
            let roots: Vec<String> = chain.iter().rev().map(|n| format!("<task {n}>")).collect();
            let k = names.len().saturating_sub(roots.len());
            if names[k..] != roots[..] || names[..k].last().map(String::as_str) != Some("worker") {
                return Err(format!("dump's frames for {chain:?}: {names:?}"));
            }
            seen.insert(chain);
        }
        if seen.is_empty() {
            return Err("no dump of 20 caught a running task".into());
        }
        let o = pyprof(&["dump", "-p", &target.pid.to_string(), "--async-aware"]);
        let text = String::from_utf8_lossy(&o.stdout);
        // The text form: the chain line, then the thread's frames innermost first (as in
        // the JSON), ending with the task frames, innermost task first.
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        if let Some(at) = lines
            .iter()
            .position(|l| l.starts_with("running asyncio task "))
        {
            let chain: Vec<&str> = lines[at]["running asyncio task ".len()..]
                .split(" > ")
                .collect();
            let frames: Vec<String> = chain.iter().rev().map(|n| format!("<task {n}>")).collect();
            let end = lines[at + 1..]
                .iter()
                .position(|l| {
                    l.is_empty()
                        || l.starts_with("Thread ")
                        || l.starts_with("waiting asyncio tasks")
                })
                .map_or(lines.len(), |e| at + 1 + e);
            let block = &lines[at + 1..end];
            if block.len() < frames.len()
                || block[block.len() - frames.len()..]
                    != frames.iter().map(String::as_str).collect::<Vec<_>>()[..]
            {
                return Err(format!("text dump: {text}"));
            }
        }
        Ok(format!("chains seen: {seen:?}"))
    });
}

/// A stack of `--async-mode all` read back: the task names (outermost first) and the
/// function names of every other frame, in order.
fn all_mode_stacks(p: &ProfileData) -> Vec<(Vec<String>, Vec<String>, u64)> {
    stacks(p)
        .into_iter()
        .filter(|(_, frames, _)| frames.first().is_some_and(|f| f.0.starts_with("<task ")))
        .map(|(_, frames, n)| {
            let (tasks, funcs): (Vec<_>, Vec<_>) = frames
                .into_iter()
                .map(|f| f.0)
                .partition(|f| f.starts_with("<task "));
            let tasks = tasks
                .into_iter()
                .map(|t| t["<task ".len()..t.len() - 1].to_string())
                .collect();
            (tasks, funcs, n)
        })
        .collect()
}

/// `--async-mode all` (asyncio_tree.py with 3 pending tasks): every sample counts every
/// task that awaits no other task once, running (its own stack) or waiting (where its
/// coroutine chain is suspended, under the awaiting tasks and where each awaits). g2 and
/// the pending tasks never run, so each has one sample per sample of the loop's thread;
/// each burning task as many, within 10%. Awaited tasks (main, gamma, gatherer,
/// grouper) are never a chain's last task. A waiting alpha is `main > gamma > alpha`
/// with `main`, `waiter`, `worker`, `sleep` between; g2 sleeps under `gatherer`.
/// `dump --async-aware --json` lists the same waiting tasks.
#[test]
fn async_mode_all_counts_each_waiting_task_once_per_sample() {
    for_each_python("asyncio all tasks", |py| {
        if !supported(py) {
            return Ok(skip(py, "all tasks"));
        }
        let _cpu = exclusive();
        let target = Target::spawn(py, "asyncio_tree.py", &["3"]);
        let mut notes = Vec::new();
        let mut leaves: BTreeSet<Vec<String>> = expected_chains(py);
        leaves.insert(vec!["gatherer".into(), "g2".into()]);
        for sampler in samplers() {
            let (p, _) = record_json(
                target.pid,
                1.5,
                &[
                    "--async-aware",
                    "--async-mode",
                    "all",
                    "--sampler",
                    sampler,
                    "-r",
                    "200",
                ],
            );
            let got = all_mode_stacks(&p);
            let mut by_chain: BTreeMap<Vec<String>, u64> = BTreeMap::new();
            let mut pending = BTreeMap::new();
            for (tasks, _, n) in &got {
                if tasks.len() == 1 && tasks[0].starts_with("Task-") {
                    *pending.entry(tasks[0].clone()).or_insert(0u64) += n;
                } else {
                    *by_chain.entry(tasks.clone()).or_insert(0) += n;
                }
            }
            let chains: BTreeSet<Vec<String>> = by_chain.keys().cloned().collect();
            if chains != leaves || pending.len() != 3 {
                return Err(format!(
                    "{sampler}: chains {chains:?} and pending {pending:?}, want {leaves:?} and 3 pending"
                ));
            }
            let g2 = by_chain[&vec!["gatherer".to_string(), "g2".to_string()]];
            if g2 < 100 {
                return Err(format!("{sampler}: only {g2} samples of g2"));
            }
            for (what, n) in by_chain
                .iter()
                .map(|(c, n)| (c.join(">"), *n))
                .chain(pending.clone())
            {
                let r = n as f64 / g2 as f64;
                if !(0.9..=1.1).contains(&r) {
                    return Err(format!(
                        "{sampler}: {what} has {n} samples, g2 {g2}: every task is counted once a sample ({by_chain:?}, {pending:?})"
                    ));
                }
            }
            let has = |tasks: &[&str], funcs: &[&str]| {
                got.iter().any(|(t, f, _)| t == tasks && f == funcs)
            };
            if !has(&["gatherer", "g2"], &["gatherer", "sleep"]) {
                return Err(format!("{sampler}: no waiting g2 under gatherer: {got:?}"));
            }
            if !has(
                &["main", "gamma", "alpha"],
                &["main", "waiter", "worker", "sleep", "__sleep0"],
            ) {
                let alpha: Vec<_> = got
                    .iter()
                    .filter(|g| g.0.last().is_some_and(|n| n == "alpha"))
                    .collect();
                return Err(format!(
                    "{sampler}: no waiting alpha under main and gamma: {alpha:?}"
                ));
            }
            if !p
                .meta
                .notes
                .iter()
                .any(|n| n.contains("samples of waiting tasks"))
            {
                return Err(format!(
                    "{sampler}: no --async-mode all note: {:?}",
                    p.meta.notes
                ));
            }
            notes.push(format!("{sampler}: g2 {g2}, {by_chain:?}"));
        }
        // dump: the waiting tasks, where each waits.
        let o = pyprof(&[
            "dump",
            "-p",
            &target.pid.to_string(),
            "--async-aware",
            "--json",
        ]);
        if !o.status.success() {
            return Err(format!(
                "dump failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).map_err(|e| e.to_string())?;
        let waiting = v["threads"][0]["waiting_tasks"]
            .as_array()
            .ok_or(format!("dump lists no waiting tasks: {v}"))?;
        let find = |chain: &[&str]| {
            waiting.iter().find(|t| {
                t["tasks"].as_array().is_some_and(|a| {
                    a.iter()
                        .map(|x| x.as_str().unwrap_or(""))
                        .eq(chain.iter().copied())
                })
            })
        };
        let g2 = find(&["gatherer", "g2"]).ok_or(format!("dump: no g2 in {waiting:?}"))?;
        if g2["frames"][0]["function"] != "sleep" || g2["awaited"] != false {
            return Err(format!("dump: g2 is {g2}"));
        }
        let gamma = find(&["main", "gamma"]).ok_or(format!("dump: no gamma in {waiting:?}"))?;
        if gamma["frames"][0]["function"] != "waiter" || gamma["awaited"] != true {
            return Err(format!("dump: gamma is {gamma}"));
        }
        let pending = waiting
            .iter()
            .filter(|t| {
                t["tasks"][0]
                    .as_str()
                    .is_some_and(|n| n.starts_with("Task-"))
            })
            .count();
        if pending != 3 {
            return Err(format!(
                "dump: {pending} pending tasks, want 3: {waiting:?}"
            ));
        }
        notes.push(format!("dump: {} waiting tasks", waiting.len()));
        Ok(notes.join("; "))
    });
}

/// `wait_for` and `shield` (tests/scripts/asyncio_waitfor.py): the awaited task's chain
/// goes through the task awaiting it, on every interpreter 3.8+ and sampler: ≤3.11's
/// wait_for links them only by a private waiter future (a `functools.partial` callback),
/// shield by an outer future (a closure callback; 3.14+ record the awaiter itself).
#[test]
fn wait_for_and_shield_keep_the_awaiting_task_in_the_chain() {
    for_each_python("asyncio wait_for/shield", |py| {
        if !supported(py) {
            return Ok(skip(py, "wait_for/shield"));
        }
        let _cpu = exclusive();
        let target = Target::spawn(py, "asyncio_waitfor.py", &[]);
        let want: BTreeSet<Vec<String>> =
            [["main", "timer", "timed"], ["main", "shielder", "shielded"]]
                .iter()
                .map(|c| c.iter().map(|s| s.to_string()).collect())
                .collect();
        let mut notes = Vec::new();
        for sampler in samplers() {
            let (_, chains, _) = record_tasks(target.pid, 1.0, sampler, "250")?;
            let got: BTreeSet<Vec<String>> = chains.keys().cloned().collect();
            if got != want {
                return Err(format!("{sampler}: chains {got:?}, want exactly {want:?}"));
            }
            notes.push(format!("{sampler}: {chains:?}"));
        }
        Ok(notes.join("; "))
    });
}
