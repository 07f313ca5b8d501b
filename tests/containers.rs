//! A target in its own PID namespace (and, for the chroot interpreters, its own mount
//! namespace and root), profiled from the host with the host's pid, as one profiles a
//! container from the host or a debug pod: thread ids map through NSpid, so idle
//! filtering, thread names and states, dump and every sampler see the right threads.

mod common;

use common::*;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The interpreters the containers test runs on: 3.8, 3.11, 3.12, 3.13 and the chroot ones.
fn container_pythons() -> Vec<Python> {
    pythons()
        .into_iter()
        .filter(|p| {
            p.root.is_some()
                || matches!(p.label.as_str(), "3.8.18" | "3.11.7" | "3.12.1" | "3.13.0")
        })
        .filter(|p| !p.key.contains("debug"))
        .collect()
}

/// A target run as a container: in new PID (and mount) namespaces. Returns the unshare
/// process, the host pid of the Python process, and the lines it printed before ready.
struct Contained {
    child: Child,
    pid: i32,
    lines: Vec<String>,
}

impl Drop for Contained {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The namespace's init (Python) dies with it; make sure.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

fn contained(py: &Python, script: &str) -> Contained {
    contained_args(py, script, &[])
}

fn contained_args(py: &Python, script: &str, args: &[&str]) -> Contained {
    use std::io::{BufRead, BufReader};
    let path = script_path(py, script);
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork"]);
    match &py.root {
        // A container image: its own mount namespace, /proc mounted inside its root.
        Some(root) => {
            cmd.arg("--mount");
            cmd.arg(format!("--mount-proc={}/proc", root.display()));
        }
        None => {
            cmd.arg("--mount-proc");
        }
    }
    cmd.args(&py.cmd).arg(&path).args(args);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("unshare (util-linux)");
    let out = child.stdout.take().unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        if line.trim() == "ready" {
            break;
        }
        lines.push(line);
    }
    // unshare --fork: Python is unshare's child (pid 1 of the namespace); with chroot,
    // the chroot process execs Python with the same pid.
    let upid = child.id();
    let mut pid = 0;
    assert!(
        wait_until(Duration::from_secs(10), || {
            let kids = std::fs::read_to_string(format!("/proc/{upid}/task/{upid}/children"))
                .unwrap_or_default();
            pid = kids
                .split_whitespace()
                .next()
                .and_then(|k| k.parse().ok())
                .unwrap_or(0);
            pid != 0
        }),
        "{}: no Python inside the namespace",
        py.label
    );
    std::thread::sleep(Duration::from_millis(200));
    Contained { child, pid, lines }
}

