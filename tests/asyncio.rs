//! `pyprof record --async-aware` against real interpreters: a known task tree
//! (tests/scripts/asyncio_tree.py) must come out as exactly its await chains, on every
//! sampler; the offsets read from the target's `_Py_AsyncioModuleDebugOffsets` must be
//! where the interpreter's own objects are (tests/scripts/asyncio_offsets.py finds them
//! with ctypes); 10,000 pending tasks cost a bounded number of reads; interpreters
//! before 3.14 are refused with one line (and skipped, loudly, by name).

mod common;

use common::*;
use pyprof::profile::ProfileData;
use std::collections::{BTreeMap, BTreeSet};

/// The first version `--async-aware` supports.
const FIRST: (u8, u8) = (3, 14);

fn supported(py: &Python) -> bool {
    py.at_least(FIRST.0, FIRST.1)
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
/// samples outside any task, what was wrong).
fn task_stacks(p: &ProfileData) -> (BTreeMap<Vec<String>, u64>, u64, Vec<String>) {
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
            wrong.push(format!("task frame below a function: {frames:?}"));
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
            wrong.push(format!("under {tasks:?}: {rest:?}"));
            continue;
        }
        *chains.entry(tasks).or_insert(0) += count;
    }
    (chains, outside, wrong)
}

#[test]
fn task_tree_is_recorded_as_its_await_chains() {
    for_each_python("asyncio task tree", |py| {
        if !supported(py) {
            return refused(py);
        }
        let _cpu = exclusive();
        let target = Target::spawn(py, "asyncio_tree.py", &[]);
        let want = expected_chains(py);
        let mut notes = Vec::new();
        for sampler in samplers() {
            let (p, _) = record_json(
                target.pid,
                2.0,
                &[
                    "--async-aware",
                    "--sampler",
                    sampler,
                    "-r",
                    "250",
                    "--no-idle",
                ],
            );
            let (chains, outside, wrong) = task_stacks(&p);
            if !wrong.is_empty() {
                return Err(format!("{sampler}: stacks of a wrong shape: {wrong:?}"));
            }
            let got: BTreeSet<Vec<String>> = chains.keys().cloned().collect();
            if got != want {
                return Err(format!("{sampler}: chains {got:?}, want exactly {want:?}"));
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
            if errors as f64 > 0.05 * (total + errors) as f64 {
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
    });
}

/// Before 3.14: one line naming the version, non-zero exit; and a loud SKIP.
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
    let err = assert_one_line_error(&o, "--async-aware before 3.14");
    let v = format!("{}.{}", py.major, py.minor);
    if !err.contains("3.14") || !err.contains(&v) {
        return Err(format!("the refusal does not name {v} and 3.14: {err}"));
    }
    notice(&format!(
        "SKIP asyncio task tree on python {}: --async-aware supports 3.14+ only (refused with: {})",
        py.label,
        err.trim()
    ));
    Ok("refused with one line".into())
}

/// The offsets pyprof reads from the target's `.AsyncioDebug` section are where the
/// interpreter's own objects keep the task's name, coroutine and awaiter, and the
/// thread's running task (found by the target with ctypes).
#[test]
fn debug_offsets_match_the_interpreters_objects() {
    for_each_python("asyncio offsets", |py| {
        if !supported(py) {
            notice(&format!(
                "SKIP asyncio offsets on python {}: --async-aware supports 3.14+ only",
                py.label
            ));
            return Ok("skipped".into());
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
        let mem = pyprof::process::live::LiveMemory::new(target.pid);
        let o = pyprof::runtime::asyncio::find_debug_offsets(target.pid, &mem)
            .map_err(|e| format!("reading the debug offsets: {e}"))?
            .ok_or("no .AsyncioDebug section found in the target")?;
        let ours = [
            ("task_size", o.task_size),
            ("task_name", o.task_name),
            ("task_coro", o.task_coro),
            ("task_awaited_by", o.task_awaited_by),
            ("tstate_running_task", o.tstate_running_task),
        ];
        for (k, v) in ours {
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

/// 10,000 pending tasks beside one burning task: the chains are still right and the
/// reads per sample stay bounded (the thread's task list is read at most 4 times a
/// second, and only when a stack's task is not known yet).
#[test]
fn ten_thousand_pending_tasks_stay_bounded() {
    for_each_python("asyncio 10k tasks", |py| {
        if !supported(py) {
            notice(&format!(
                "SKIP asyncio 10k tasks on python {}: --async-aware supports 3.14+ only",
                py.label
            ));
            return Ok("skipped".into());
        }
        let _cpu = exclusive();
        let target = Target::spawn(py, "asyncio_tree.py", &["10000"]);
        let mut notes = Vec::new();
        for sampler in samplers() {
            let (p, _) = record_json(
                target.pid,
                2.0,
                &[
                    "--async-aware",
                    "--sampler",
                    sampler,
                    "-r",
                    "200",
                    "--no-idle",
                ],
            );
            let (chains, outside, wrong) = task_stacks(&p);
            if !wrong.is_empty() {
                return Err(format!("{sampler}: stacks of a wrong shape: {wrong:?}"));
            }
            let want = expected_chains(py);
            let got: BTreeSet<Vec<String>> = chains.keys().cloned().collect();
            if got != want {
                return Err(format!("{sampler}: chains {got:?}, want {want:?}"));
            }
            let samples = chains.values().sum::<u64>() + outside;
            let reads_per_sample = p.meta.memory_reads as f64 / samples.max(1) as f64;
            // Listing 10,000 tasks is 10,000 reads; a run of ~400 samples may list each
            // thread's tasks a few times, not once per sample.
            if reads_per_sample > 500.0 {
                return Err(format!(
                    "{sampler}: {reads_per_sample:.0} reads per sample ({} reads, {samples} samples)",
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
