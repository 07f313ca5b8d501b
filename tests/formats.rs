//! The export formats (speedscope, Chrome trace, pprof) read back by independent
//! readers, installed by scripts/install-test-tools.sh:
//!
//! - speedscope: validated against speedscope's real JSON schema (from its npm package)
//!   with Python's `jsonschema` (tests/scripts/check_speedscope.py);
//! - pprof: decoded with the `protobuf` runtime from upstream's profile.proto
//!   (tests/fixtures/profile.proto, compiled by grpcio-tools' protoc;
//!   tests/scripts/check_pprof.py);
//! - Chrome trace: structure and nesting checked in Python
//!   (tests/scripts/check_chrometrace.py);
//! - all three: imported by speedscope's own importers (its npm bundle run in node;
//!   tests/scripts/check_speedscope_import.mjs).
//!
//! Every reader's view is turned into the same shape (thread -> stack -> samples) and
//! compared with what the `ProfileData` says. Profiles are built by hand (names with
//! quotes, non-ASCII, truncated stacks, opcodes, every render option) and recorded from
//! a real Python program. Without the tools (no registry reachable, say) the
//! reader-based tests print `SKIP` with the reason and pass, unless
//! PYPROF_REQUIRE_TEST_TOOLS=1; the in-process checks below them always run.

use pyprof::output::{chrometrace, pprof, speedscope, RenderOptions};
use pyprof::profile::{Frame, Meta, ProfileData, Stack, ThreadInfo};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

// ---------------------------------------------------------------------------------
// Tools