/// The thread ids the target printed: name → id in its namespace.
fn ns_ids(c: &Contained) -> std::collections::HashMap<String, u64> {
    c.lines
        .iter()
        .filter_map(|l| {
            let mut it = l.strip_prefix("thread ")?.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

#[test]
fn threads_of_a_target_in_a_pid_namespace_are_the_right_threads() {
    let _cpu = exclusive();
    let pys = container_pythons();
    assert!(
        pys.len() >= 5,
        "interpreters for the containers test: {:?}",
        pys.iter().map(|p| &p.label).collect::<Vec<_>>()
    );
    for_each_python("container", |py| {
        if !pys.iter().any(|p| p.label == py.label) {
            return Ok("not one of the container interpreters".into());
        }
        let c = contained(py, "container.py");
        let ns = ns_ids(&c);
        let mut notes = Vec::new();
        for sampler in samplers() {
            // Idle filtering: the sleeping thread and the waiting main thread are
            // dropped, the busy one kept, in nearly every tick.
            let (p, _, cpu) = record_json_cpu(
                c.pid,
                1.0,
                &["-r", "200", "--sampler", sampler, "--no-idle"],
            );
            let mut by_thread = std::collections::BTreeMap::new();
            for s in &p.stacks {
                let t = &p.threads[s.thread as usize];
                *by_thread
                    .entry(t.name.clone().unwrap_or_default())
                    .or_insert(0) += s.count;
            }
            let busy = by_thread.get("busy").copied().unwrap_or(0);
            if by_thread.keys().any(|k| k != "busy")
                || (busy as f64) < min_samples(sampler, 200.0, 1.0, cpu)
            {
                return Err(format!(
                    "{sampler}: threads sampled {by_thread:?} (CPU {cpu:.2} s)"
                ));
            }
            // Ids: the host's, with the namespace's beside it.
            for t in &p.threads {
                let name = t.name.clone().unwrap_or_default();
                if let (Some(want), true) = (ns.get(&name), py.at_least(3, 8)) {
                    if t.ns_id != Some(*want) || t.native_id == Some(*want) {
                        return Err(format!(
                            "{sampler}: thread {name}: ids {:?} / ns {:?}, the target says {want}",
                            t.native_id, t.ns_id
                        ));
                    }
                }
            }
            // With --idle every thread, named, in every tick.
            let (p, _) = record_json(c.pid, 0.5, &["-r", "200", "--sampler", sampler]);
            let names: std::collections::BTreeSet<String> =
                p.threads.iter().filter_map(|t| t.name.clone()).collect();
            for want in ["MainThread", "busy", "sleeper"] {
                if !names.contains(want) {
                    return Err(format!("{sampler} --idle: threads {names:?}"));
                }
            }
            notes.push(format!("{sampler} busy {busy}"));
        }
        // dump: each thread's state from the right OS thread.
        let o = pyprof(&["dump", "-p", &c.pid.to_string(), "--json"]);
        if !o.status.success() {
            return Err(format!("dump: {}", String::from_utf8_lossy(&o.stderr)));
        }
        let d: serde_json::Value = serde_json::from_slice(&o.stdout).map_err(|e| e.to_string())?;
        for t in d["threads"].as_array().cloned().unwrap_or_default() {
            let name = t["name"].as_str().unwrap_or("?");
            let state = t["state"].as_str().unwrap_or("?");
            let ok = match name {
                "busy" => state.starts_with("running"),
                "sleeper" | "MainThread" => state == "idle",
                _ => true,
            };
            if !ok {
                return Err(format!("dump: {name} is {state}: {t}"));
            }
        }
        Ok(notes.join(", "))
    });
}

/// `--subprocesses` inside the namespace: multiprocessing workers of a contained parent are
/// found (their host pids, through the parent's children) and labelled by host pid.
#[test]
fn subprocesses_of_a_contained_target_are_followed() {
    let _cpu = exclusive();
    for_each_python("container children", |py| {
        if !(py.label == "3.12.1" || py.label == "3.15") {
            return Ok("not one of 3.12.1, 3.15".into());
        }
        let c = contained_args(py, "multiproc.py", &["4"]);
        // The workers (the parent's descendants, by host pid: 3.14+ starts them from a
        // forkserver) and their CPU time.
        let mut kids: Vec<i32> = Vec::new();
        let mut todo = vec![c.pid];
        while let Some(p) = todo.pop() {
            for k in std::fs::read_to_string(format!("/proc/{p}/task/{p}/children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|k| k.parse().ok())
            {
                kids.push(k);
                todo.push(k);
            }
        }
        let before: Vec<f64> = kids.iter().map(|&k| cpu_seconds(k)).collect();
        let (p, _) = record_json(c.pid, 1.5, &["-r", "100", "-s", "--no-idle"]);
        let cpu: std::collections::HashMap<i32, f64> = kids
            .iter()
            .zip(&before)
            .map(|(&k, b)| (k, cpu_seconds(k) - b))
            .collect();
        let mut procs = std::collections::BTreeMap::new();
        for s in &p.stacks {
            let leaf = &p.frames[*s.frames.last().unwrap() as usize];
            if leaf.function == "worker_task" {
                let label = p.threads[s.thread as usize]
                    .process
                    .clone()
                    .unwrap_or_default();
                *procs.entry(label).or_insert(0u64) += s.count;
            }
        }
        if procs.len() != 2 {
            return Err(format!("worker processes sampled: {procs:?}"));
        }
        for (label, n) in &procs {
            // "process PID (...)": the host's pid, which is not a small namespace pid.
            let pid: i32 = label
                .strip_prefix("process ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            if !kids.contains(&pid) {
                return Err(format!(
                    "{label}: not the host pid of a descendant ({kids:?})"
                ));
            }
            let used = cpu.get(&pid).copied().unwrap_or(0.0);
            let need = min_samples(&p.meta.sampler, 100.0, 1.5, used);
            if (*n as f64) < need {
                return Err(format!(
                    "{label}: {n} samples in 1.5 s at 100 Hz (need {need:.0}; CPU {used:.2} s)"
                ));
            }
        }
        Ok(format!("{procs:?}"))
    });
}
