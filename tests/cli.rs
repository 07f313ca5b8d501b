//! What users expect around the core: subprocesses, progress on a terminal, completions,
//! help with examples.

mod common;

use common::*;
use std::process::Command;

#[test]
fn subprocesses_are_followed_and_labelled() {
    for py in pythons() {
        let dir = temp_dir();
        let out = dir.path().join("mp.json");
        let script = script_path(&py, "multiproc.py");
        let mut args = vec![
            "record",
            "--subprocesses",
            "-r",
            "100",
            "-f",
            "json",
            "-o",
            out.to_str().unwrap(),
            "--",
        ];
        args.extend(py.cmd.iter().map(|s| s.as_str()));
        args.extend([script.as_str(), "2"]);
        let o = pyprof(&args);
        assert!(
            o.status.success(),
            "{}: {}",
            py.label,
            String::from_utf8_lossy(&o.stderr)
        );
        let p = read_profile(&out);
        let mut procs = std::collections::BTreeSet::new();
        let mut worker = 0;
        for s in &p.stacks {
            let t = &p.threads[s.thread as usize];
            let leaf = &p.frames[*s.frames.last().unwrap() as usize];
            if leaf.function == "worker_task" {
                worker += s.count;
                procs.insert(t.process.clone().unwrap_or_default());
            }
        }
        assert!(
            procs.len() >= 2 && procs.iter().all(|l| l.starts_with("process ")),
            "{}: {procs:?}",
            py.label
        );
        assert!(
            worker > 100,
            "{}: {worker} samples in the workers",
            py.label
        );
        // Collapsed stacks start with the process.
        let o = pyprof(&["report", out.to_str().unwrap(), "-f", "collapsed"]);
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.lines()
                .any(|l| l.starts_with("process ") && l.contains("worker_task")),
            "{}",
            py.label
        );
        eprintln!(
            "subprocesses {}: {} processes, {worker} worker samples",
            py.label,
            procs.len()
        );
    }
}

