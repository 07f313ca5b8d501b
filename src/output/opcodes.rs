//! The opcode report (`-f opcodes`): which bytecode instructions take the time, how well
//! the specializing interpreter (3.11+) did per base opcode, and the hottest
//! (function, line, instruction) spots. Plain text for an 80-column terminal; colour only
//! when asked (on a TTY).

use super::short_filename;
use crate::code::opcodes::{self, OpcodeTable};
use crate::profile::{InstructionStat, ProfileData};
use crate::runtime::Version;
use anyhow::Result;
use std::collections::BTreeMap;
use std::io::Write;

/// How an executed opcode relates to its base instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Form {
    /// The base instruction itself (generic, or not yet specialized).
    Generic,
    /// 3.11's `*_ADAPTIVE` forms (and 3.12+ family heads counting down to specialize).
    Adaptive,
    /// A specialized form (`LOAD_ATTR_INSTANCE_VALUE`, `BINARY_OP_ADD_INT`, ...).
    Specialized,
    /// `INSTRUMENTED_*`: tracing or sys.monitoring is active.
    Instrumented,
    /// `ENTER_EXECUTOR`: a tier-2 trace.
    Executor,
}

/// The opcode table of the profile's Python version, if we have one.
pub fn table_of(data: &ProfileData) -> Option<&'static OpcodeTable> {
    let v = data.meta.python_version.trim_end_matches('t');
    let ft = data.meta.python_version.ends_with('t');
    let v = Version::parse(v)?;
    opcodes::table_for(v.major, v.minor, ft)
}

pub fn form(table: Option<&OpcodeTable>, opcode: &str, base: &str) -> Form {
    if opcode.starts_with("INSTRUMENTED_") {
        return Form::Instrumented;
    }
    if opcode == "ENTER_EXECUTOR" {
        return Form::Executor;
    }
    if opcode == base {
        return Form::Generic;
    }
    let adaptive = match table.and_then(|t| t.opcode(opcode).map(|op| t.is_adaptive(op))) {
        Some(a) => a,
        None => opcode.ends_with("_ADAPTIVE"),
    };
    if adaptive {
        Form::Adaptive
    } else {
        Form::Specialized
    }
}

struct Style {
    color: bool,
}

