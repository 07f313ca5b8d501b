//! Native code called from bytecode: a sample whose thread was executing outside the
//! interpreter (a C extension, a library, a system call) is counted, with `--opcodes`, as
//! native code the leaf instruction called, not as the instruction's own time. The bpf
//! sampler copies the thread's user instruction pointer in the same kernel event; ptrace
//! reads it from the paused thread's registers; plain reads cannot see it, and say so.
//!
//! Real code nobody here wrote does the native work: zlib (libz) on every interpreter, and
//! numpy (its BLAS and its ufuncs, installed from PyPI by scripts/install-numpy.sh into a
//! venv under target/) on 3.12.

mod common;

use common::*;
use pyprof::profile::{InstructionStat, ProfileData};
use std::process::Command;

/// (samples, of them native, native samples by file) of the instructions at `line` of
/// `function`.
fn at_line(d: &ProfileData, function: &str, line: i32) -> (u64, u64, Vec<(String, u64)>) {
    let mut objs: std::collections::BTreeMap<String, u64> = Default::default();
    let (mut n, mut native) = (0, 0);
    for s in d
        .instruction_stats()
        .iter()
        .filter(|s: &&InstructionStat| s.function.ends_with(function) && s.line == line)
    {
        n += s.samples;
        native += s.native_samples();
        for (o, k) in &s.native {
            *objs.entry(o.clone()).or_insert(0) += k;
        }
    }
    let mut objs: Vec<(String, u64)> = objs.into_iter().collect();
    objs.sort_by_key(|b| std::cmp::Reverse(b.1));
    (n, native, objs)
}

fn share(part: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        part as f64 / of as f64
    }
}

fn report(profile: &std::path::Path, format: &str, extra: &[&str]) -> String {
    let p = profile.display().to_string();
    let mut args = vec![format, p.as_str()];
    if format == "report" {
        args = vec!["report", "-f", "opcodes", p.as_str()];
    }
    args.extend(extra);
    let o = pyprof(&args);
    assert!(
        o.status.success(),
        "pyprof {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn time_in_a_library_is_native_code_the_instruction_called() {
    let _x = exclusive();
    let compress = marker_line("calls_c.py", " compress");
    let loop_line = marker_line("calls_c.py", " loop");
    for_each_python("native", |py| {
        let mut notes = Vec::new();
        for sampler in samplers() {
            let mut t = Target::spawn(py, "calls_c.py", &[]);
            let (d, _) = record_json(
                t.pid,
                2.0,
                &["--opcodes", "--sampler", sampler, "-r", "400", "--no-idle"],
            );
            t.kill();
            let m = &d.meta;
            let (c_n, c_native, c_objs) = at_line(&d, "compress", compress);
            let (l_n, l_native, l_objs) = at_line(&d, "loop", loop_line);
            // A debug build fills memory it allocates and frees with libc's memset: the
            // loop's int objects make libc time there, the interpreter's own work.
            let l_libc: u64 = l_objs
                .iter()
                .filter(|o| o.0.starts_with("libc."))
                .map(|o| o.1)
                .sum();
            let debug = py.key.contains("debug");
            if c_n < 50 || l_n < 50 {
                return Err(format!(
                    "{sampler}: too few samples: compress {c_n}, loop {l_n} of {}",
                    m.samples
                ));
            }
            if sampler == "read" {
                // Registers are not seen: nothing is called native, and the report says why.
                if m.ip_seen != 0 || d.stacks.iter().any(|s| s.native.is_some()) {
                    return Err(format!(
                        "read: ip_seen {} yet it reads no registers",
                        m.ip_seen
                    ));
                }
                let dir = temp_dir();
                let path = dir.path().join("p.json");
                std::fs::write(&path, serde_json::to_string(&d).unwrap()).unwrap();
                let text = report(&path, "report", &[]);
                if !text.contains("was not seen") {
                    return Err(format!(
                        "read: the report does not say registers were not seen:\n{text}"
                    ));
                }
                notes.push("read: not seen, said".to_string());
                continue;
            }
            if share(m.ip_seen, m.ip_seen + m.ip_unseen) < 0.95 {
                return Err(format!(
                    "{sampler}: where the thread was seen in {} of {} samples",
                    m.ip_seen,
                    m.ip_seen + m.ip_unseen
                ));
            }
            let top = c_objs.first().map(|o| o.0.as_str()).unwrap_or("");
            if share(c_native, c_n) < 0.8 || !top.starts_with("libz") {
                return Err(format!(
                    "{sampler}: zlib.compress's CALL: {c_native} of {c_n} samples native, in {c_objs:?} (want ≥ 80%, mostly libz)"
                ));
            }
            let libc_allowed = if debug { 0.15 } else { 0.0 };
            if share(l_native - l_libc, l_n) > 0.05 || share(l_libc, l_n) > 0.05 + libc_allowed {
                return Err(format!(
                    "{sampler}: the pure-Python loop: {l_native} of {l_n} samples called native, in {l_objs:?}"
                ));
            }
            notes.push(format!(
                "{sampler}: compress {c_native}/{c_n} native ({top}), loop {l_native}/{l_n}"
            ));
        }
        Ok(notes.join("; "))
    });
}

/// numpy 3.12 from scripts/install-numpy.sh: its python, or a failure by name.
fn numpy_python() -> String {
    let o = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/install-numpy.sh"
        ))
        .output()
        .expect("running scripts/install-numpy.sh");
    eprint!("{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("numpy 3.12: ").map(String::from))
        .expect("scripts/install-numpy.sh installed no numpy for 3.12 (see its lines above)")
}