/// Run `pyprof record` under a pseudo-terminal (util-linux `script`), as a user at a
/// terminal would, and return what appeared on it.
fn on_terminal(args: &str) -> String {
    let cmd = format!("{} {args}", pyprof_bin().display());
    let o = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .expect("script(1)");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn progress_on_a_terminal_only() {
    let py = pythons()
        .into_iter()
        .find(|p| p.at_least(3, 8))
        .expect("python");
    let target = Target::spawn(&py, "split.py", &[]);
    let dir = temp_dir();
    let out = dir.path().join("p.svg");
    let common = format!("record -p {} -d 1.2 -o {}", target.pid, out.display());
    let tty = on_terminal(&common);
    assert!(
        tty.contains("samples (") && tty.contains("0 errors") && tty.contains(" s left)"),
        "no progress on a terminal: {tty}"
    );
    let quiet = on_terminal(&format!("{common} --quiet"));
    assert!(
        !quiet.contains("Ctrl-C to stop"),
        "progress despite --quiet: {quiet}"
    );
    // Not a terminal: only the closing summary.
    let o = pyprof(&common.split(' ').collect::<Vec<_>>());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("Ctrl-C to stop") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn shell_completions_and_help_with_examples() {
    for shell in ["bash", "zsh", "fish"] {
        let o = pyprof(&["completions", shell]);
        assert!(o.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains("record") && text.contains("nonblocking") && text.contains("annotate"),
            "{shell}"
        );
    }
    // The bash script loads in bash and completes subcommands.
    let o = pyprof(&["completions", "bash"]);
    let dir = temp_dir();
    let f = dir.path().join("pyprof.bash");
    std::fs::write(&f, &o.stdout).unwrap();
    let check = format!(
        "source {}; COMP_WORDS=(pyprof rec); COMP_CWORD=1; _pyprof pyprof rec pyprof; echo \"${{COMPREPLY[@]}}\"",
        f.display()
    );
    let o = Command::new("bash").args(["-c", &check]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("record"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for args in [
        vec!["--help"],
        vec!["record", "--help"],
        vec!["annotate", "--help"],
    ] {
        let o = pyprof(&args);
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && text.contains("Examples:") && text.contains("pyprof "),
            "{args:?}"
        );
    }
}

#[test]
fn dump_shows_every_thread_with_name_id_state_and_stack() {
    for py in pythons() {
        let target = Target::spawn(&py, "threads.py", &[]);
        let o = pyprof(&["dump", "--pid", &target.pid.to_string(), "--json"]);
        assert!(
            o.status.success(),
            "{}: {}",
            py.label,
            String::from_utf8_lossy(&o.stderr)
        );
        let d: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let threads = d["threads"].as_array().unwrap();
        assert_eq!(threads.len(), 4, "{}", py.label);
        let mut seen = std::collections::BTreeMap::new();
        for t in threads {
            let leaf = t["frames"][0]["function"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let name = t["name"].as_str().unwrap_or("?").to_string();
            assert!(
                t["native_id"].as_u64().is_some(),
                "{}: no OS id: {t}",
                py.label
            );
            // thread_c wakes every millisecond: it may be caught running.
            if leaf != "thread_c" {
                assert_eq!(t["state"], "idle", "{}: {t}", py.label);
            }
            seen.insert(leaf, name);
        }
        for (leaf, name) in [
            ("thread_a", "worker-a"),
            ("thread_b", "worker-b"),
            ("thread_c", "worker-c"),
            ("<module>", "MainThread"),
        ] {
            assert_eq!(
                seen.get(leaf).map(|s| s.as_str()),
                Some(name),
                "{}: {seen:?}",
                py.label
            );
        }
        // Text form: a stack per thread, innermost first, file names as profiles show
        // them (relative to the main script's folder), full with --full-filenames.
        let o = pyprof(&["dump", "--pid", &target.pid.to_string()]);
        let text = String::from_utf8_lossy(&o.stdout);
        let line = marker_line("threads.py", "a");
        assert!(
            text.contains("Thread worker-a (tid ")
                && !tid_of(&text, "worker-a").is_empty()
                && text.contains(&format!("    thread_a (threads.py:{line})\n")),
            "{}: {text}",
            py.label
        );
        let block = text.split("Thread worker-a").nth(1).unwrap_or_default();
        let first = block.lines().nth(1).unwrap_or_default();
        assert!(
            first.starts_with("    thread_a ("),
            "{}: innermost first: {text}",
            py.label
        );
        let o = pyprof(&["dump", "--pid", &target.pid.to_string(), "--full-filenames"]);
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains(&format!(
                "thread_a ({}:{line})",
                script_path(&py, "threads.py")
            )),
            "{}: {text}",
            py.label
        );
        // A running thread holding the GIL.
        let busy = Target::spawn(&py, "split.py", &[]);
        let o = pyprof(&["dump", "--pid", &busy.pid.to_string(), "--json"]);
        let d: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let t = &d["threads"][0];
        assert!(
            t["state"].as_str().unwrap().starts_with("running"),
            "{}: {t}",
            py.label
        );
        if !py.label.ends_with('t') {
            assert_eq!(t["gil"], true, "{}: {t}", py.label);
        }
        eprintln!("dump {}: ok {seen:?}", py.label);
    }
}

#[test]
fn diff_of_two_versions_shows_what_changed() {
    let all = pythons();
    let (Some(old), Some(new)) = (
        all.iter().find(|p| (p.major, p.minor) == (3, 10)),
        all.iter().find(|p| (p.major, p.minor) == (3, 12)),
    ) else {
        eprintln!("SKIP diff: needs Python 3.10 and 3.12");
        return;
    };
    let dir = temp_dir();
    let lesson = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/lessons/float_arithmetic.py");
    let mut paths = Vec::new();
    for py in [old, new] {
        let out = dir.path().join(format!("{}.json", py.label));
        let mut args = vec![
            "record",
            "--opcodes",
            "-r",
            "300",
            "-f",
            "json",
            "-o",
            out.to_str().unwrap(),
            "--",
        ];
        args.extend(py.cmd.iter().map(|s| s.as_str()));
        let l = lesson.display().to_string();
        args.extend([l.as_str(), "1.5"]);
        let o = pyprof(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        paths.push(out);
    }
    let svg = dir.path().join("diff.svg");
    let o = pyprof(&[
        "diff",
        paths[0].to_str().unwrap(),
        paths[1].to_str().unwrap(),
        "-o",
        svg.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = String::from_utf8_lossy(&o.stdout);
    // Opcodes are compared by base instruction: 3.10's BINARY_MULTIPLY and 3.12's
    // BINARY_OP * are one row, with the specialized form 3.12 ran behind it.
    let row = table
        .lines()
        .find(|l| l.contains("BINARY_OP *"))
        .unwrap_or_else(|| panic!("{table}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_ne!(cols[0], "0.0%", "{row}");
    assert_ne!(cols[1], "0.0%", "{row}");
    assert!(
        row.contains("BINARY_MULTIPLY") && row.contains("BINARY_OP_MULTIPLY_FLOAT"),
        "{row}"
    );
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.contains("<svg") && svg.contains("pyprof diff") && svg.contains("dot_floats"));
}

/// The tid a dump's text gives a thread.
fn tid_of(text: &str, name: &str) -> String {
    text.split(&format!("Thread {name} (tid "))
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn dump_locals_shows_simple_values() {
    for py in pythons() {
        let target = Target::spawn(&py, "locals.py", &[]);
        let o = pyprof(&[
            "dump",
            "--pid",
            &target.pid.to_string(),
            "--locals",
            "--json",
        ]);
        assert!(
            o.status.success(),
            "{}: {}",
            py.label,
            String::from_utf8_lossy(&o.stderr)
        );
        let d: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let t = &d["threads"][0];
        assert_eq!(t["frames"][0]["function"], "inspect_me", "{}", py.label);
        // Frames innermost first; each with its arguments (first, `arg: true`) and locals.
        let vars = t["frames"][0]["locals"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no locals: {t}", py.label));
        let locals: std::collections::BTreeMap<String, (String, bool)> = vars
            .iter()
            .map(|v| {
                (
                    v["name"].as_str().unwrap().to_string(),
                    (
                        v["value"].as_str().unwrap().to_string(),
                        v["arg"].as_bool().unwrap(),
                    ),
                )
            })
            .collect();
        let want = [
            ("count", "42", true),
            ("ratio", "1.5", true),
            ("label", "'hello'", true),
            ("flag", "True", true),
            ("nothing", "None", true),
            ("items", "[1, 2, 3]", true),
            ("big", "1099511627776", true),
            ("rest", "('extra',)", true),
            ("opts", "{'key': 'v'}", true),
            ("negative", "-7", false),
            (
                "nested",
                "{'a': 1, 'b': [1, (2,), {'c': None}], 'u': 'h\u{e9}llo'}",
                false,
            ),
            (
                "many",
                "[0, 1, 2, 3, 4, 5, 6, 7, \u{2026} (20 items)]",
                false,
            ),
            ("uni", "'caf\u{e9}'", false),
            ("empty", "()", false),
        ];
        for (k, v, arg) in want {
            assert_eq!(
                locals.get(k),
                Some(&(v.to_string(), arg)),
                "{}: {k} in {locals:?}",
                py.label
            );
        }
        // The text: arguments apart from locals, containers as values, file names short.
        let o = pyprof(&["dump", "--pid", &target.pid.to_string(), "--locals"]);
        let text = String::from_utf8_lossy(&o.stdout);
        let args_at = text.find("        Arguments:\n            count = 42\n");
        let locals_at = text.find("        Locals:\n            negative = -7\n");
        assert!(
            args_at.is_some() && locals_at > args_at,
            "{}: {text}",
            py.label
        );
        assert!(
            text.contains(" 1 thread · frames innermost first")
                && text.contains("    inspect_me (locals.py:")
                && text.contains("            nested = {'a': 1, 'b': [1, (2,), {'c': None}]"),
            "{}: {text}",
            py.label
        );
        let o = pyprof(&["dump", "--pid", &target.pid.to_string(), "--full-filenames"]);
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains(&format!(
                "    inspect_me ({}:",
                script_path(&py, "locals.py")
            )),
            "{}: {text}",
            py.label
        );
        eprintln!("locals {}: ok", py.label);
    }
}
