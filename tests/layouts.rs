//! The generated `Layout` tables: they must match the interpreters' own headers
//! (`scripts/gen_layouts.py --check`), and hold together.

mod common;

use std::process::Command;

use pyprof::runtime::layout::{FrameKind, Layout, LineTableKind, StringKind};
use pyprof::runtime::layouts::builtin;

const VERSIONS: &[(u8, u8)] = &[
    (2, 7),
    (3, 6),
    (3, 7),
    (3, 8),
    (3, 9),
    (3, 10),
    (3, 11),
    (3, 12),
    (3, 13),
];

fn layout(major: u8, minor: u8) -> &'static Layout {
    builtin(major, minor, false).unwrap_or_else(|| panic!("no builtin layout for {major}.{minor}"))
}

/// Re-run the C probe against every interpreter present and compare with generated.rs.
/// An interpreter the README marks verified that is absent fails the check.
#[test]
fn generated_layouts_match_headers() {
    let root = env!("CARGO_MANIFEST_DIR");
    let output = Command::new("python3")
        .arg("scripts/gen_layouts.py")
        .arg("--check")
        .current_dir(root)
        .output()
        .expect("run python3 scripts/gen_layouts.py --check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "gen_layouts.py --check failed ({}): the generated layouts drifted from the headers \
         (regenerate with `python3 scripts/gen_layouts.py`)\n{stdout}{stderr}",
        output.status
    );
    common::check_drift_output("gen_layouts.py --check", &format!("{stdout}\n{stderr}"));
}

#[test]
fn builtin_covers_every_version() {
    for &(major, minor) in VERSIONS {
        let l = layout(major, minor);
        assert_eq!((l.major, l.minor, l.free_threaded), (major, minor, false));
        let expected = if (major, minor) >= (3, 11) {
            FrameKind::Interpreter
        } else {
            FrameKind::Object
        };
        assert_eq!(l.frame_kind, expected, "{major}.{minor} frame_kind");
    }
    assert!(builtin(3, 5, false).is_none());
    assert!(builtin(3, 12, true).is_none());
    for minor in [13, 14, 15] {
        assert!(builtin(3, minor, true).is_some(), "3.{minor}t");
    }
    assert!(builtin(4, 0, false).is_none());
}

#[test]
fn kinds_per_version() {
    for &(major, minor) in VERSIONS {
        let l = layout(major, minor);
        let strings = if major == 2 {
            StringKind::Bytes
        } else {
            StringKind::Unicode
        };
        assert_eq!(l.string_kind, strings, "{major}.{minor} string_kind");
        let lines = match (major, minor) {
            (3, 10) => LineTableKind::Pep626,
            (3, m) if m >= 11 => LineTableKind::Pep657,
            _ => LineTableKind::Lnotab,
        };
        assert_eq!(l.line_table, lines, "{major}.{minor} line_table");
    }
}

#[test]
fn sanity_of_offsets() {
    for &(major, minor) in VERSIONS {
        let v = (major, minor);
        let l = layout(major, minor);
        let name = format!("{major}.{minor}");

        // Default (GIL) builds: PyObject is { ob_refcnt, ob_type }.
        assert_eq!(l.ob_type, 8, "{name} ob_type");
        assert_eq!(l.ob_size, 16, "{name} ob_size");
        assert_eq!(l.type_name, 24, "{name} tp_name");

        // Where the current frame hangs off the thread state.
        let cframe = v == (3, 11) || v == (3, 12);
        assert_eq!(l.cframe_current_frame.is_some(), cframe, "{name} cframe");

        // The runtime structure and the GIL.
        assert_eq!(
            l.runtime_interp_head.is_some(),
            v >= (3, 7),
            "{name} _PyRuntime"
        );
        assert_eq!(
            l.runtime_interp_main.is_some(),
            v >= (3, 7),
            "{name} _PyRuntime"
        );
        let runtime_gil = ((3, 7)..=(3, 11)).contains(&v);
        assert_eq!(
            l.runtime_gil_last_holder.is_some(),
            runtime_gil,
            "{name} gil"
        );
        assert_eq!(l.runtime_gil_locked.is_some(), runtime_gil, "{name} gil");
        assert_eq!(
            l.interp_gil_ptr.is_some(),
            v >= (3, 12),
            "{name} interp gil"
        );
        assert_eq!(
            l.gil_last_holder.is_some(),
            v >= (3, 12),
            "{name} interp gil"
        );
        assert_eq!(l.gil_locked.is_some(), v >= (3, 12), "{name} interp gil");

        // Fields that exist only from 3.11 (interpreter frames, inline bytecode).
        let new = v >= (3, 11);
        assert_eq!(l.tstate_native_thread_id.is_some(), new, "{name}");
        assert_eq!(l.frame_owner.is_some(), new, "{name}");
        assert_eq!(l.code_qualname.is_some(), new, "{name}");
        assert_eq!(l.code_adaptive.is_some(), new, "{name}");
        assert_eq!(l.code_firsttraceable.is_some(), new, "{name}");
        assert_eq!(l.code_code.is_some(), !new, "{name}");

        let cstack = if v == (3, 12) || v == (3, 13) {
            Some(3)
        } else {
            None
        };
        assert_eq!(l.owner_cstack, cstack, "{name} owner_cstack");
        assert_eq!(l.owner_interpreter, None, "{name} owner_interpreter");
        assert_eq!(l.frame_tlbc_index, None, "{name}");
        assert_eq!(l.code_tlbc, None, "{name}");

        // Pointer-sized fields are 8-aligned, and distinct fields of a struct differ.
        for (what, off) in [
            ("tstate_next", l.tstate_next),
            ("tstate_interp", l.tstate_interp),
            ("tstate_frame", l.tstate_frame),
            ("frame_back", l.frame_back),
            ("frame_code", l.frame_code),
            ("code_filename", l.code_filename),
            ("code_name", l.code_name),
            ("code_linetable", l.code_linetable),
        ] {
            assert_eq!(off % 8, 0, "{name} {what} = {off} is not pointer-aligned");
        }
        assert_ne!(l.frame_back, l.frame_code, "{name}");
        assert_ne!(l.code_filename, l.code_name, "{name}");
        assert_ne!(l.tstate_next, l.tstate_frame, "{name}");

        if major == 3 {
            assert_eq!(
                l.unicode_kind_shift, 2,
                "{name} state.kind follows 2 bits of interned"
            );
            assert_eq!(l.unicode_length, 16, "{name}");
            assert!(l.unicode_compact_size > l.unicode_ascii_size, "{name}");
            assert!(l.bytes_sval > l.ob_size, "{name}");
        } else {
            assert_eq!(l.unicode_ascii_size, 0);
            assert_eq!(l.unicode_compact_size, 0);
        }
    }

    // Known values, cross-checked against the interpreters.
    let py312 = layout(3, 12);
    assert_eq!(py312.frame_code, 0, "3.12 _PyInterpreterFrame.f_code");
    assert_eq!(py312.frame_back, 8, "3.12 _PyInterpreterFrame.previous");
    let py311 = layout(3, 11);
    assert!(
        py311.cframe_current_frame.is_some(),
        "3.11 PyThreadState.cframe"
    );
    let py313 = layout(3, 13);
    assert_eq!(
        py313.cframe_current_frame, None,
        "3.13 has current_frame in the tstate"
    );
}

