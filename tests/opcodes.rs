//! Opcode tables: drift check against the real interpreters, and decoding of
//! live quickened bytecode checked against `dis` of the same interpreter.
//!
//! Interpreters looked for: `$PYENV_ROOT` (default `~/.pyenv`) versions,
//! `/usr/bin/python3.N`, `/usr/local/bin/python3.N`, plus `PYPROF_PYTHONS`
//! (colon-separated entries, each a plain path or `LABEL=COMMAND ARGS`, e.g.
//! `3.14=chroot /opt/sid python3.14`; the format tests/common/mod.rs reads).
//! Interpreters behind a command prefix get the warm-up script on stdin.
//! A missing interpreter is skipped with a loud message, never silently.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use pyprof::code::opcodes::{
    all_tables, instruction_at, instructions, owning_instr, owning_instr_with, owning_instruction,
    table_for, OpcodeTable,
};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn loud(msg: &str) {
    let bar = "!".repeat(msg.len().clamp(20, 100));
    eprintln!("{bar}\n{msg}\n{bar}");
}

// ---------------------------------------------------------------------------
// drift check

#[test]
fn generated_tables_match_interpreters() {
    let out = Command::new("python3")
        .arg(Path::new(ROOT).join("scripts/gen_opcodes.py"))
        .arg("--check")
        .current_dir(ROOT)
        .output()
        .expect("running python3 scripts/gen_opcodes.py --check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "src/code/opcode_tables.rs drifted from the interpreters \
         (regenerate with `python3 scripts/gen_opcodes.py`):\n{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    common::check_drift_output("gen_opcodes.py --check", &format!("{stdout}\n{stderr}"));
}

// ---------------------------------------------------------------------------
// table invariants (no interpreter needed)

fn table(major: u8, minor: u8) -> &'static OpcodeTable {
    table_for(major, minor, false).unwrap_or_else(|| panic!("no table for {major}.{minor}"))
}

fn op(t: &OpcodeTable, name: &str) -> u8 {
    t.opcode(name)
        .unwrap_or_else(|| panic!("{} has no {name}", t.version_string()))
}

#[test]
fn tables_are_consistent() {
    let mut seen = BTreeSet::new();
    for t in all_tables() {
        let v = t.version_string();
        assert!(seen.insert(v.clone()), "duplicate table {v}");
        assert!(std::ptr::eq(
            *t,
            table_for(t.major, t.minor, t.free_threaded).unwrap()
        ));
        assert_eq!(t.opname(t.extended_arg), Some("EXTENDED_ARG"), "{v}");
        let mut names = BTreeSet::new();
        for o in 0..=255u8 {
            let info = t.info(o);
            let Some(name) = info.name else {
                assert_eq!(t.name(o), format!("<{o}>"));
                assert_eq!(t.base(o), o);
                continue;
            };
            assert!(names.insert(name), "{v}: duplicate name {name}");
            let b = t.base(o);
            assert!(t.is_defined(b), "{v}: {name} has undefined base {b}");
            if b != o {
                let plain = !t.is_specialized(b) && !t.is_instrumented(b);
                assert!(plain, "{v}: base of {name} is not plain");
            }
            if t.is_specialized(o) || t.is_instrumented(o) && t.has_static_base(o) {
                assert_ne!(b, o, "{v}: {name}");
                assert_eq!(t.cache_entries(o), t.cache_entries(b), "{v}: {name}");
                assert_eq!(t.has_arg(o), t.has_arg(b), "{v}: {name}");
            } else {
                assert_eq!(b, o, "{v}: {name}");
            }
            if t.is_instrumented(o) && t.has_static_base(o) {
                assert_eq!(format!("INSTRUMENTED_{}", t.base_name(o)), name);
            }
            if !t.has_inline_caches() {
                assert_eq!(t.cache_entries(o), 0, "{v}: {name}");
                assert!(!t.is_specialized(o) && !t.is_instrumented(o));
            }
        }
    }
    for (maj, min) in [
        (2, 7),
        (3, 6),
        (3, 10),
        (3, 11),
        (3, 12),
        (3, 13),
        (3, 14),
        (3, 15),
    ] {
        assert!(table_for(maj, min, false).is_some(), "{maj}.{min} missing");
    }
    // 3.13t has the same opcodes as 3.13 (no table of its own): the lookup
    // falls back to the default build's table.
    let t = table_for(3, 13, true).expect("3.13t resolves");
    assert_eq!(t.version(), (3, 13));
    assert!(table_for(3, 5, false).is_none());
}

#[test]
fn known_facts_hold() {
    // Spot checks of properties the profiler relies on (numbers are looked
    // up by name, so these hold whatever the numbering).
    let t = table(3, 11);
    let la = op(t, "LOAD_ATTR_INSTANCE_VALUE");
    assert_eq!(t.base_name(la), "LOAD_ATTR");
    assert!(t.is_specialized(la) && t.has_arg(la));
    assert!(t.is_adaptive(op(t, "LOAD_ATTR_ADAPTIVE")));
    assert_eq!(t.base_name(op(t, "LOAD_FAST__LOAD_FAST")), "LOAD_FAST");
    assert!(t.is_extended_arg(op(t, "EXTENDED_ARG_QUICK")));
    assert_eq!(t.cache_entries(op(t, "CALL_PY_EXACT_ARGS")), 4);
    assert_eq!(t.count(pyprof::code::opcodes::flags::INSTR), 0);

    let t = table(3, 12);
    let ic = op(t, "INSTRUMENTED_CALL");
    assert!(t.is_instrumented(ic) && !t.is_specialized(ic));
    assert_eq!(t.base_name(ic), "CALL");
    assert_eq!(t.cache_entries(ic), t.cache_entries(op(t, "CALL")));
    assert!(!t.has_static_base(op(t, "INSTRUMENTED_LINE")));
    assert!(!t.has_static_base(op(t, "INSTRUMENTED_INSTRUCTION")));
    assert!(t.is_adaptive(op(t, "LOAD_ATTR")));
    assert!(!t.is_adaptive(op(t, "LOAD_FAST")));

    let t = table(3, 13);
    assert!(!t.has_static_base(op(t, "ENTER_EXECUTOR")));
    assert_eq!(t.base_name(op(t, "TO_BOOL_INT")), "TO_BOOL");
    assert_eq!(t.base_name(op(t, "RESUME_CHECK")), "RESUME");
    assert_eq!(t.name(op(t, "CACHE")), "CACHE");

    // 3.14: BINARY_SUBSCR folded into BINARY_OP (5 cache units);
    // LOAD_CONST specializes statically (no cache, not adaptive).
    let t = table(3, 14);
    assert!(t.opcode("BINARY_SUBSCR").is_none());
    let bs = op(t, "BINARY_OP_SUBSCR_LIST_INT");
    assert_eq!(t.base_name(bs), "BINARY_OP");
    assert_eq!(t.cache_entries(bs), 5);
    assert_eq!(t.base_name(op(t, "LOAD_CONST_IMMORTAL")), "LOAD_CONST");
    assert!(!t.is_adaptive(op(t, "LOAD_CONST")));
    assert_eq!(t.base_name(op(t, "JUMP_BACKWARD_JIT")), "JUMP_BACKWARD");
    assert_eq!(t.cache_entries(op(t, "JUMP_BACKWARD")), 1);
    assert_eq!(t.base_name(op(t, "INSTRUMENTED_NOT_TAKEN")), "NOT_TAKEN");
    assert!(!t.has_static_base(op(t, "ENTER_EXECUTOR")));

    // 3.15: RESUME has an inline cache and is adaptive; GET_ITER specializes.
    let t = table(3, 15);
    let r = op(t, "RESUME");
    assert!(t.is_adaptive(r));
    assert_eq!(t.cache_entries(r), 1);
    assert_eq!(t.base_name(op(t, "RESUME_CHECK_JIT")), "RESUME");
    assert_eq!(t.cache_entries(op(t, "INSTRUMENTED_RESUME")), 1);
    assert_eq!(t.base_name(op(t, "GET_ITER_SELF")), "GET_ITER");
    assert_eq!(t.cache_entries(op(t, "GET_ITER")), 1);

    let t = table(2, 7);
    assert!(!t.is_wordcode() && t.extended_arg == op(t, "EXTENDED_ARG"));
}

#[test]
fn decodes_synthetic_bytecode() {
    // 3.12: LOAD_FAST 0; EXTENDED_ARG 1; LOAD_CONST 2 (= 258); a specialized
    // CALL (3 cache units); RETURN_VALUE.
    let t = table(3, 12);
    let call = op(t, "CALL_PY_EXACT_ARGS");
    let n = t.cache_entries(call) as usize;
    let mut code = vec![
        op(t, "LOAD_FAST"),
        0,
        op(t, "EXTENDED_ARG"),
        1,
        op(t, "LOAD_CONST"),
        2,
        call,
        1,
    ];
    code.extend(std::iter::repeat_n([0x55u8, 0x66], n).flatten());
    code.extend([op(t, "RETURN_VALUE"), 0]);
    let ins: Vec<_> = instructions(t, &code).collect();
    let offs: Vec<_> = ins.iter().map(|i| (i.start_offset, i.offset)).collect();
    assert_eq!(offs, [(0, 0), (2, 4), (6, 6), (8 + 2 * n, 8 + 2 * n)]);
    assert_eq!(ins[1].arg, 258);
    assert_eq!(ins[1].name, "LOAD_CONST");
    assert_eq!(ins[2].base_name, "CALL");
    assert_eq!(owning_instruction(t, &code, 2), 4, "EXTENDED_ARG prefix");
    for off in (6..8 + 2 * n).step_by(2) {
        assert_eq!(owning_instruction(t, &code, off), 6, "cache unit {off}");
    }
    assert_eq!(owning_instruction(t, &code, 7), 6, "odd offset");
    assert_eq!(owning_instruction(t, &code, 1000), 1000, "outside");
    assert!(owning_instr(t, &code, code.len()).is_none());
    let at = instruction_at(t, &code, 2).unwrap();
    assert_eq!((at.start_offset, at.offset, at.arg), (2, 4, 258));
    assert!(instruction_at(t, &code, 3).is_none());

    // INSTRUMENTED_LINE over the CALL: without the side table its cache is
    // unknown; with it, the original CALL's layout is used.
    let mut inst = code.clone();
    inst[6] = op(t, "INSTRUMENTED_LINE");
    let orig = |off: usize| if off == 6 { Some(call) } else { None };
    let last_cache = 6 + 2 * n;
    let i = owning_instr_with(t, &inst, last_cache, &orig).unwrap();
    assert_eq!(
        (i.offset, i.name, i.base_name),
        (6, "INSTRUMENTED_LINE", "CALL")
    );

    // 2.7: variable-length instructions, 16-bit EXTENDED_ARG.
    let t = table(2, 7);
    let code = [
        op(t, "LOAD_FAST"),
        1,
        0,
        op(t, "POP_TOP"),
        op(t, "EXTENDED_ARG"),
        1,
        0,
        op(t, "LOAD_CONST"),
        2,
        0,
        op(t, "RETURN_VALUE"),
    ];
    let ins: Vec<_> = instructions(t, &code).collect();
    let offs: Vec<_> = ins.iter().map(|i| i.offset).collect();
    assert_eq!(offs, [0, 3, 7, 10]);
    assert_eq!(ins[2].arg, 0x10002);
    assert_eq!(owning_instruction(t, &code, 5), 7);
    assert_eq!(owning_instruction(t, &code, 2), 0);
}

// ---------------------------------------------------------------------------
// live bytecode of real interpreters

/// Warms a few functions until they are quickened, then prints (JSON) their
/// live `_co_code_adaptive` bytes and `dis.get_instructions(adaptive=True)`.
const WARM_SCRIPT: &str = r#"import dis, json, sys

if sys.version_info < (3, 11):
    print(json.dumps({"version": list(sys.version_info[:3]), "skip": "no adaptive bytecode before 3.11"}))
    sys.exit(0)

try:
    import sysconfig
    FT = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
except Exception:
    FT = False

LASTI = []


class P(object):
    def __init__(self):
        self.x = 1
        self.y = 2


def callee(a):
    LASTI.append(sys._getframe(1).f_lasti)
    return a


def hot(objs, n):
    t = 0
    for o in objs:
        t = t + o.x + o.y
        t += len(objs)
        if t > n:
            t = t - n
    while n > 0:
        n -= 1
    return t


def caller(objs):
    return hot(objs, 5) + callee(3)


# More than 256 constants: LOAD_CONST needs EXTENDED_ARG prefixes.
src = "def big(x):\n" + "".join("    x = x + %d.5\n" % i for i in range(300)) + "    return x\n"
ns = {}
exec(src, ns)
big = ns["big"]

objs = [P() for _ in range(8)]
for _ in range(3000):
    caller(objs)
    big(1.0)
del LASTI[:-1]
caller(objs)

out = {"version": list(sys.version_info[:3]), "free_threaded": FT, "functions": [],
       "caller_lasti": LASTI[-1]}
for f in (hot, caller, big, P.__init__, callee):
    co = f.__code__
    code = getattr(co, "_co_code_adaptive", None)
    if code is None:
        code = co.co_code
    instrs = [[i.offset, i.opname, i.opcode, i.arg] for i in dis.get_instructions(f, adaptive=True)]
    out["functions"].append({"name": f.__name__, "code": code.hex(), "instrs": instrs})
print(json.dumps(out))
"#;

struct Interp {
    argv: Vec<String>,
    label: String,
}

fn candidates() -> Vec<Interp> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut add_path = |p: PathBuf, out: &mut Vec<Interp>| {
        if !p.is_file() {
            return;
        }
        let real = std::fs::canonicalize(&p).unwrap_or(p.clone());
        if seen.insert(real) {
            let s = p.to_string_lossy().into_owned();
            out.push(Interp {
                argv: vec![s.clone()],
                label: s,
            });
        }
    };
    let pyenv = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pyenv")));
    if let Some(root) = pyenv {
        if let Ok(rd) = std::fs::read_dir(root.join("versions")) {
            let mut dirs: Vec<_> = rd.flatten().map(|e| e.path()).collect();
            dirs.sort();
            for d in dirs {
                add_path(d.join("bin/python"), &mut out);
            }
        }
    }
    for dir in ["/usr/bin", "/usr/local/bin"] {
        for minor in 11..=20 {
            for t in ["", "t"] {
                add_path(PathBuf::from(format!("{dir}/python3.{minor}{t}")), &mut out);
            }
        }
    }
    if let Ok(extra) = std::env::var("PYPROF_PYTHONS") {
        let mut seen_cmds = BTreeSet::new();
        for item in extra.split(':').map(str::trim).filter(|s| !s.is_empty()) {
            let (label, cmd) = match item.split_once('=') {
                Some((l, c)) => (l.trim().to_string(), c),
                None => (item.to_string(), item),
            };
            let argv: Vec<String> = cmd.split_whitespace().map(String::from).collect();
            if argv.is_empty() {
                continue;
            }
            if argv.len() == 1 {
                if !Path::new(&argv[0]).is_file() {
                    loud(&format!(
                        "SKIP {item}: not found (listed in PYPROF_PYTHONS)"
                    ));
                }
                add_path(PathBuf::from(&argv[0]), &mut out);
                if let Some(last) = out.last_mut() {
                    if last.argv == argv {
                        last.label = label;
                    }
                }
            } else if seen_cmds.insert(argv.clone()) {
                // A command prefix (`chroot /opt/sid python3.14`): whether it
                // runs is found out by running it (run_warm reports a SKIP).
                out.push(Interp { argv, label });
            }
        }
    }
    out
}

