//! 3.13+ targets are walked with their own `_Py_DebugOffsets`: a deliberately wrong
//! built-in table still walks correctly, and the mismatch is reported.

mod common;

use common::*;
use pyprof::process::LiveMemory;
use pyprof::profile::{Meta, Profile};
use pyprof::runtime::{self, layouts};
use pyprof::sampler::Session;

#[test]
fn wrong_builtin_table_is_overridden_by_the_targets_debug_offsets() {
    let pythons: Vec<Python> = pythons()
        .into_iter()
        .filter(|p| p.at_least(3, 13))
        .collect();
    assert!(
        !pythons.is_empty(),
        "no Python 3.13+ to test (the README marks 3.13.0, 3.13.15, 3.14 and 3.15 verified)"
    );
    let mut failures = Vec::new();
    for py in &pythons {
        let target = Target::spawn(py, "blocked.py", &[]);
        let mem = LiveMemory::new(target.pid);
        let honest = runtime::discover(target.pid, &mem).expect("discover");
        let base = layouts::builtin(
            honest.version.major,
            honest.version.minor,
            honest.version.free_threaded,
        )
        .or_else(|| layouts::newest(honest.version.free_threaded))
        .expect("a table");
        // Every offset the debug table carries, shifted to garbage.
        let mut wrong = base.clone();
        wrong.tstate_next += 8;
        wrong.tstate_frame += 16;
        wrong.interp_tstate_head += 8;
        wrong.frame_back += 8;
        wrong.frame_code += 24;
        wrong.frame_instr += 8;
        wrong.code_name += 8;
        wrong.code_filename += 16;
        wrong.code_firstlineno += 4;
        wrong.code_linetable += 8;
        wrong.code_qualname = wrong.code_qualname.map(|q| q + 8);
        let rt = runtime::discover_with(target.pid, &mem, Some(&wrong)).expect("discover_with");
        let result = (|| -> Result<String, String> {
            if rt.layout_source != "target's _Py_DebugOffsets" {
                return Err(format!("layout from {}", rt.layout_source));
            }
            for field in [
                "tstate_next",
                "frame_back",
                "code_name",
                "code_filename",
                "code_qualname",
            ] {
                if !rt
                    .layout_mismatches
                    .iter()
                    .any(|m| m.contains(&format!("{field}:")))
                {
                    return Err(format!(
                        "mismatch of {field} not reported: {:?}",
                        rt.layout_mismatches
                    ));
                }
            }
            let mut session = Session::with_runtime(target.pid, rt.clone(), 1000, false);
            let mut profile = Profile::new(Meta::default());
            for _ in 0..5 {
                let errors = session.sample(&mut profile, pyprof::sampler::SamplerKind::Ptrace);
                if !errors.is_empty() {
                    return Err(format!("errors {errors:?}"));
                }
            }
            let data = profile.to_data();
            let got: Vec<(String, i32)> = stacks(&data)[0].1.clone();
            let want = vec![
                (
                    "<module>".to_string(),
                    marker_line("blocked.py", "module_call"),
                ),
                ("main".to_string(), marker_line("blocked.py", "main_call")),
                (
                    "Worker.run".to_string(),
                    marker_line("blocked.py", "run_call"),
                ),
                ("leaf".to_string(), marker_line("blocked.py", "sleep")),
            ];
            if got != want {
                return Err(format!("walked {got:?}"));
            }
            Ok(format!(
                "{} mismatches reported, stack exact",
                rt.layout_mismatches.len()
            ))
        })();
        match result {
            Ok(m) => eprintln!("debug offsets {}: ok {m}", py.label),
            Err(e) => {
                eprintln!("debug offsets {}: FAILED {e}", py.label);
                failures.push(format!("{}: {e}", py.label));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn honest_table_matches_the_targets_debug_offsets() {
    for py in pythons().into_iter().filter(|p| p.at_least(3, 13)) {
        let target = Target::spawn(&py, "blocked.py", &[]);
        let mem = LiveMemory::new(target.pid);
        let rt = runtime::discover(target.pid, &mem).expect("discover");
        assert_eq!(
            rt.layout_source, "target's _Py_DebugOffsets",
            "{}",
            py.label
        );
        let real_mismatches: Vec<_> = rt
            .layout_mismatches
            .iter()
            .filter(|m| m.contains("differ"))
            .collect();
        assert!(
            real_mismatches.is_empty(),
            "{}: built-in table disagrees with the target: {real_mismatches:?}",
            py.label
        );
        eprintln!(
            "debug offsets {}: built-in table agrees with the target ({})",
            py.label, rt.version
        );
    }
}

#[test]
fn debug_offset_schemas_match_the_headers() {
    let o = std::process::Command::new("python3")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gen_debug_offsets.py"))
        .arg("--check")
        .output()
        .expect("python3");
    let out = String::from_utf8_lossy(&o.stdout);
    eprintln!("{out}");
    assert!(o.status.success(), "schemas drifted: {out}");
    let err = String::from_utf8_lossy(&o.stderr);
    check_drift_output("gen_debug_offsets.py --check", &format!("{out}\n{err}"));
}
