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

/// `pyprof record -q ARGS -f json -o PATH -- PYTHON SCRIPT 4`, one BLAS thread: the
/// profile it wrote.
fn record_numpy(python: &str, script: &str, args: &[&str], path: &std::path::Path) -> ProfileData {
    let out = path.display().to_string();
    let o = Command::new(pyprof_bin())
        .args(["record", "-q"])
        .args(args)
        .args(["-f", "json", "-o", &out, "--", python, script, "4"])
        .env("OPENBLAS_NUM_THREADS", "1")
        .output()
        .expect("running pyprof");
    assert!(
        o.status.success(),
        "pyprof record {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    read_profile(path)
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
        let d = record_numpy(
            &python,
            &script,
            &["--opcodes", "--sampler", sampler, "-r", "400"],
            &path,
        );
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

/// The leaf frames of the collapsed stacks through `function`, by how many samples end
/// there: a symbol's name, or `(OBJECT)` for an address in an object without one (py-spy
/// shows those as absolute addresses, pyprof relative to the object: both name it).
fn native_leaves(collapsed: &str, function: &str) -> Vec<(String, u64)> {
    leaves_by(collapsed, function, |leaf| {
        let (name, rest) = leaf.split_once(" (").unwrap_or((leaf, ""));
        Some(if name.starts_with("0x") {
            format!("({rest}")
        } else {
            name.to_string()
        })
    })
}

/// Samples of the collapsed stacks through Python `function`, by `key` of their leaf
/// frame's label, most first.
fn leaves_by(
    collapsed: &str,
    function: &str,
    key: impl Fn(&str) -> Option<String>,
) -> Vec<(String, u64)> {
    let mut by: std::collections::BTreeMap<String, u64> = Default::default();
    for line in collapsed.lines() {
        let Some((stack, n)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        if !stack
            .split(';')
            .any(|f| f.starts_with(&format!("{function} (")))
        {
            continue;
        }
        if let Some(k) = key(stack.rsplit(';').next().unwrap_or("")) {
            *by.entry(k).or_insert(0) += n;
        }
    }
    let mut v: Vec<(String, u64)> = by.into_iter().collect();
    v.sort_by_key(|b| std::cmp::Reverse(b.1));
    v
}

/// The objects of the native leaf frames of the stacks through Python `function`, by
/// samples.
fn leaf_objects(d: &ProfileData, function: &str) -> Vec<(String, u64)> {
    let mut by: std::collections::BTreeMap<String, u64> = Default::default();
    for s in &d.stacks {
        let f: Vec<&pyprof::profile::Frame> =
            s.frames.iter().map(|&i| &d.frames[i as usize]).collect();
        if !f
            .iter()
            .any(|f| f.object.is_none() && f.function == function)
        {
            continue;
        }
        if let Some(o) = f.last().and_then(|f| f.object.clone()) {
            *by.entry(o).or_insert(0) += s.count;
        }
    }
    let mut v: Vec<(String, u64)> = by.into_iter().collect();
    v.sort_by_key(|b| std::cmp::Reverse(b.1));
    v
}

/// The same from py-spy's collapsed lines: its native frames are `name (OBJECT_PATH)`.
fn spy_leaf_objects(collapsed: &str, function: &str) -> Vec<(String, u64)> {
    leaves_by(collapsed, function, |leaf| {
        let inside = leaf.rsplit_once(" (")?.1.trim_end_matches(')');
        Some(inside.rsplit('/').next().unwrap_or(inside).to_string())
    })
}

/// py-spy (the peer users come from) from scripts/install-numpy.sh, beside numpy.
fn py_spy() -> String {
    let python = numpy_python();
    let bin = std::path::Path::new(&python).with_file_name("py-spy");
    assert!(
        bin.exists(),
        "scripts/install-numpy.sh installed no py-spy at {}",
        bin.display()
    );
    bin.display().to_string()
}

#[test]
fn numpy_native_frames_are_below_the_python_frame_that_called_them_as_py_spy_sees_them() {
    let python = numpy_python();
    let spy = py_spy();
    let _x = exclusive();
    let script = scripts_dir().join("native.py").display().to_string();
    let dir = temp_dir();
    // py-spy --native on the same program, as its users would run it.
    let spy_out = dir.path().join("py-spy.txt");
    let o = Command::new(&spy)
        .args(["record", "--native", "-r", "200", "-f", "raw", "-o"])
        .arg(&spy_out)
        .args(["--", &python, &script, "4"])
        .env("OPENBLAS_NUM_THREADS", "1")
        .output()
        .expect("running py-spy");
    assert!(
        o.status.success(),
        "py-spy --native: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let spy_text = std::fs::read_to_string(&spy_out).unwrap_or_default();
    let mut failures = Vec::new();
    for sampler in samplers().into_iter().filter(|s| *s != "read") {
        let path = dir.path().join(format!("{sampler}.json"));
        let out = path.display().to_string();
        let d = record_numpy(
            &python,
            &script,
            &["--native", "--sampler", sampler, "-r", "200"],
            &path,
        );
        let mut fail = |s: String| failures.push(format!("{sampler}: {s}"));
        // Below the Python frame that called it: the stack through matmul_heavy (or
        // ufunc_heavy) goes on with native frames, and ends in one.
        for function in ["matmul_heavy", "ufunc_heavy"] {
            let (mut n, mut below) = (0, 0);
            for s in &d.stacks {
                let f: Vec<&pyprof::profile::Frame> =
                    s.frames.iter().map(|&i| &d.frames[i as usize]).collect();
                let Some(at) = f
                    .iter()
                    .position(|f| f.object.is_none() && f.function == function)
                else {
                    continue;
                };
                n += s.count;
                if f.len() > at + 1 && f[at + 1..].iter().all(|f| f.object.is_some()) {
                    below += s.count;
                }
            }
            eprintln!("numpy --native {sampler}: {function}: {below} of {n} samples end in native frames below it");
            if n < 100 || share(below, n) < 0.9 {
                fail(format!(
                    "{function}: {below} of {n} samples end in native frames below it (want ≥ 90%)"
                ));
            }
        }
        if d.meta.native_stacks < d.meta.samples * 9 / 10 {
            fail(format!(
                "{} of {} samples have native frames",
                d.meta.native_stacks, d.meta.samples
            ));
        }
        // The same functions as py-spy's.
        let c = pyprof(&["report", "-f", "collapsed", &out]);
        let c = String::from_utf8_lossy(&c.stdout).into_owned();
        for function in ["matmul_heavy", "ufunc_heavy"] {
            let ours = native_leaves(&c, function);
            let theirs = native_leaves(&spy_text, function);
            eprintln!(
                "numpy --native {sampler}: {function}: pyprof {:?}; py-spy {:?}",
                &ours[..ours.len().min(3)],
                &theirs[..theirs.len().min(3)]
            );
            let top = |v: &[(String, u64)], k: usize| -> Vec<String> {
                v.iter().take(k).map(|e| e.0.clone()).collect()
            };
            // The leaf's object first (symbols can differ: a debug file here that py-spy
            // does not read names what it shows as an address), then, where both name a
            // function, the function.
            let our_objects = leaf_objects(&d, function);
            let their_objects = spy_leaf_objects(&spy_text, function);
            let same_object =
                our_objects.first().map(|o| &o.0) == their_objects.first().map(|o| &o.0);
            let named = |v: &[(String, u64)]| v.first().is_some_and(|e| !e.0.starts_with('('));
            let (ours1, theirs2) = (top(&ours, 1), top(&theirs, 2));
            let (theirs1, ours2) = (top(&theirs, 1), top(&ours, 2));
            let same_name = !(named(&ours) && named(&theirs))
                || (theirs2.contains(&ours1[0]) && ours2.contains(&theirs1[0]));
            if !same_object || !same_name {
                fail(format!(
                    "{function}: the top native functions differ from py-spy's: pyprof {ours:?} in {our_objects:?}, py-spy {theirs:?} in {their_objects:?}"
                ));
            }
        }
        if !c.contains("dgemm") {
            fail("no OpenBLAS dgemm frame in the collapsed stacks".into());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Build tests/scripts/cbext.c for `py` (its own headers and extension suffix) into a
/// directory the target sees; returns that directory as the target sees it.
fn build_cbext(py: &Python, frame_pointers: bool) -> Result<String, String> {
    let probe = Command::new(&py.cmd[0])
        .args(&py.cmd[1..])
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['include']); print(sysconfig.get_config_var('EXT_SUFFIX') or '.so')",
        ])
        .output()
        .map_err(|e| format!("probing {}: {e}", py.label))?;
    let text = String::from_utf8_lossy(&probe.stdout).into_owned();
    let mut lines = text.lines();
    let (Some(include), Some(suffix)) = (lines.next(), lines.next()) else {
        return Err(format!("{}: no include dir / EXT_SUFFIX: {text}", py.label));
    };
    let root = py.root.clone().unwrap_or_else(|| "/".into());
    let variant = if frame_pointers { "fp" } else { "nofp" };
    let seen = format!(
        "/tmp/pyprof-tests/cbext-{}-{variant}",
        py.key.replace(' ', "-")
    );
    let host = root.join(seen.trim_start_matches('/'));
    std::fs::create_dir_all(&host).map_err(|e| format!("mkdir {}: {e}", host.display()))?;
    let src = scripts_dir().join("cbext.c");
    let fp = if frame_pointers {
        "-fno-omit-frame-pointer"
    } else {
        "-fomit-frame-pointer"
    };
    let o = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-g", fp])
        .arg(format!(
            "-I{}",
            root.join(include.trim_start_matches('/')).display()
        ))
        // Debian's multiarch pyconfig.h, from the chroot's /usr/include after the host's.
        .arg("-idirafter")
        .arg(root.join("usr/include"))
        .arg(&src)
        .arg("-o")
        .arg(host.join(format!("cbext{suffix}")))
        .output()
        .map_err(|e| format!("running cc: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "cc for {}: {}",
            py.label,
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(seen)
}

#[test]
fn python_c_python_frames_merge_in_order() {
    let _x = exclusive();
    for_each_python("native callback", |py| {
        let mut notes = Vec::new();
        for frame_pointers in [true, false] {
            let ext = build_cbext(py, frame_pointers)?;
            for sampler in samplers().into_iter().filter(|s| *s != "read") {
                let mut t = Target::spawn(py, "callback.py", &[&ext]);
                let (d, _) =
                    record_json(t.pid, 1.2, &["--native", "--sampler", sampler, "-r", "200"]);
                t.kill();
                let what = format!(
                    "{sampler}, {}",
                    if frame_pointers {
                        "frame pointers"
                    } else {
                        "no frame pointers"
                    }
                );
                // Root first: outer (Python), cbext_call_back_loop (C), leaf (Python),
                // cbext_spin_loop (C), nothing Python after it, each exactly once.
                let (mut n, mut ordered) = (0, 0);
                let mut example = String::new();
                for s in &d.stacks {
                    let f: Vec<&pyprof::profile::Frame> =
                        s.frames.iter().map(|&i| &d.frames[i as usize]).collect();
                    let py_at = |name: &str| {
                        let v: Vec<usize> = (0..f.len())
                            .filter(|&i| f[i].object.is_none() && f[i].function == name)
                            .collect();
                        (v.len() == 1).then(|| v[0])
                    };
                    let c_at = |name: &str| {
                        let v: Vec<usize> = (0..f.len())
                            .filter(|&i| f[i].object.is_some() && f[i].function == name)
                            .collect();
                        (v.len() == 1).then(|| v[0])
                    };
                    n += s.count;
                    let ok = match (
                        py_at("outer"),
                        c_at("cbext_call_back_loop"),
                        py_at("leaf"),
                        c_at("cbext_spin_loop"),
                    ) {
                        (Some(a), Some(b), Some(c), Some(e)) => {
                            a < b && b < c && c < e && f[e..].iter().all(|f| f.object.is_some())
                        }
                        _ => false,
                    };
                    if ok {
                        ordered += s.count;
                    } else if example.is_empty() {
                        example = f
                            .iter()
                            .map(|f| {
                                if f.object.is_some() {
                                    format!("[{}]", f.function)
                                } else {
                                    f.function.clone()
                                }
                            })
                            .collect::<Vec<_>>()
                            .join(";");
                    }
                }
                if n < 100 || share(ordered, n) < 0.8 {
                    return Err(format!(
                        "{what}: {ordered} of {n} samples are outer → [cbext_call_back_loop] → leaf → [cbext_spin_loop] (want ≥ 80%); e.g. {example}"
                    ));
                }
                notes.push(format!("{what}: {ordered}/{n}"));
            }
        }
        Ok(notes.join("; "))
    });
}

#[test]
fn dump_native_interleaves_c_and_python_frames() {
    for_each_python("dump --native", |py| {
        let ext = build_cbext(py, false)?;
        let t = Target::spawn(py, "callback.py", &[&ext]);
        // Innermost first: cbext_spin_loop [native] … leaf … cbext_call_back_loop
        // [native] … outer, each once (a dump is one instant: take a few, for one that
        // caught the thread in spin, where it spends nearly all its time).
        let mut last = String::new();
        for _ in 0..5 {
            let o = pyprof(&["dump", "--native", "-p", &t.pid.to_string()]);
            if !o.status.success() {
                return Err(format!("dump -n: {}", String::from_utf8_lossy(&o.stderr)));
            }
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let at = |what: &str| -> Vec<usize> {
                text.lines()
                    .enumerate()
                    .filter(|(_, l)| l.trim_start().starts_with(what))
                    .map(|(i, _)| i)
                    .collect()
            };
            let (spin, leaf, back, outer) = (
                at("cbext_spin_loop ("),
                at("leaf ("),
                at("cbext_call_back_loop ("),
                at("outer ("),
            );
            if [&spin, &leaf, &back, &outer].iter().all(|v| v.len() == 1)
                && spin[0] < leaf[0]
                && leaf[0] < back[0]
                && back[0] < outer[0]
                && text
                    .lines()
                    .nth(spin[0])
                    .is_some_and(|l| l.ends_with("[native]"))
            {
                return Ok(String::new());
            }
            last = text;
        }
        Err(format!(
            "no dump showed spin < leaf < call_back < outer:\n{last}"
        ))
    });
}