fn run_warm(it: &Interp) -> Option<serde_json::Value> {
    // The script goes in on stdin, so it also reaches an interpreter inside
    // a chroot (which cannot see this checkout).
    let mut child = match Command::new(&it.argv[0])
        .args(&it.argv[1..])
        .args(["-E", "-S", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            loud(&format!(
                "SKIP {}: cannot run {}: {e}",
                it.label,
                it.argv.join(" ")
            ));
            return None;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(WARM_SCRIPT.as_bytes())
        .ok()?;
    let out = child.wait_with_output().ok()?;
    if !out.status.success() {
        loud(&format!(
            "SKIP {}: warm-up script failed: {}",
            it.label,
            String::from_utf8_lossy(&out.stderr)
        ));
        return None;
    }
    match serde_json::from_slice(&out.stdout) {
        Ok(v) => Some(v),
        Err(e) => panic!(
            "{}: warm-up output is not JSON ({e}): {}",
            it.label,
            String::from_utf8_lossy(&out.stdout)
        ),
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Checks one interpreter's live bytecode against its `dis`; returns the
/// number of specialized instructions seen.
fn check_live(it: &Interp, v: &serde_json::Value, t: &OpcodeTable) -> usize {
    let who = format!("{} ({})", it.label, t.version_string());
    let mut specialized = 0;
    let mut saw_extended_arg = false;
    for f in v["functions"].as_array().unwrap() {
        let fname = f["name"].as_str().unwrap();
        let code = unhex(f["code"].as_str().unwrap());
        // dis: [offset, opname, opcode, arg]
        let dis: Vec<(usize, String, u8, Option<u32>)> = f["instrs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i[0].as_u64().unwrap() as usize,
                    i[1].as_str().unwrap().to_string(),
                    i[2].as_u64().unwrap() as u8,
                    i[3].as_u64().map(|a| a as u32),
                )
            })
            .collect();
        let ctx = |off: usize| format!("{who}: {fname} at {off}");

        // Every instruction dis lists is named by our table as dis names it.
        for (off, name, _, _) in &dis {
            assert_eq!(t.name(code[*off]), name, "{}", ctx(*off));
            if t.is_specialized(code[*off]) {
                specialized += 1;
            }
            if t.is_extended_arg(code[*off]) {
                saw_extended_arg = true;
            } else {
                let at = instruction_at(t, &code, *off).unwrap();
                assert_eq!((at.offset, at.name), (*off, name.as_str()), "{}", ctx(*off));
            }
        }

        // Our walk finds the same instructions, arguments included.
        let ours: Vec<_> = instructions(t, &code).collect();
        let theirs: Vec<_> = dis
            .iter()
            .filter(|d| !t.is_extended_arg(code[d.0]))
            .collect();
        assert_eq!(
            ours.len(),
            theirs.len(),
            "{who}: {fname}: instruction count"
        );
        for (o, d) in ours.iter().zip(&theirs) {
            assert_eq!((o.offset, o.name), (d.0, d.1.as_str()), "{}", ctx(d.0));
            if let Some(a) = d.3 {
                assert_eq!(o.arg, a, "{}: arg", ctx(d.0));
            }
        }
        assert_eq!(ours.last().map(|i| i.end_offset), Some(code.len()));

        // Every code unit (cache units and EXTENDED_ARG prefixes included)
        // is owned by the instruction dis puts it under.
        for off in (0..code.len()).step_by(2) {
            let j = dis.iter().rposition(|d| d.0 <= off).unwrap();
            let expect = dis[j..]
                .iter()
                .find(|d| !t.is_extended_arg(code[d.0]))
                .unwrap()
                .0;
            assert_eq!(owning_instruction(t, &code, off), expect, "{}", ctx(off));
        }

        if fname == "caller" {
            // A caller frame's f_lasti (prev_instr / instr_ptr) maps to its CALL.
            let lasti = v["caller_lasti"].as_u64().unwrap() as usize;
            let owner = owning_instr(t, &code, lasti).unwrap();
            assert_eq!(owner.base_name, "CALL", "{}", ctx(lasti));
            eprintln!(
                "{who}: caller f_lasti {lasti} -> {} at {}{}",
                owner.name,
                owner.offset,
                if lasti != owner.offset {
                    " (f_lasti points into its inline cache)"
                } else {
                    ""
                }
            );
        }
    }
    assert!(saw_extended_arg, "{who}: test lacks EXTENDED_ARG");
    specialized
}

#[test]
fn live_bytecode_decodes_like_dis() {
    let mut tested = BTreeSet::new();
    for it in candidates() {
        let Some(v) = run_warm(&it) else { continue };
        if v.get("skip").is_some() {
            continue;
        }
        let ver = &v["version"];
        let (major, minor) = (
            ver[0].as_u64().unwrap() as u8,
            ver[1].as_u64().unwrap() as u8,
        );
        let ft = v["free_threaded"].as_bool().unwrap_or(false);
        // The lookup the profiler uses: a free-threaded build without a table
        // of its own (3.13t: same opcodes as 3.13) uses the default build's.
        let Some(t) = table_for(major, minor, ft) else {
            loud(&format!(
                "SKIP {}: no generated table for {major}.{minor}{} \
                 (run python3 scripts/gen_opcodes.py with it available)",
                it.label,
                if ft { "t" } else { "" }
            ));
            continue;
        };
        let n = check_live(&it, &v, t);
        eprintln!(
            "ok {} ({major}.{minor}.{}{}, table {}): {n} specialized instructions in warmed code",
            it.label,
            ver[2],
            if ft { "t" } else { "" },
            t.version_string()
        );
        if !ft {
            assert!(n > 0, "{}: warmed code shows no specialization", it.label);
        }
        tested.insert((major, minor));
    }
    for minor in [11, 12, 13, 14, 15] {
        if !tested.contains(&(3, minor)) {
            loud(&format!(
                "SKIP 3.{minor}: not found; live bytecode untested"
            ));
        }
    }
}