/// Free-threaded tables: a bigger object header, no GIL fields read, and from 3.14 on the
/// thread-local bytecode fields (each thread executes its own copy of the bytecode).
#[test]
fn free_threaded_tables() {
    for minor in [13u8, 14, 15] {
        let ft =
            builtin(3, minor, true).unwrap_or_else(|| panic!("no builtin layout for 3.{minor}t"));
        let default =
            builtin(3, minor, false).unwrap_or_else(|| panic!("no builtin layout for 3.{minor}"));
        let name = format!("3.{minor}t");
        assert_eq!(
            (ft.major, ft.minor, ft.free_threaded),
            (3, minor, true),
            "{name}"
        );
        // { ob_tid, ob_flags/mutex/gc_bits/ref_local, ob_ref_shared, ob_type }
        assert_eq!(ft.ob_type, 24, "{name} ob_type");
        assert!(ft.ob_size > ft.ob_type, "{name} ob_size");
        // The frame does not change its shape with the build, but for tlbc_index.
        assert_eq!(ft.frame_back, default.frame_back, "{name} frame_back");
        assert_eq!(ft.frame_code, default.frame_code, "{name} frame_code");
        assert_eq!(ft.frame_instr, default.frame_instr, "{name} frame_instr");
        assert_eq!(
            ft.frame_code_tag_mask, default.frame_code_tag_mask,
            "{name} tag mask"
        );
        assert_eq!(ft.owner_cstack, default.owner_cstack, "{name} owner_cstack");
        assert_eq!(default.frame_tlbc_index, None, "3.{minor} tlbc_index");
        assert_eq!(default.code_tlbc, None, "3.{minor} co_tlbc");
        let tlbc = minor >= 14;
        assert_eq!(ft.frame_tlbc_index.is_some(), tlbc, "{name} tlbc_index");
        assert_eq!(ft.code_tlbc.is_some(), tlbc, "{name} co_tlbc");
        assert_eq!(ft.code_array_size.is_some(), tlbc, "{name} _PyCodeArray");
        assert_eq!(ft.code_array_entries.is_some(), tlbc, "{name} _PyCodeArray");
        if let (Some(idx), Some(owner)) = (ft.frame_tlbc_index, ft.frame_owner) {
            assert!(
                idx > ft.frame_instr && idx < owner,
                "{name}: tlbc_index sits between instr_ptr and owner"
            );
        }
        if let Some(co_tlbc) = ft.code_tlbc {
            assert_eq!(co_tlbc % 8, 0, "{name} co_tlbc is a pointer");
            assert!(co_tlbc < ft.code_adaptive.unwrap_or(0), "{name} co_tlbc");
            assert_eq!(ft.code_array_size, Some(0), "{name} _PyCodeArray.size");
            assert_eq!(
                ft.code_array_entries,
                Some(8),
                "{name} _PyCodeArray.entries"
            );
        }
    }
}
