//! The line-table decoders against tables produced by real CPython interpreters.
//!
//! `tests/fixtures/linetables/pyX.Y.json` are written by `scripts/gen_linetable_fixtures.py`
//! (see its doc for the format): for every code object of `tests/scripts/linetable_sample.py`
//! compiled by that interpreter, the raw table and the line (and for 3.11+ the full
//! `co_positions()` location) of every instruction offset as the interpreter computes it.
//! Every fixture file is decoded (3.13t and the 3.14 debug build have no file of their own
//! when their output equals 3.13's / 3.14's; the script checks that).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use pyprof::code::linetable::{self, Location};
use pyprof::runtime::layout::LineTableKind;
use serde_json::Value;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/linetables")
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn opt_i32(v: &Value) -> Option<i32> {
    v.as_i64().map(|x| i32::try_from(x).expect("line fits i32"))
}

fn opt_u32(v: &Value) -> Option<u32> {
    v.as_u64()
        .map(|x| u32::try_from(x).expect("column fits u32"))
}

struct Fixture {
    name: String,
    data: Value,
}

fn load_fixtures() -> Vec<Fixture> {
    let dir = fixtures_dir();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let text = std::fs::read_to_string(dir.join(&name)).unwrap();
            let data: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            Fixture { name, data }
        })
        .collect()
}

fn kind_of(f: &Fixture) -> LineTableKind {
    match f.data["kind"].as_str() {
        Some("lnotab") => LineTableKind::Lnotab,
        Some("pep626") => LineTableKind::Pep626,
        Some("pep657") => LineTableKind::Pep657,
        other => panic!("{}: unknown kind {other:?}", f.name),
    }
}

#[derive(Default)]
struct Coverage {
    /// PEP 657 entry kinds seen (bit per kind).
    pep657_kinds: u16,
    lnotab_unsigned_big_delta: bool,
    lnotab_signed_negative: bool,
    pep626_no_line: bool,
    pep626_negative: bool,
}

