//! `pyprof diff`: a differential flamegraph of two profiles (inferno's differential mode:
//! drawn as AFTER, red where AFTER spends a larger share than BEFORE, blue where less)
//! and an opcode-level table of what changed — "before/after an optimisation", or
//! "3.10 vs 3.12 on the same program".

use super::{collapsed, RenderOptions};
use crate::profile::ProfileData;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::io::Write;

/// Write the differential SVG. Counts of BEFORE are scaled to AFTER's total (so the colours
/// show shares, not a change of duration or rate).
pub fn write_svg(
    before: &ProfileData,
    after: &ProfileData,
    opts: &RenderOptions,
    w: &mut dyn Write,
) -> Result<()> {
    let a = collapsed::lines(before, opts).join("\n");
    let b = collapsed::lines(after, opts).join("\n");
    let mut folded = Vec::new();
    let dopt = inferno::differential::Options {
        normalize: true,
        ..Default::default()
    };
    inferno::differential::from_readers(dopt, a.as_bytes(), b.as_bytes(), &mut folded)
        .context("comparing the profiles")?;
    let text = String::from_utf8_lossy(&folded);
    let mut o = inferno::flamegraph::Options::default();
    o.title = format!("pyprof diff: {} → {}", label(before), label(after));
    o.subtitle = Some("red: larger share after, blue: smaller share after (widths: after)".into());
    o.count_name = "samples".into();
    o.min_width = 0.05;
    if text.trim().is_empty() {
        anyhow::bail!("both profiles are empty: nothing to compare");
    }
    inferno::flamegraph::from_lines(&mut o, text.lines(), w).context("drawing the flamegraph")?;
    Ok(())
}

fn label(d: &ProfileData) -> String {
    format!("{} (Python {})", d.meta.target, d.meta.python_version)
}

/// Shares of self samples per (opcode) and per (function) in both profiles, by largest
/// change first.
pub fn write_table(
    before: &ProfileData,
    after: &ProfileData,
    w: &mut dyn Write,
    top: usize,
) -> Result<()> {
    writeln!(w, "pyprof diff")?;
    writeln!(
        w,
        "  before: {} · {} samples",
        label(before),
        before.total_samples()
    )?;
    writeln!(
        w,
        "  after:  {} · {} samples",
        label(after),
        after.total_samples()
    )?;
    let shares = |d: &ProfileData, key: &dyn Fn(&crate::profile::Frame) -> Option<String>| {
        let mut m: BTreeMap<String, u64> = BTreeMap::new();
        let mut total = 0;
        for s in &d.stacks {
            total += s.count;
            if let Some(k) = s
                .frames
                .last()
                .and_then(|&i| d.frames.get(i as usize))
                .and_then(key)
            {
                *m.entry(k).or_insert(0) += s.count;
            }
        }
        let total = total.max(1) as f64;
        m.into_iter()
            .map(|(k, v)| (k, 100.0 * v as f64 / total))
            .collect::<BTreeMap<_, _>>()
    };
    let sections: [(&str, Box<dyn Fn(&crate::profile::Frame) -> Option<String>>); 2] = [
        ("opcode (self samples)", Box::new(|f| f.opcode.clone())),
        (
            "function (self samples)",
            Box::new(|f| Some(f.function.clone())),
        ),
    ];
    for (title, key) in sections.iter() {
        let (a, b) = (shares(before, key.as_ref()), shares(after, key.as_ref()));
        if a.is_empty() && b.is_empty() {
            writeln!(w, "\n{title}: no data (record with --opcodes)")?;
            continue;
        }
        let mut rows: Vec<(String, f64, f64)> = a
            .keys()
            .chain(b.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|k| {
                (
                    k.clone(),
                    a.get(k).copied().unwrap_or(0.0),
                    b.get(k).copied().unwrap_or(0.0),
                )
            })
            .collect();
        rows.sort_by(|x, y| {
            (y.2 - y.1)
                .abs()
                .total_cmp(&(x.2 - x.1).abs())
                .then(x.0.cmp(&y.0))
        });
        writeln!(
            w,
            "\n{:<40} {:>8} {:>8} {:>8}",
            title, "before", "after", "change"
        )?;
        for (k, x, y) in rows.into_iter().take(top) {
            writeln!(
                w,
                "{:<40} {:>7.1}% {:>7.1}% {:>+7.1}",
                super::opcodes::fit(&k, 40),
                x,
                y,
                y - x
            )?;
        }
    }
    Ok(())
}
