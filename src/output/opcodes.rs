//! The opcode report (`-f opcodes`): which bytecode instructions take the time, how well
//! the specializing interpreter (3.11+) did for each instruction that can specialize, the
//! hot sites that ran unspecialized or polymorphic with the reason, and the hottest
//! (function, line, instruction) spots. Plain text that fits the terminal's width (rows
//! wrap, nothing is cut; full width in files); colour only on a terminal without
//! `NO_COLOR`.

use super::specialization::{self as spec, State};
use super::text::{paragraph, row, width_of};
use super::{FileNames, RenderOptions, TextStyle};
use crate::code::opcodes::{self, OpcodeTable};
use crate::profile::{InstructionStat, ProfileData, SpecializationProblem};
use crate::runtime::Version;
use anyhow::Result;
use std::collections::BTreeMap;
use std::io::Write;

/// The opcode table of the profile's Python version, if we have one.
pub fn table_of(data: &ProfileData) -> Option<&'static OpcodeTable> {
    let v = data.meta.python_version.trim_end_matches('t');
    let ft = data.meta.python_version.ends_with('t');
    let v = Version::parse(v)?;
    opcodes::table_for(v.major, v.minor, ft)
}

struct Paint {
    color: bool,
}

impl Paint {
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

/// Native samples by file, most first, each with its share: "libz.so.1 97%, libc.so.6 3%".
pub fn native_files(native: &BTreeMap<String, u64>) -> String {
    let n: u64 = native.values().sum();
    let mut objs: Vec<(&String, &u64)> = native.iter().collect();
    objs.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    objs.iter()
        .map(|(o, k)| format!("{o} {}", share_text(pct(**k, n))))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A share in whole percent, "<1%" for a small one that is not nothing.
pub fn share_text(p: f64) -> String {
    if p > 0.0 && p < 0.5 {
        "<1%".to_string()
    } else {
        format!("{p:.0}%")
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
pub fn write(data: &ProfileData, w: &mut dyn Write, style: TextStyle, top: usize) -> Result<()> {
    let p = Paint { color: style.color };
    let width = style.width;
    let out = |w: &mut dyn Write, lines: Vec<String>| -> Result<()> {
        for l in lines {
            writeln!(w, "{l}")?;
        }
        Ok(())
    };
    let stats = if data.instructions.is_empty() {
        data.instruction_stats()
    } else {
        data.instructions.clone()
    };
    let table = table_of(data);
    let names = FileNames::new(data, &RenderOptions::default());
    let m = &data.meta;
    for l in paragraph(
        width,
        "",
        2,
        &format!(
            "pyprof opcodes · {} · Python {}",
            m.target, m.python_version
        ),
    ) {
        writeln!(w, "{}", p.bold(&l))?;
    }
    out(
        w,
        paragraph(
            width,
            "",
            2,
            &format!(
                "{} samples at {} Hz over {:.1} s ({}), {} errors",
                m.samples,
                m.rate_hz,
                m.duration_secs,
                m.mode,
                m.error_count()
            ),
        ),
    )?;
    for note in &m.notes {
        out(w, paragraph(width, "note: ", 6, note))?;
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
    let specializing = table.map(|t| t.has_inline_caches()).unwrap_or(false);

    // Where threads were: with the instruction pointer seen, samples in native code an
    // instruction called are told apart from the instruction's own time.
    let seen = m.ip_seen > 0;
    let native_total: u64 = stats.iter().map(|s| s.native_samples()).sum();
    let mut native_of_op: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for s in &stats {
        *native_of_op.entry((&s.opcode, &s.base_opcode)).or_insert(0) += s.native_samples();
    }
    let native_col = |n: u64, of: u64| -> String {
        if !seen {
            String::new()
        } else if n == 0 {
            format!("{:>7} ", "-")
        } else {
            format!("{:>6.1}% ", pct(n, of))
        }
    };
    let native_head = if seen {
        format!("{:>7} ", "native")
    } else {
        String::new()
    };
    writeln!(w)?;
    out(
        w,
        paragraph(width, "", 0, &native_summary(m, native_total, total)),
    )?;

    // Top opcodes by self samples.
    let mut by_op: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for s in &stats {
        *by_op.entry((&s.opcode, &s.base_opcode)).or_insert(0) += s.samples;
    }
    let mut ops: Vec<_> = by_op.into_iter().collect();
    ops.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    ops.truncate(top);
    writeln!(w)?;
    writeln!(w, "{}", p.bold("Top opcodes by self samples"))?;
    let op_w = ops
        .iter()
        .map(|((op, _), _)| width_of(op))
        .max()
        .unwrap_or(6);
    let pads = [op_w, 0];
    let head = if specializing { "state" } else { "base" };
    out(
        w,
        row(
            width,
            &format!("{:>8} {:>6} {native_head} ", "samples", "%"),
            &["opcode".into(), head.into()],
            &pads,
        ),
    )?;
    for (i, ((op, base), n)) in ops.iter().enumerate() {
        let native = native_col(*native_of_op.get(&(*op, *base)).unwrap_or(&0), *n);
        let kind = if specializing {
            let k = spec::kind_label(table, op, base);
            if op != base {
                format!("{k} · {base}")
            } else {
                k.to_string()
            }
        } else if op != base {
            base.to_string()
        } else {
            String::new()
        };
        let lines = row(
            width,
            &format!("{:>8} {:>5.1}% {native} ", n, pct(*n, total)),
            &[op.to_string(), kind],
            &pads,
        );
        for l in lines {
            writeln!(w, "{}", if i == 0 { p.hot(&l) } else { l })?;
        }
    }

    // Native code the hot instructions called.
    if native_total > 0 {
        writeln!(w)?;
        writeln!(w, "{}", p.bold("Native code called from instructions"))?;
        native_table(w, width, &names, &stats, total, top)?;
    }

    // Specialization health, for the instructions that can specialize.
    writeln!(w)?;
    writeln!(w, "{}", p.bold("Specialization health"))?;
    let sites = spec::sites(&stats);
    match table.filter(|_| specializing) {
        None => out(
            w,
            paragraph(
                width,
                "",
                0,
                &format!(
                    "Python {} has no specializing interpreter (3.11+): every instruction runs \
                     in its one generic form.",
                    m.python_version
                ),
            ),
        )?,
        Some(t) => health(w, width, t, &stats, &sites, top)?,
    }

    // Problems, explained.
    if specializing {
        // Derived data: worked out again (a saved profile may come from an older pyprof).
        let problems = spec::problems(data);
        writeln!(w)?;
        writeln!(w, "{}", p.bold("Specialization problems, explained"))?;
        out(
            w,
            paragraph(
                width,
                "",
                0,
                &format!(
                    "Hot sites (at least {}% of samples) that ran unspecialized in {}% or more \
                     of their samples, or in two or more specialized forms (polymorphic).",
                    spec::HOT_SHARE,
                    spec::UNSPECIALIZED_SHARE
                ),
            ),
        )?;
        if problems.is_empty() {
            writeln!(w, "None: every hot site ran in one specialized form.")?;
        }
        for (i, pr) in problems.iter().take(top).enumerate() {
            problem(w, &p, width, &names, i + 1, pr)?;
        }
    }

    // Hotspots.
    writeln!(w)?;
    writeln!(w, "{}", p.bold("Hotspots: function, line and instruction"))?;
    let hot: Vec<&InstructionStat> = stats.iter().take(top).collect();
    let places: Vec<String> = hot
        .iter()
        .map(|s| place(&names, &s.function, &s.file, s.line))
        .collect();
    let place_w = places.iter().map(|s| width_of(s)).max().unwrap_or(10);
    // (The native share comes last: the place stays whole in a narrow terminal.)
    let op_w = hot.iter().map(|s| width_of(&s.opcode)).max().unwrap_or(6);
    let pads = [place_w, 6, op_w, 0];
    let mut head = vec![
        "function (file:line)".to_string(),
        format!("{:>6}", "offset"),
        "opcode".into(),
    ];
    if seen {
        head.push("native".into());
    }
    out(
        w,
        row(
            width,
            &format!("{:>6} {:>7}  ", "%", "samples"),
            &head,
            &pads,
        ),
    )?;
    for (i, (s, place)) in hot.iter().zip(places).enumerate() {
        let mut cells = vec![place, format!("{:>6}", s.offset), s.opcode.clone()];
        if seen {
            let n = s.native_samples();
            cells.push(if n == 0 {
                String::new()
            } else {
                native_col(n, s.samples).trim().to_string()
            });
        }
        let lines = row(
            width,
            &format!("{:>5.1}% {:>7}  ", pct(s.samples, total), s.samples),
            &cells,
            &pads,
        );
        for l in lines {
            writeln!(w, "{}", if i == 0 { p.hot(&l) } else { l })?;
        }
    }
    Ok(())
}

/// One paragraph: how much of the instructions' samples was native code they called,
/// and what could not be seen.
fn native_summary(m: &crate::profile::Meta, native: u64, total: u64) -> String {
    let sampler = if m.sampler.is_empty() {
        "this sampler"
    } else {
        m.sampler.as_str()
    };
    if m.ip_seen == 0 {
        return format!(
            "Where threads were executing was not seen ({sampler} does not read registers): \
             time in native code an instruction called (a C extension, a library, a system \
             call) counts here as the instruction's own. Record with --sampler bpf or ptrace \
             to tell them apart."
        );
    }
    let mut s = format!(
        "{native} of {total} samples ({:.1}%) were in native code the instruction called, \
         outside the interpreter (a C extension, a library, a system call): counted in the \
         instruction's samples below, and shown apart as \"native\", they are not the \
         instruction's own time. C functions built into the interpreter (sorted, str and \
         dict methods, ...) count as the instruction's.",
        pct(native, total)
    );
    if m.ip_unseen > 0 {
        s.push_str(&format!(
            " For {} samples where the thread was was not seen (threads {sampler} read \
             without pausing them), native time counts as the instruction's.",
            m.ip_unseen
        ));
    }
    s
}

/// The hottest instructions that called native code: share of their samples there, and
/// in which files.
fn native_table(
    w: &mut dyn Write,
    width: Option<usize>,
    names: &FileNames,
    stats: &[InstructionStat],
    total: u64,
    top: usize,
) -> Result<()> {
    let mut hot: Vec<&InstructionStat> = stats.iter().filter(|s| s.native_samples() > 0).collect();
    hot.sort_by(|a, b| {
        b.native_samples()
            .cmp(&a.native_samples())
            .then_with(|| (&a.file, &a.function, a.offset).cmp(&(&b.file, &b.function, b.offset)))
    });
    hot.truncate(top);
    let sites: Vec<String> = hot
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                place(names, &s.function, &s.file, s.line),
                s.opcode
            )
        })
        .collect();
    let site_w = sites.iter().map(|s| width_of(s)).max().unwrap_or(10);
    let pads = [site_w, 0];
    for l in row(
        width,
        &format!("{:>6} {:>7} {:>7}  ", "%", "native", "of site"),
        &["instruction".into(), "in".into()],
        &pads,
    ) {
        writeln!(w, "{l}")?;
    }
    for (s, site) in hot.iter().zip(sites) {
        let n = s.native_samples();
        for l in row(
            width,
            &format!(
                "{:>5.1}% {:>7} {:>6.1}%  ",
                pct(n, total),
                n,
                pct(n, s.samples)
            ),
            &[site, native_files(&s.native)],
            &pads,
        ) {
            writeln!(w, "{l}")?;
        }
    }
    Ok(())
}

/// "function (file:line)" with the file as labels show it.
fn place(names: &FileNames, function: &str, file: &str, line: i32) -> String {
    format!("{function} ({}:{line})", names.show(file))
}

fn health(
    w: &mut dyn Write,
    width: Option<usize>,
    t: &'static OpcodeTable,
    stats: &[InstructionStat],
    sites: &[spec::Site],
    top: usize,
) -> Result<()> {
    struct Row<'a> {
        samples: u64,
        states: BTreeMap<State, u64>,
        forms: BTreeMap<&'a str, u64>,
        sites: usize,
        poly: usize,
    }
    let mut bases: BTreeMap<&str, Row> = BTreeMap::new();
    let mut excluded: BTreeMap<&str, u64> = BTreeMap::new();
    for s in stats {
        if !spec::can_specialize(t, &s.base_opcode) {
            *excluded.entry(&s.base_opcode).or_insert(0) += s.samples;
            continue;
        }
        let e = bases.entry(&s.base_opcode).or_insert_with(|| Row {
            samples: 0,
            states: BTreeMap::new(),
            forms: BTreeMap::new(),
            sites: 0,
            poly: 0,
        });
        e.samples += s.samples;
        *e.states
            .entry(spec::state(Some(t), &s.opcode, &s.base_opcode))
            .or_insert(0) += s.samples;
        *e.forms.entry(&s.opcode).or_insert(0) += s.samples;
    }
    for site in sites {
        if let Some(e) = bases.get_mut(site.base.as_str()) {
            e.sites += 1;
            if site.polymorphic(Some(t)) {
                e.poly += 1;
            }
        }
    }
    let mut rows: Vec<_> = bases.into_iter().collect();
    rows.sort_by(|a, b| b.1.samples.cmp(&a.1.samples).then(a.0.cmp(b.0)));
    rows.truncate(top);
    let base_w = rows.iter().map(|r| width_of(r.0)).max().unwrap_or(8);
    let pads = [base_w, 0];
    for l in row(
        width,
        &format!(
            "{:>8} {:>7} {:>7} {:>6}  ",
            "samples", "spec", "unspec", "poly"
        ),
        &["instruction".into(), "forms seen".into()],
        &pads,
    ) {
        writeln!(w, "{l}")?;
    }
    for (base, r) in &rows {
        let share = |s: State| pct(*r.states.get(&s).unwrap_or(&0), r.samples);
        let mut forms: Vec<(&&str, &u64)> = r.forms.iter().collect();
        forms.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let mut seen: Vec<String> = forms
            .iter()
            .map(|(f, n)| format!("{f} {:.0}%", pct(**n, r.samples)))
            .collect();
        let other = share(State::Instrumented) + share(State::Executor);
        if other > 0.0 {
            seen.push(format!("(instrumented or tier 2: {other:.0}%)"));
        }
        let poly = if r.poly > 0 {
            format!("{}/{}", r.poly, r.sites)
        } else {
            "-".to_string()
        };
        for l in row(
            width,
            &format!(
                "{:>8} {:>6.1}% {:>6.1}% {:>6}  ",
                r.samples,
                share(State::Specialized) + share(State::CallsC),
                share(State::Unspecialized),
                poly
            ),
            &[base.to_string(), seen.join(", ")],
            &pads,
        ) {
            writeln!(w, "{l}")?;
        }
    }
    if !excluded.is_empty() {
        let mut ex: Vec<_> = excluded.into_iter().collect();
        ex.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let names: Vec<&str> = ex.iter().map(|e| e.0).collect();
        for l in paragraph(
            width,
            "",
            2,
            &format!(
                "spec, unspec: shares of each instruction's samples; poly: polymorphic sites / \
                 sites. Not listed, as they cannot specialize in Python {}.{} (superinstructions \
                 included): {}.",
                t.major,
                t.minor,
                names.join(", ")
            ),
        ) {
            writeln!(w, "{l}")?;
        }
    }
    Ok(())
}

fn problem(
    w: &mut dyn Write,
    p: &Paint,
    width: Option<usize>,
    names: &FileNames,
    n: usize,
    pr: &SpecializationProblem,
) -> Result<()> {
    let what = match &pr.argument {
        Some(a) => format!("{} {a}", pr.instruction),
        None => pr.instruction.clone(),
    };
    let head = format!(
        "{} · offset {} · {what} · {:.1}% of samples",
        place(names, &pr.function, &pr.file, pr.line),
        pr.offset,
        pr.share
    );
    let first = format!("{n:>2}. ");
    for l in paragraph(width, &first, 4, &head) {
        writeln!(w, "{}", p.bold(&l))?;
    }
    let forms: Vec<String> = pr
        .forms
        .iter()
        .map(|f| {
            if f.state == State::Unspecialized.label() {
                format!("{} (unspecialized) {:.0}%", f.opcode, f.share)
            } else {
                format!("{} {:.0}%", f.opcode, f.share)
            }
        })
        .collect();
    for l in paragraph(width, &format!("    {}: ", pr.kind), 6, &forms.join(", ")) {
        writeln!(w, "{l}")?;
    }
    for l in paragraph(width, "    why: ", 6, &pr.reason) {
        writeln!(w, "{l}")?;
    }
    for l in paragraph(
        width,
        "    see: ",
        6,
        &format!(
            "pyprof annotate PROFILE --function '{}' (offset {})",
            pr.function, pr.offset
        ),
    ) {
        writeln!(w, "{l}")?;
    }
    Ok(())
}