#[test]
fn numpy_time_is_in_its_blas_and_ufuncs_not_in_the_instruction() {
    let python = numpy_python();
    let _x = exclusive();
    let script = scripts_dir().join("native.py").display().to_string();
    let matmul = marker_line("native.py", " matmul");
    let ufunc = marker_line("native.py", " ufunc");
    let loop_line = marker_line("native.py", " loop");
    let mut failures = Vec::new();
    for sampler in samplers() {
        let dir = temp_dir();
        let path = dir.path().join("p.json");
        let out = path.display().to_string();
        let o = Command::new(pyprof_bin())
            .args([
                "record",
                "-q",
                "--opcodes",
                "--sampler",
                sampler,
                "-r",
                "400",
            ])
            .args(["-f", "json", "-o", &out, "--", &python, &script, "4"])
            .env("OPENBLAS_NUM_THREADS", "1")
            .output()
            .expect("running pyprof");
        assert!(
            o.status.success(),
            "{sampler}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let d = read_profile(&path);
        let (m_n, m_native, m_objs) = at_line(&d, "matmul_heavy", matmul);
        let (u_n, u_native, u_objs) = at_line(&d, "ufunc_heavy", ufunc);
        let (l_n, l_native, _) = at_line(&d, "python_loop", loop_line);
        eprintln!(
            "numpy {sampler}: matmul {m_native}/{m_n} {m_objs:?}; ufunc {u_native}/{u_n} {u_objs:?}; loop {l_native}/{l_n}"
        );
        let mut fail = |s: String| failures.push(format!("{sampler}: {s}"));
        if m_n < 100 || u_n < 100 || l_n < 100 {
            fail(format!(
                "too few samples: matmul {m_n}, ufunc {u_n}, loop {l_n}"
            ));
            continue;
        }
        let opcodes = report(&path, "report", &[]);
        if sampler == "read" {
            if m_native + u_native > 0 || !opcodes.contains("was not seen") {
                fail("plain reads see no registers, and must say so".into());
            }
            continue;
        }
        let top = m_objs
            .first()
            .map(|o| o.0.to_lowercase())
            .unwrap_or_default();
        if share(m_native, m_n) < 0.9 || !top.contains("blas") {
            fail(format!(
                "a @ b: {m_native} of {m_n} native, in {m_objs:?} (want ≥ 90%, mostly BLAS)"
            ));
        }
        if share(u_native, u_n) < 0.9 {
            fail(format!(
                "np.sin: {u_native} of {u_n} native, in {u_objs:?} (want ≥ 90%)"
            ));
        }
        if share(l_native, l_n) > 0.05 {
            fail(format!("the pure-Python loop: {l_native} of {l_n} native"));
        }
        // Every text output says it: the report's table, annotate, the collapsed stacks.
        let blas = m_objs[0].0.as_str();
        if !opcodes.contains("Native code called from instructions") || !opcodes.contains(blas) {
            fail(format!(
                "the opcode report does not show {blas}:\n{opcodes}"
            ));
        }
        let annotated = report(&path, "annotate", &["--function", "matmul_heavy"]);
        if !annotated
            .lines()
            .any(|l| l.contains("native:") && l.contains(blas))
        {
            fail(format!("annotate does not show {blas}:\n{annotated}"));
        }
        let c = pyprof(&["report", "-f", "collapsed", &out]);
        let c = String::from_utf8_lossy(&c.stdout);
        if !c.contains(&format!("[BINARY_OP];<native {blas}> ")) {
            fail(format!(
                "no [BINARY_OP];<native {blas}> in the collapsed stacks"
            ));
        }
        for format in ["speedscope", "chrometrace"] {
            let o = pyprof(&["report", "-f", format, "-o", "-", &out]);
            if !String::from_utf8_lossy(&o.stdout).contains(&format!("<native {blas}>")) {
                fail(format!("no <native {blas}> frame in the {format} output"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