struct Tools {
    python: PathBuf,
    node: PathBuf,
    speedscope_dir: PathBuf,
    /// Debian's `go` (for `go tool pprof`), when it could be installed.
    go: Option<PathBuf>,
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn install_tools() -> Result<Tools, String> {
    let script = manifest_dir().join("scripts/install-test-tools.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}):\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("tools: "))
        .ok_or_else(|| format!("install-test-tools.sh printed no `tools:` line: {stdout}"))?;
    let env = std::fs::read_to_string(Path::new(dir).join("tools.env"))
        .map_err(|e| format!("reading {dir}/tools.env: {e}"))?;
    let get = |key: &str| -> Result<PathBuf, String> {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(PathBuf::from)
            .ok_or_else(|| format!("{dir}/tools.env has no {key}"))
    };
    Ok(Tools {
        python: get("PYTHON")?,
        node: get("NODE")?,
        speedscope_dir: get("SPEEDSCOPE_DIR")?,
        go: get("GO").ok().filter(|p| !p.as_os_str().is_empty()),
    })
}

/// The tools, installed once per test run; `None` (after a loud SKIP line) when they
/// cannot be installed, unless PYPROF_REQUIRE_TEST_TOOLS=1 makes that a failure.
fn tools(test: &str) -> Option<&'static Tools> {
    static TOOLS: OnceLock<Result<Tools, String>> = OnceLock::new();
    match TOOLS.get_or_init(install_tools) {
        Ok(t) => Some(t),
        Err(e) => {
            if std::env::var("PYPROF_REQUIRE_TEST_TOOLS").as_deref() == Ok("1") {
                panic!("{test}: test tools required but not installable: {e}");
            }
            skip(&format!(
                "{test}: the independent readers could not be installed \
                 (set PYPROF_REQUIRE_TEST_TOOLS=1 to fail instead): {e}"
            ));
            None
        }
    }
}

/// Say why a test is skipped, on stderr itself: libtest captures `eprintln!` of passing
/// tests, not writes to the handle.
fn skip(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIP {why}");
}

fn run_json(mut cmd: Command, what: &str) -> Value {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: output is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn checker(tools: &Tools, script: &str, args: &[&Path]) -> Value {
    let mut cmd = Command::new(&tools.python);
    cmd.arg(manifest_dir().join("tests/scripts").join(script))
        .args(args);
    run_json(cmd, script)
}

fn speedscope_import(tools: &Tools, file: &Path) -> Value {
    let mut cmd = Command::new(&tools.node);
    cmd.arg(manifest_dir().join("tests/scripts/check_speedscope_import.mjs"))
        .arg(&tools.speedscope_dir)
        .arg(file);
    let v = run_json(cmd, "speedscope import");
    assert_eq!(
        v["warnings"],
        Value::Array(vec![]),
        "speedscope warned importing {}",
        file.display()
    );
    v
}

// ---------------------------------------------------------------------------------
// One comparable shape for every reader: thread label -> stack (root first) -> samples.

/// (name, file base name, line); a line of 0 is "unknown", like no line.
type Fr = (String, Option<String>, Option<i64>);
type Stacks = BTreeMap<String, BTreeMap<Vec<Fr>, u64>>;

fn base(file: &str) -> Option<String> {
    if file.is_empty() {
        None
    } else {
        Some(file.rsplit('/').next().unwrap_or(file).to_string())
    }
}

fn fr(name: &str, file: Option<&str>, line: Option<i64>) -> Fr {
    (
        name.to_string(),
        file.and_then(base),
        line.filter(|&l| l != 0),
    )
}

fn thread_label(data: &ProfileData, thread: u32) -> String {
    data.threads[thread as usize].label()
}

/// What every reader should see, from the profile itself.
fn expected(data: &ProfileData, opts: &RenderOptions) -> Stacks {
    let mut out = Stacks::new();
    for s in &data.stacks {
        let mut frames = Vec::new();
        if s.truncated {
            frames.push(fr("[truncated]", None, None));
        }
        let line = |f: &Frame| -> Option<i64> {
            if opts.nolineno {
                None
            } else if opts.function {
                Some(f.first_line.into())
            } else {
                Some(f.line.into())
            }
        };
        for &id in &s.frames {
            let f = &data.frames[id as usize];
            frames.push(fr(&f.function, Some(&f.file), line(f)));
        }
        if let Some(&leaf) = s.frames.last() {
            let f = &data.frames[leaf as usize];
            if let Some(op) = &f.opcode {
                frames.push(fr(&format!("[{op}]"), Some(&f.file), line(f)));
                // The native code the instruction was executing (`<native libc.so.6>`).
                if let Some(n) = s.native {
                    let nf = &data.frames[n as usize];
                    frames.push(fr(&nf.function, Some(&nf.file), line(nf)));
                }
            }
        }
        *out.entry(thread_label(data, s.thread))
            .or_default()
            .entry(frames)
            .or_insert(0) += s.count;
    }
    out
}

fn per_thread_totals(data: &ProfileData) -> BTreeMap<String, u64> {
    let mut t = BTreeMap::new();
    for s in &data.stacks {
        *t.entry(thread_label(data, s.thread)).or_insert(0) += s.count;
    }
    t
}

fn s_of(v: &Value) -> Option<&str> {
    v.as_str()
}

fn frame_of(v: &Value, name_key: &str) -> Fr {
    fr(
        v[name_key].as_str().unwrap_or_else(|| panic!("frame {v}")),
        s_of(&v["file"]),
        v["line"].as_i64(),
    )
}

fn names_only(stacks: &Stacks) -> BTreeMap<Vec<String>, u64> {
    let mut out = BTreeMap::new();
    for per in stacks.values() {
        for (frames, n) in per {
            *out.entry(frames.iter().map(|f| f.0.clone()).collect())
                .or_insert(0) += n;
        }
    }
    out
}

fn us_per_sample(data: &ProfileData) -> f64 {
    1e6 / data.meta.rate_hz
}

fn period_ns(data: &ProfileData) -> i64 {
    (1e9 / data.meta.rate_hz).round() as i64
}

// ---------------------------------------------------------------------------------
// Rendering and checking one profile with one set of options

struct Rendered {
    _dir: tempfile::TempDir,
    speedscope: PathBuf,
    trace: PathBuf,
    pprof: PathBuf,
}

fn render(data: &ProfileData, opts: &RenderOptions) -> Rendered {
    let dir = tempfile::tempdir().expect("tempdir");
    let speedscope = dir.path().join("p.speedscope.json");
    let trace = dir.path().join("p.trace.json");
    let pprof = dir.path().join("p.pb.gz");
    let mut f = std::fs::File::create(&speedscope).expect("create");
    speedscope::write(data, opts, &mut f).expect("speedscope::write");
    let mut f = std::fs::File::create(&trace).expect("create");
    chrometrace::write(data, opts, &mut f).expect("chrometrace::write");
    let mut f = std::fs::File::create(&pprof).expect("create");
    pprof::write(data, opts, &mut f).expect("pprof::write");
    Rendered {
        _dir: dir,
        speedscope,
        trace,
        pprof,
    }
}

fn check_speedscope(tools: &Tools, data: &ProfileData, opts: &RenderOptions, file: &Path) {
    let schema = tools
        .speedscope_dir
        .join("dist/release/file-format-schema.json");
    let v = checker(tools, "check_speedscope.py", &[file, &schema]);
    assert_eq!(
        v["exporter"],
        format!("pyprof {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(v["name"], data.meta.target.as_str());
    let mut got = Stacks::new();
    let mut totals = BTreeMap::new();
    for p in v["profiles"].as_array().expect("profiles") {
        let thread = p["name"].as_str().expect("name").to_string();
        assert_eq!(p["unit"], "none");
        totals.insert(thread.clone(), p["total"].as_u64().expect("total"));
        let per = got.entry(thread).or_default();
        for s in p["stacks"].as_array().expect("stacks") {
            let frames = s["frames"]
                .as_array()
                .expect("frames")
                .iter()
                .map(|f| frame_of(f, "name"))
                .collect();
            *per.entry(frames).or_insert(0) += s["weight"].as_u64().expect("weight");
        }
    }
    // Sum of weights per profile == the thread's samples.
    assert_eq!(totals, per_thread_totals(data), "speedscope totals");
    assert_eq!(got, expected(data, opts), "speedscope stacks");
}

fn check_pprof(tools: &Tools, data: &ProfileData, opts: &RenderOptions, file: &Path) {
    let proto = manifest_dir().join("tests/fixtures/profile.proto");
    let v = checker(tools, "check_pprof.py", &[file, &proto]);
    let period = period_ns(data);
    // Wall time with --idle (waiting threads sampled too), else CPU time.
    let kind = if data.meta.idle { "wall" } else { "cpu" };
    assert_eq!(
        v["sample_type"],
        serde_json::json!([["samples", "count"], [kind, "nanoseconds"]])
    );
    assert_eq!(v["period_type"], serde_json::json!([kind, "nanoseconds"]));
    assert_eq!(v["period"], period);
    assert_eq!(v["default_sample_type"], kind);
    assert_eq!(
        v["duration_nanos"],
        (data.meta.duration_secs * 1e9).round() as i64
    );
    let comments = v["comments"].as_array().expect("comments");
    assert!(comments.iter().any(|c| *c == data.meta.target.as_str()));
    // Function names and lines of the profile are all there.
    let functions: Vec<(String, i64)> = v["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .map(|f| {
            // The system name adds the file and first line (so that pprof takes the
            // names as demangled and keeps `<module>`).
            let name = f["name"].as_str().expect("name");
            let system = f["system_name"].as_str().expect("system_name");
            assert!(
                system == name || system.starts_with(&format!("{name} (")),
                "{name} / {system}"
            );
            (
                f["name"].as_str().expect("name").to_string(),
                f["start_line"].as_i64().expect("start_line"),
            )
        })
        .collect();
    for f in &data.frames {
        assert!(
            functions.contains(&(f.function.clone(), i64::from(f.first_line))),
            "function {} (first line {}) missing from {functions:?}",
            f.function,
            f.first_line
        );
    }
    let mut got = Stacks::new();
    for s in v["samples"].as_array().expect("samples") {
        let thread = s["labels"]["thread"]
            .as_str()
            .expect("thread label")
            .to_string();
        let values = s["values"].as_array().expect("values");
        let count = values[0].as_u64().expect("count");
        assert_eq!(values[1].as_i64(), Some(count as i64 * period), "cpu value");
        let mut frames: Vec<Fr> = s["frames"]
            .as_array()
            .expect("frames")
            .iter()
            .map(|f| frame_of(f, "name"))
            .collect();
        if opts.threads {
            // The thread's own root location, then the stack as usual.
            assert_eq!(frames.first(), Some(&fr(&thread, None, None)));
            frames.remove(0);
        }
        *got.entry(thread).or_default().entry(frames).or_insert(0) += count;
    }
    assert_eq!(got, expected(data, opts), "pprof stacks");
}

fn check_trace(tools: &Tools, data: &ProfileData, opts: &RenderOptions, file: &Path) {
    let v = checker(tools, "check_chrometrace.py", &[file]);
    assert_eq!(
        v["process_names"][data.meta.pid.to_string()],
        data.meta.target.as_str()
    );
    let us = us_per_sample(data);
    let mut got = Stacks::new();
    for t in v["threads"].as_array().expect("threads") {
        assert_eq!(t["pid"], data.meta.pid);
        let thread = t["name"].as_str().expect("thread name").to_string();
        let per = got.entry(thread.clone()).or_default();
        for s in t["stacks"].as_array().expect("stacks") {
            let frames: Vec<Fr> = s["frames"]
                .as_array()
                .expect("frames")
                .iter()
                .map(|f| frame_of(f, "function"))
                .collect();
            let self_us = s["self_us"].as_f64().expect("self_us");
            // Boundaries are rounded to whole microseconds: allow a few.
            let n = (self_us / us).round();
            assert!(
                (self_us - n * us).abs() < 0.01 * us,
                "{thread}: self time {self_us} us is not whole samples of {us} us"
            );
            // A parent without self time can show a rounding residue.
            if n > 0.0 {
                *per.entry(frames).or_insert(0) += n as u64;
            }
        }
        let total = t["total_us"].as_f64().expect("total_us");
        let want = per_thread_totals(data)[&thread] as f64 * us;
        assert!(
            (total - want).abs() <= 1.0,
            "{thread}: {total} us, want {want}"
        );
    }
    // Every thread with samples has a tid: its native id, else its index.
    let tids: Vec<u64> = v["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .map(|t| t["tid"].as_u64().expect("tid"))
        .collect();
    for s in &data.stacks {
        let t = &data.threads[s.thread as usize];
        let want = t.native_id.unwrap_or(u64::from(s.thread));
        assert!(
            tids.contains(&want) || tids.contains(&u64::from(s.thread)),
            "tid {want} missing from {tids:?}"
        );
    }
    assert_eq!(got, expected(data, opts), "chrome trace stacks");
}

/// speedscope's own importers: the same stacks from all three files.
fn check_speedscope_imports(tools: &Tools, data: &ProfileData, opts: &RenderOptions, r: &Rendered) {
    let want = expected(data, opts);

    // speedscope JSON: profile per thread, frames with file and line.
    let v = speedscope_import(tools, &r.speedscope);
    assert!(
        v["importer"]
            .as_str()
            .unwrap_or("")
            .contains("speedscope json"),
        "{}",
        v["importer"]
    );
    let mut got = Stacks::new();
    for p in v["profiles"].as_array().expect("profiles") {
        let per = got
            .entry(p["name"].as_str().expect("name").to_string())
            .or_default();
        for s in p["stacks"].as_array().expect("stacks") {
            let frames = s["frames"]
                .as_array()
                .expect("frames")
                .iter()
                .map(|f| frame_of(f, "name"))
                .collect();
            *per.entry(frames).or_insert(0) += s["weight"].as_u64().expect("weight");
        }
    }
    assert_eq!(got, want, "speedscope's import of the speedscope file");

    // Chrome trace: speedscope names frames `NAME {args as JSON}` and weighs in us.
    let v = speedscope_import(tools, &r.trace);
    assert!(
        v["importer"].as_str().unwrap_or("").contains("Trace Event"),
        "{}",
        v["importer"]
    );
    let us = us_per_sample(data);
    let mut got = Stacks::new();
    for p in v["profiles"].as_array().expect("profiles") {
        // "PROCESS (pid P), THREAD (tid T)"
        let name = p["name"].as_str().expect("name");
        let thread = name
            .rsplit_once(", ")
            .and_then(|(_, t)| t.rsplit_once(" (tid "))
            .map(|(t, _)| t.to_string())
            .unwrap_or_else(|| panic!("profile name {name}"));
        let per = got.entry(thread).or_default();
        for s in p["stacks"].as_array().expect("stacks") {
            let frames = s["frames"]
                .as_array()
                .expect("frames")
                .iter()
                .map(|f| {
                    let n = f["name"].as_str().expect("name");
                    let (_, args) = n
                        .split_once(" {\"")
                        .unwrap_or_else(|| panic!("frame name without args: {n}"));
                    let args: Value =
                        serde_json::from_str(&format!("{{\"{args}")).expect("args JSON");
                    frame_of(&args, "function")
                })
                .collect();
            let w = (s["weight"].as_f64().expect("weight") / us).round() as u64;
            if w > 0 {
                *per.entry(frames).or_insert(0) += w;
            }
        }
    }
    assert_eq!(got, want, "speedscope's import of the Chrome trace");

    // pprof: one profile for all threads, weighed in cpu nanoseconds (the default
    // sample type); speedscope keys frames by function, so compare names.
    let v = speedscope_import(tools, &r.pprof);
    assert!(
        v["importer"].as_str().unwrap_or("").contains("pprof"),
        "{}",
        v["importer"]
    );
    let profiles = v["profiles"].as_array().expect("profiles");
    assert_eq!(profiles.len(), 1);
    let period = period_ns(data) as f64;
    assert_eq!(
        profiles[0]["totalWeight"].as_f64(),
        Some(data.total_samples() as f64 * period)
    );
    let mut got: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    for s in profiles[0]["stacks"].as_array().expect("stacks") {
        let mut frames: Vec<String> = s["frames"]
            .as_array()
            .expect("frames")
            .iter()
            .map(|f| f["name"].as_str().expect("name").to_string())
            .collect();
        if opts.threads {
            frames.remove(0);
        }
        let w = s["weight"].as_f64().expect("weight") / period;
        *got.entry(frames).or_insert(0) += w.round() as u64;
    }
    assert_eq!(
        got,
        names_only(&want),
        "speedscope's import of the pprof file"
    );
}

fn check_all(tools: &Tools, what: &str, data: &ProfileData, opts: &RenderOptions) {
    eprintln!("formats: checking {what} with {opts:?}");
    let r = render(data, opts);
    check_speedscope(tools, data, opts, &r.speedscope);
    check_pprof(tools, data, opts, &r.pprof);
    check_trace(tools, data, opts, &r.trace);
    if data.stacks.is_empty() {
        return; // speedscope refuses to import a profile without samples
    }
    check_speedscope_imports(tools, data, opts, &r);
}

fn all_options() -> Vec<RenderOptions> {
    vec![
        RenderOptions::default(),
        RenderOptions {
            function: true,
            ..Default::default()
        },
        RenderOptions {
            nolineno: true,
            full_filenames: true,
            ..Default::default()
        },
        RenderOptions {
            threads: true,
            ..Default::default()
        },
    ]
}

// ---------------------------------------------------------------------------------
// Hand-built profiles

fn frame(function: &str, file: &str, first_line: i32, line: i32) -> Frame {
    Frame {
        function: function.into(),
        file: file.into(),
        first_line,
        line,
        offset: None,
        opcode: None,
        base_opcode: None,
        object: None,
    }
}

fn op_frame(function: &str, file: &str, first_line: i32, line: i32, op: &str) -> Frame {
    Frame {
        offset: Some(12),
        opcode: Some(op.into()),
        base_opcode: Some(op.into()),
        object: None,
        ..frame(function, file, first_line, line)
    }
}

fn stack(frames: &[u32], thread: u32, count: u64) -> Stack {
    Stack {
        frames: frames.to_vec(),
        thread,
        count,
        truncated: false,
        native: None,
    }
}

fn meta(rate_hz: f64) -> Meta {
    Meta {
        pyprof_version: "0.1.0".into(),
        target: "pid 4242 (python \"app\".py)".into(),
        pid: 4242,
        python_version: "3.12.1".into(),
        python_binary: "/usr/lib/libpython3.12.so.1.0".into(),
        cwd: "/srv/app".into(),
        layout_source: "built-in table".into(),
        rate_hz,
        duration_secs: 2.5,
        mode: "blocking".into(),
        started_at: "2024-01-02T03:04:05Z".into(),
        ..Default::default()
    }
}

/// Two threads (one named, one without native id), shared and distinct frames,
/// names that need escaping, a frame with line 0.
fn two_threads() -> ProfileData {
    ProfileData {
        format: "pyprof-profile".into(),
        format_version: 1,
        meta: meta(100.0),
        frames: vec![
            frame("<module>", "/srv/app/main.py", 1, 40),
            frame("Worker.run", "/srv/app/main.py", 10, 12),
            frame("leaf \"quoted\" ; {x}", "/srv/app/util.py", 3, 5),
            frame("héllo_wörld", "/usr/lib/python3.12/threading.py", 100, 0),
            frame("Worker.run", "/srv/app/main.py", 10, 14),
        ],
        threads: vec![
            ThreadInfo {
                thread_id: 0x7f00_0000_1000,
                native_id: Some(4242),
                name: Some("MainThread".into()),
                process: None,
                ns_id: None,
            },
            ThreadInfo {
                thread_id: 0x7f00_0000_2000,
                native_id: None,
                name: None,
                process: None,
                ns_id: None,
            },
        ],
        stacks: vec![
            stack(&[0, 1, 2], 0, 30),
            stack(&[0, 4, 2], 0, 12),
            stack(&[0, 1], 0, 7),
            stack(&[0], 0, 1),
            stack(&[3, 1, 2], 1, 50),
            stack(&[3, 4], 1, 3),
        ],
        ..Default::default()
    }
}

/// `--opcodes`: leaves carry instructions; a truncated stack; native code below an
/// instruction; an odd rate.
fn opcodes_and_truncation() -> ProfileData {
    let mut m = meta(97.0);
    m.opcodes = true;
    m.started_at = "2024-06-30T23-59-58".into(); // pyprof's own form: local time
    ProfileData {
        format: "pyprof-profile".into(),
        format_version: 1,
        meta: m,
        frames: vec![
            op_frame("<module>", "/srv/app/main.py", 1, 9, "CALL"),
            op_frame("spin", "/srv/app/main.py", 3, 5, "BINARY_OP_ADD_INT"),
            op_frame("spin", "/srv/app/main.py", 3, 5, "JUMP_BACKWARD"),
            op_frame("spin", "/srv/app/main.py", 3, 6, "BINARY_OP_ADD_INT"),
            op_frame("deep", "/srv/app/deep.py", 20, 21, "CALL"),
            // The native code an instruction was executing (below its opcode frame).
            Frame::native("libz.so.1"),
        ],
        threads: vec![ThreadInfo {
            thread_id: 1,
            native_id: Some(77),
            name: Some("worker-1".into()),
            process: None,
            ns_id: None,
        }],
        stacks: vec![
            stack(&[0, 1], 0, 11),
            stack(&[0, 2], 0, 4),
            stack(&[0, 3], 0, 9),
            Stack {
                frames: vec![4, 4, 1],
                thread: 0,
                count: 2,
                truncated: true,
                native: None,
            },
            Stack {
                frames: vec![0, 2],
                thread: 0,
                count: 3,
                truncated: false,
                native: Some(5),
            },
        ],
        ..Default::default()
    }
}

#[test]
fn hand_built_profiles_read_back_by_independent_readers() {
    let Some(tools) = tools("hand_built_profiles_read_back_by_independent_readers") else {
        return;
    };
    for (what, data) in [
        ("two threads", two_threads()),
        ("opcodes and truncation", opcodes_and_truncation()),
    ] {
        for opts in all_options() {
            check_all(tools, what, &data, &opts);
        }
    }
    let empty = ProfileData {
        meta: meta(100.0),
        ..Default::default()
    };
    check_all(tools, "empty profile", &empty, &RenderOptions::default());
}

#[test]
fn pprof_start_time_from_meta() {
    let Some(tools) = tools("pprof_start_time_from_meta") else {
        return;
    };
    let r = render(&two_threads(), &RenderOptions::default());
    let proto = manifest_dir().join("tests/fixtures/profile.proto");
    let v = checker(tools, "check_pprof.py", &[&r.pprof, &proto]);
    // 2024-01-02T03:04:05Z
    assert_eq!(v["time_nanos"], 1_704_164_645_000_000_000i64);
    assert_eq!(v["mappings"][0]["has_functions"], true);
    // Local time without an offset still gives a time (this machine's zone).
    let r = render(&opcodes_and_truncation(), &RenderOptions::default());
    let v = checker(tools, "check_pprof.py", &[&r.pprof, &proto]);
    let t = v["time_nanos"].as_i64().expect("time_nanos");
    let utc = 1_719_791_998_000_000_000i64; // 2024-06-30T23:59:58Z
    assert!(
        (t - utc).abs() <= 26 * 3600 * 1_000_000_000,
        "time_nanos {t} too far from {utc}"
    );
}

// ---------------------------------------------------------------------------------
// A real recording

const TARGET: &str = r#"
import sys, threading

def spin_a(n):
    total = 0
    for i in range(n):
        total += i * i
    return total

def spin_b(n):
    s = ""
    for i in range(n):
        s = str(i)
    return s

def worker():
    while True:
        spin_b(20000)

threading.Thread(target=worker, name="worker-b", daemon=True).start()
sys.stdout.write("ready\n")
sys.stdout.flush()
while True:
    spin_a(20000)
"#;

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python_for_recording() -> Option<PathBuf> {
    let p = std::env::var("PYPROF_FORMATS_PYTHON")
        .unwrap_or_else(|_| "/root/.pyenv/versions/3.12.1/bin/python".into());
    let p = PathBuf::from(p);
    p.exists().then_some(p)
}

fn record(pid: u32, extra: &[&str]) -> ProfileData {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("p.json");
    let pid = pid.to_string();
    let mut args = vec![
        "record", "--idle", "-p", &pid, "-d", "1", "-f", "json", "-o",
    ];
    let out_s = out.display().to_string();
    args.push(&out_s);
    args.extend_from_slice(extra);
    let o = Command::new(env!("CARGO_BIN_EXE_pyprof"))
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .expect("running pyprof");
    assert!(
        o.status.success(),
        "pyprof {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = std::fs::read_to_string(&out).expect("reading the profile");
    serde_json::from_str(&text).expect("parsing the profile")
}

#[test]
fn real_recording_read_back_by_independent_readers() {
    let test = "real_recording_read_back_by_independent_readers";
    let Some(python) = python_for_recording() else {
        skip(&format!(
            "{test}: no /root/.pyenv/versions/3.12.1/bin/python (set PYPROF_FORMATS_PYTHON)"
        ));
        return;
    };
    let Some(tools) = tools(test) else {
        return;
    };
    let mut child = Child(
        Command::new(&python)
            .args(["-c", TARGET])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning the target"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let ready = matches!(lines.next(), Some(Ok(l)) if l.trim() == "ready");
        let _ = tx.send(ready);
        // Keep reading so the target never blocks on a full pipe.
        for _ in lines {}
    });
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(60)),
        Ok(true),
        "target never printed ready"
    );
    let pid = child.0.id();

    for extra in [&[][..], &["--opcodes"][..]] {
        let data = record(pid, extra);
        let what = format!("real recording {extra:?}");
        assert_eq!(data.threads.len(), 2, "{what}: threads {:?}", data.threads);
        assert!(data.total_samples() > 0, "{what}: no samples");
        let functions: Vec<&str> = data.frames.iter().map(|f| f.function.as_str()).collect();
        for f in ["spin_a", "spin_b", "worker", "<module>"] {
            assert!(functions.contains(&f), "{what}: no {f} in {functions:?}");
        }
        if !extra.is_empty() {
            // Every Python frame carries its instruction; `<native OBJECT>` frames (the
            // thread waiting for the GIL in libc, with --idle) have none.
            let without: Vec<_> = data
                .frames
                .iter()
                .filter(|f| f.opcode.is_none() && f.native_object().is_none())
                .collect();
            assert!(
                without.is_empty(),
                "{what}: frames without an opcode: {without:?}"
            );
        }
        for opts in [
            RenderOptions::default(),
            RenderOptions {
                function: true,
                ..Default::default()
            },
        ] {
            check_all(tools, &what, &data, &opts);
        }

        // pprof by thread: both threads there, spin_a under the main thread and
        // spin_b under the worker (checked on the decoded protobuf).
        let r = render(&data, &RenderOptions::default());
        let proto = manifest_dir().join("tests/fixtures/profile.proto");
        let v = checker(tools, "check_pprof.py", &[&r.pprof, &proto]);
        let mut by_thread: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for s in v["samples"].as_array().expect("samples") {
            let names = by_thread
                .entry(s["labels"]["thread"].as_str().expect("thread").into())
                .or_default();
            for f in s["frames"].as_array().expect("frames") {
                names.push(f["name"].as_str().expect("name").into());
            }
        }
        assert_eq!(by_thread.len(), 2, "{what}: {:?}", by_thread.keys());
        assert!(
            by_thread
                .values()
                .any(|n| n.iter().any(|f| f == "spin_a") && !n.iter().any(|f| f == "spin_b")),
            "{what}: no thread with spin_a only"
        );
        assert!(
            by_thread
                .values()
                .any(|n| n.iter().any(|f| f == "spin_b") && !n.iter().any(|f| f == "spin_a")),
            "{what}: no thread with spin_b only"
        );
    }
}

/// pprof as `go tool pprof` shows it, on a real recording of tests/scripts/split.py:
/// the header names the script (not libpython), `<module>` keeps its name (not
/// `[libpython…]`), the sample type is `cpu`, or `wall` with `--idle`, and `-list`
/// finds the source through the full file name.
#[test]
fn pprof_read_by_go_tool_pprof() {
    let test = "pprof_read_by_go_tool_pprof";
    let Some(python) = python_for_recording() else {
        skip(&format!(
            "{test}: no interpreter to record (set PYPROF_FORMATS_PYTHON)"
        ));
        return;
    };
    let Some(tools) = tools(test) else {
        return;
    };
    let Some(go) = &tools.go else {
        skip(&format!(
            "{test}: golang-go could not be installed (needs root and apt-get)"
        ));
        return;
    };
    let script = manifest_dir().join("tests/scripts/split.py");
    for idle in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("p.pb.gz");
        let mut args = vec!["record", "-r", "200", "-o", out.to_str().unwrap()];
        if idle {
            args.push("--idle");
        }
        args.extend([
            "--",
            python.to_str().unwrap(),
            script.to_str().unwrap(),
            "1",
        ]);
        let o = Command::new(env!("CARGO_BIN_EXE_pyprof"))
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("running pyprof");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let pprof = |extra: &[&str]| -> String {
            let o = Command::new(go)
                .args(["tool", "pprof"])
                .args(extra)
                .arg(&out)
                .env("HOME", dir.path())
                .stdin(Stdio::null())
                .output()
                .expect("go tool pprof");
            assert!(
                o.status.success(),
                "go tool pprof {extra:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        let top = pprof(&["-top"]);
        let want_type = if idle { "Type: wall" } else { "Type: cpu" };
        assert!(top.lines().any(|l| l == "File: split.py"), "{top}");
        assert!(top.lines().any(|l| l == want_type), "{want_type}: {top}");
        assert!(
            top.lines().any(|l| l.ends_with(" <module>")),
            "no <module>: {top}"
        );
        assert!(!top.contains("[libpython"), "{top}");
        for f in ["hot70", "hot30", "main"] {
            assert!(
                top.lines().any(|l| l.ends_with(&format!(" {f}"))),
                "no {f}: {top}"
            );
        }
        let list = pprof(&["-list", "^hot70$"]);
        assert!(
            list.contains(&format!("hot70 in {}", script.display()))
                && list.contains("def hot70():")
                && list.contains("s += i"),
            "{list}"
        );
        eprintln!(
            "go tool pprof ({}): ok",
            if idle { "--idle" } else { "cpu" }
        );
    }
}

// ---------------------------------------------------------------------------------
// In-process checks (no tools needed)

#[test]
fn pprof_is_gzip_and_speedscope_and_trace_are_json() {
    let data = two_threads();
    let opts = RenderOptions::default();
    let mut gz = Vec::new();
    pprof::write(&data, &opts, &mut gz).expect("pprof");
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip magic");
    let mut raw = Vec::new();
    gunzip(&gz, &mut raw);
    // A Profile starts with its first sample_type (field 1, length-delimited).
    assert_eq!(raw.first(), Some(&0x0a));

    let mut out = Vec::new();
    speedscope::write(&data, &opts, &mut out).expect("speedscope");
    let v: Value = serde_json::from_slice(&out).expect("speedscope JSON");
    assert_eq!(
        v["$schema"],
        "https://www.speedscope.app/file-format-schema.json"
    );
    let totals: Vec<u64> = v["profiles"]
        .as_array()
        .expect("profiles")
        .iter()
        .map(|p| {
            p["weights"]
                .as_array()
                .expect("weights")
                .iter()
                .map(|w| w.as_u64().expect("weight"))
                .sum()
        })
        .collect();
    assert_eq!(totals, vec![50, 53]);

    let mut out = Vec::new();
    chrometrace::write(&data, &opts, &mut out).expect("chrometrace");
    let v: Value = serde_json::from_slice(&out).expect("trace JSON");
    let events = v["traceEvents"].as_array().expect("traceEvents");
    assert!(events
        .iter()
        .any(|e| e["ph"] == "M" && e["name"] == "process_name"));
    // Nesting, per thread: sorted by start (longest first), each event inside the
    // innermost open one or after it.
    let mut by_tid: BTreeMap<u64, Vec<(f64, f64)>> = BTreeMap::new();
    for e in events.iter().filter(|e| e["ph"] == "X") {
        by_tid
            .entry(e["tid"].as_u64().expect("tid"))
            .or_default()
            .push((
                e["ts"].as_u64().expect("integer ts") as f64,
                e["dur"].as_u64().expect("integer dur") as f64,
            ));
    }
    // One thread has no native id, so both are numbered by index.
    assert_eq!(by_tid.keys().copied().collect::<Vec<_>>(), vec![0, 1]);
    for evs in by_tid.values_mut() {
        evs.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
        let mut open: Vec<f64> = Vec::new();
        for &(ts, dur) in evs.iter() {
            while open.last().is_some_and(|&end| end <= ts) {
                open.pop();
            }
            if let Some(&end) = open.last() {
                assert!(
                    ts + dur <= end,
                    "event {ts}+{dur} crosses its parent's end {end}"
                );
            }
            open.push(ts + dur);
        }
    }
}

/// Decompress with the system's `gzip -dc`, a reader independent of the writer's.
fn gunzip(gz: &[u8], out: &mut Vec<u8>) {
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(gz).expect("write to gzip");
    }
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_end(out)
        .expect("read from gzip");
    assert!(child.wait().expect("gzip").success(), "gzip -dc failed");
}
