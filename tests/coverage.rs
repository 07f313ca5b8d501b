//! The suite's coverage cannot vanish silently: every interpreter the README's version
//! table marks ✓ must be present when the tests run (the test command installs them).
//! A missing one fails this test unless PYPROF_WAIVE_PYTHONS names it, and every waiver
//! is a notice printed at the end of the run.

mod common;

use common::*;

/// The version keys of the README's table rows marked ✓ in "stacks, lines, threads".
fn readme_versions() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = text
        .split("## Supported versions")
        .nth(1)
        .expect("README has a Supported versions section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut out = Vec::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | version | interpreter | stacks | opcodes | notes |
        if cells.len() < 6 || !cells[1].starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        if !cells[3].contains('✓') {
            continue;
        }
        out.extend(cells[1].split(',').map(|v| v.trim().to_string()));
    }
    out
}

#[test]
fn every_interpreter_the_readme_marks_verified_is_present() {
    let want = readme_versions();
    assert!(
        want.len() >= 15,
        "the README's version table lists only {want:?}: did its format change?"
    );
    let found = pythons();
    let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
    let mut missing = Vec::new();
    for v in &want {
        if keys.contains(&v.as_str()) {
            continue;
        }
        if waived(v) {
            notice(&format!(
                "WAIVED python {v}: listed as verified in README.md but not present (PYPROF_WAIVE_PYTHONS)"
            ));
            continue;
        }
        missing.push(v.clone());
    }
    assert!(
        missing.is_empty(),
        "README.md marks {missing:?} verified, but they are not present (found {keys:?}). \
         The test command installs them (scripts/install-pythons.sh); to run without one, \
         name it in PYPROF_WAIVE_PYTHONS"
    );
    // And nothing is tested that the README does not list.
    let unlisted: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| !want.iter().any(|w| w == k))
        .collect();
    for k in unlisted {
        notice(&format!(
            "NOTE python {k} is tested but not listed as verified in README.md"
        ));
    }
}

#[test]
fn readme_table_parses_into_version_keys() {
    let v = readme_versions();
    assert!(v.contains(&"3.6.15".to_string()) && v.contains(&"3.7.16".to_string()));
    assert!(v.contains(&"3.14.10 debug".to_string()), "{v:?}");
    assert!(v
        .iter()
        .all(|k| k.starts_with(|c: char| c.is_ascii_digit())));
}