#[test]
fn decoders_match_interpreters() {
    let fixtures = load_fixtures();
    assert!(
        !fixtures.is_empty(),
        "no fixtures in {}",
        fixtures_dir().display()
    );
    let mut failures: Vec<String> = Vec::new();
    let mut cov = Coverage::default();
    let mut summary = Vec::new();
    for f in &fixtures {
        let kind = kind_of(f);
        let major = f.data["major"].as_u64().unwrap() as u8;
        let minor = f.data["minor"].as_u64().unwrap() as u8;
        let expected_kind = match (major, minor) {
            (2, _) | (3, 0..=9) => LineTableKind::Lnotab,
            (3, 10) => LineTableKind::Pep626,
            _ => LineTableKind::Pep657,
        };
        assert_eq!(kind, expected_kind, "{}: kind vs version", f.name);
        if kind == LineTableKind::Lnotab {
            assert_eq!(
                f.data["signed_line_deltas"].as_bool(),
                Some(linetable::lnotab_signed(major, minor)),
                "{}",
                f.name
            );
        }
        let objects = f.data["code_objects"].as_array().expect("code_objects");
        let mut n_offsets = 0usize;
        // PEP 657 entry kinds seen in this fixture alone.
        let mut file_kinds = 0u16;
        for obj in objects {
            let path = obj["path"].as_str().unwrap();
            let first = obj["firstlineno"].as_i64().unwrap() as i32;
            let code_len = obj["code_len"].as_u64().unwrap() as u32;
            let table = unhex(obj["table"].as_str().unwrap());
            let lines = obj["lines"].as_array().unwrap();
            let offsets: Vec<u32> = match obj.get("offsets") {
                Some(v) => v
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|o| o.as_u64().unwrap() as u32)
                    .collect(),
                None => (0..code_len).step_by(2).collect(),
            };
            assert_eq!(
                offsets.len(),
                lines.len(),
                "{}: {path}: offsets vs lines",
                f.name
            );
            n_offsets += offsets.len();

            match kind {
                LineTableKind::Lnotab => {
                    for p in table.chunks_exact(2) {
                        if major == 2 && p[1] >= 128 {
                            cov.lnotab_unsigned_big_delta = true;
                        }
                        if major == 3 && (p[1] as i8) < 0 {
                            cov.lnotab_signed_negative = true;
                        }
                    }
                }
                LineTableKind::Pep626 => {
                    for p in table.chunks_exact(2) {
                        cov.pep626_no_line |= p[1] == 0x80;
                        cov.pep626_negative |= p[1] > 0x80;
                    }
                }
                LineTableKind::Pep657 => {
                    for &b in &table {
                        if b & 0x80 != 0 {
                            file_kinds |= 1 << ((b >> 3) & 15);
                        }
                    }
                    cov.pep657_kinds |= file_kinds;
                }
            }

            let ranges = linetable::line_ranges(kind, &table, first, code_len, major, minor);
            let range_line =
                |off: u32| ranges.iter().find(|r| r.0 <= off && off < r.1).map(|r| r.2);
            for (i, &off) in offsets.iter().enumerate() {
                let want = opt_i32(&lines[i]);
                let got = linetable::line_for_offset(kind, &table, first, off, major, minor);
                if got != want {
                    failures.push(format!(
                        "{}: {path}: offset {off}: line {got:?}, interpreter says {want:?}",
                        f.name
                    ));
                }
                if range_line(off) != Some(got) {
                    failures.push(format!(
                        "{}: {path}: offset {off}: line_ranges {:?} vs {got:?}",
                        f.name,
                        range_line(off)
                    ));
                }
            }

            if kind == LineTableKind::Pep657 {
                let positions = obj["positions"].as_array().expect("positions");
                assert_eq!(
                    positions.len(),
                    offsets.len(),
                    "{}: {path}: positions",
                    f.name
                );
                let locs = linetable::location_ranges(&table, first, code_len);
                for (i, p) in positions.iter().enumerate() {
                    let off = offsets[i];
                    let p = p.as_array().unwrap();
                    let want = opt_i32(&p[0]).map(|line| Location {
                        line,
                        end_line: opt_i32(&p[1]).expect("end_line with line"),
                        column: opt_u32(&p[2]),
                        end_column: opt_u32(&p[3]),
                    });
                    if want.is_none() {
                        assert!(p.iter().all(Value::is_null), "{}: {path}: {p:?}", f.name);
                    }
                    let got = linetable::pep657_location(&table, first, off);
                    if got != want {
                        failures.push(format!("{}: {path}: offset {off}: location {got:?}, co_positions says {want:?}", f.name));
                    }
                    let from_ranges = locs.iter().find(|r| r.0 <= off && off < r.1).map(|r| r.2);
                    if from_ranges != Some(got) {
                        failures.push(format!(
                            "{}: {path}: offset {off}: location_ranges {from_ranges:?} vs {got:?}",
                            f.name
                        ));
                    }
                }
            }
        }
        // Every PEP 657 version (3.11 - 3.15 so far; the format has not
        // changed) must itself exercise all 16 entry kinds, so a new
        // interpreter's tables are tested as thoroughly as the old ones.
        if kind == LineTableKind::Pep657 && file_kinds != 0xffff {
            failures.push(format!(
                "{}: PEP 657 entry kinds seen {file_kinds:016b}, want all 16",
                f.name
            ));
        }
        summary.push(format!(
            "{} ({}): {} code objects, {} offsets",
            f.name,
            f.data["python"].as_str().unwrap_or("?"),
            objects.len(),
            n_offsets
        ));
    }
    println!("{}", summary.join("\n"));
    if !failures.is_empty() {
        let n = failures.len();
        failures.truncate(60);
        panic!("{n} mismatches:\n{}", failures.join("\n"));
    }

    // The sample must keep exercising every encoding (only checked for the formats present).
    let kinds: Vec<_> = fixtures.iter().map(kind_of).collect();
    if kinds.contains(&LineTableKind::Pep657) {
        assert_eq!(
            cov.pep657_kinds, 0xffff,
            "PEP 657 entry kinds seen: {:016b}",
            cov.pep657_kinds
        );
    }
    if kinds.contains(&LineTableKind::Pep626) {
        assert!(
            cov.pep626_no_line && cov.pep626_negative,
            "3.10 tables lack no-line or negative deltas"
        );
    }
    if fixtures.iter().any(|f| f.data["major"] == 2) {
        assert!(
            cov.lnotab_unsigned_big_delta,
            "2.7 tables lack line deltas >= 128"
        );
    }
    if fixtures
        .iter()
        .any(|f| f.data["major"] == 3 && kind_of(f) == LineTableKind::Lnotab)
    {
        assert!(
            cov.lnotab_signed_negative,
            "3.6-3.9 tables lack negative line deltas"
        );
    }
}

/// The fixtures are what the interpreters on this machine produce today (a missing
/// interpreter the README marks verified fails).
#[test]
fn fixtures_are_current() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("python3")
        .args(["scripts/gen_linetable_fixtures.py", "--all", "--check"])
        .current_dir(root)
        .output()
        .expect("running python3 scripts/gen_linetable_fixtures.py --all --check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "fixture drift (regenerate with `python3 scripts/gen_linetable_fixtures.py --all`):\n{stdout}\n{stderr}"
    );
    common::check_drift_output(
        "gen_linetable_fixtures.py --check",
        &format!("{stdout}\n{stderr}"),
    );
}