impl Style {
    fn bold(&self, s: &str) -> String {
        if self.color {
            format!("\x1b[1m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn hot(&self, s: &str) -> String {
        if self.color {
            format!("\x1b[1;31m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

/// Cut `s` to `n` characters, marking the cut with `…`.
pub fn fit(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// `n` as a percentage of `total` (0 when there is no total).
pub fn pct(n: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        100.0 * n as f64 / total as f64
    }
}

/// Write the report. `top` limits each table.
pub fn write(data: &ProfileData, w: &mut dyn Write, color: bool, top: usize) -> Result<()> {
    let st = Style { color };
    let stats = if data.instructions.is_empty() {
        data.instruction_stats()
    } else {
        data.instructions.clone()
    };
    let table = table_of(data);
    let m = &data.meta;
    writeln!(
        w,
        "{}",
        st.bold(&fit(
            &format!(
                "pyprof opcodes · {} · Python {}",
                m.target, m.python_version
            ),
            80
        ))
    )?;
    writeln!(
        w,
        "{} samples at {} Hz over {:.1} s ({}), {} errors",
        m.samples,
        m.rate_hz,
        m.duration_secs,
        m.mode,
        m.error_count()
    )?;
    for note in &m.notes {
        writeln!(w, "note: {note}")?;
    }
    let total: u64 = stats.iter().map(|s| s.samples).sum();
    if !m.opcodes || stats.is_empty() {
        writeln!(w)?;
        if !m.opcodes {
            writeln!(w, "No opcodes in this profile: record it with --opcodes.")?;
        } else {
            writeln!(w, "No samples with an instruction were taken.")?;
        }
        return Ok(());
    }

    // Top opcodes by self samples.
    let mut by_op: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for s in &stats {
        *by_op.entry((&s.opcode, &s.base_opcode)).or_insert(0) += s.samples;
    }
    let mut ops: Vec<_> = by_op.into_iter().collect();
    ops.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    writeln!(w)?;
    writeln!(w, "{}", st.bold("Top opcodes by self samples"))?;
    writeln!(w, "{:>8} {:>6}  {:<34} base", "samples", "%", "opcode")?;
    for (i, ((op, base), n)) in ops.iter().take(top).enumerate() {
        let base_col = if op == base { "" } else { base };
        let line = format!(
            "{:>8} {:>5.1}%  {:<34} {:<26}",
            n,
            pct(*n, total),
            fit(op, 34),
            fit(base_col, 26)
        );
        writeln!(
            w,
            "{}",
            if i == 0 {
                st.hot(line.trim_end())
            } else {
                line.trim_end().to_string()
            }
        )?;
    }

    // Specialization health per base opcode.
    writeln!(w)?;
    let specializing = table.map(|t| t.has_inline_caches()).unwrap_or(false);
    writeln!(
        w,
        "{}",
        st.bold("Specialization health (share of each base opcode's samples)")
    )?;
    if !specializing {
        writeln!(
            w,
            "Python {} has no specializing interpreter (3.11+): every opcode is generic.",
            m.python_version
        )?;
    } else {
        let mut bases: BTreeMap<&str, (u64, BTreeMap<Form, u64>, BTreeMap<&str, u64>)> =
            BTreeMap::new();
        for s in &stats {
            let e = bases.entry(&s.base_opcode).or_default();
            e.0 += s.samples;
            *e.1.entry(form(table, &s.opcode, &s.base_opcode))
                .or_insert(0) += s.samples;
            *e.2.entry(&s.opcode).or_insert(0) += s.samples;
        }
        let mut rows: Vec<_> = bases.into_iter().collect();
        rows.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(b.0)));
        writeln!(
            w,
            "{:<24} {:>7} {:>6} {:>6} {:>6}  main form",
            "base", "samples", "spec", "adapt", "generic"
        )?;
        for (base, (n, forms, by_name)) in rows.iter().take(top) {
            let f = |k: Form| pct(*forms.get(&k).unwrap_or(&0), *n);
            let (main, main_n) = by_name
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                .map(|(k, v)| (*k, *v))
                .unwrap_or(("", 0));
            let mut line = format!(
                "{:<24} {:>7} {:>5.1}% {:>5.1}% {:>6.1}%  {} {:.0}%",
                fit(base, 24),
                n,
                f(Form::Specialized),
                f(Form::Adaptive),
                f(Form::Generic),
                fit(main, 19),
                pct(main_n, *n)
            );
            let other = f(Form::Instrumented) + f(Form::Executor);
            if other > 0.0 {
                line.push_str(&format!(" (+{other:.0}% instr.)"));
            }
            writeln!(w, "{line}")?;
        }
    }

    // Hotspots.
    writeln!(w)?;
    writeln!(w, "{}", st.bold("Hotspots: function, line and instruction"))?;
    writeln!(
        w,
        "{:>6} {:>7}  {:<36} {:>6}  {}",
        "%", "samples", "function (file:line)", "offset", "opcode"
    )?;
    for (i, s) in stats.iter().take(top).enumerate() {
        let line = hotspot_line(s, total, &m.cwd);
        writeln!(w, "{}", if i == 0 { st.hot(&line) } else { line })?;
    }
    Ok(())
}

fn hotspot_line(s: &InstructionStat, total: u64, cwd: &str) -> String {
    let file = short_filename(&s.file, cwd);
    let file = file.rsplit('/').next().unwrap_or(file);
    let place = format!("{} ({}:{})", s.function, file, s.line);
    format!(
        "{:>5.1}% {:>7}  {:<36} {:>6}  {}",
        pct(s.samples, total),
        s.samples,
        fit(&place, 36),
        s.offset,
        fit(&s.opcode, 18)
    )
}
