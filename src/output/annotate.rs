//! `pyprof annotate`: the hottest functions of a profile as annotated bytecode, in `dis`
//! order, with arguments as `dis` shows them (names, constants, operators, jump
//! targets), each source line above its instructions with the line's total, samples and
//! the share of the function per instruction, the forms an instruction was sampled as,
//! and the specialization problems of the opcode report at their instruction. Text that
//! fits the terminal, or a self-contained HTML page to project.
//!
//! Source lines come from the profile (read through the target's root at record time,
//! so a chroot target shows its own files), else from the file on this machine; when
//! neither is there, the listing says why.

use super::disasm::{self, Symbols};
use super::opcodes::{native_files, pct, table_of};
use super::specialization::{self as spec, unhex};
use super::text::{paragraph, row, width_of};
use super::{main_script, FileNames, RenderOptions, TextStyle};
use crate::code::linetable;
use crate::code::opcodes;
use crate::profile::{CodeSnapshot, ProfileData, SpecializationProblem};
use crate::runtime::layout::LineTableKind;
use crate::runtime::Version;
use anyhow::{bail, Result};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;

/// One row of a listing.
#[derive(Clone, Debug)]
pub struct Row {
    pub line: Option<i32>,
    pub offset: u32,
    /// The opcode in the saved (quickened) bytecode.
    pub opcode: String,
    /// The argument as `dis` prints it (`0 (x)`, `to 42`, `3`), empty when there is none.
    pub arg: String,
    pub samples: u64,
    /// The forms this instruction was sampled as, if any differ from `opcode`.
    pub sampled_as: Vec<(String, u64)>,
    /// A specialization problem found at this instruction.
    pub problem: Option<SpecializationProblem>,
    /// Of `samples`, those in native code the instruction called, by file.
    pub native: BTreeMap<String, u64>,
}

impl Row {
    /// "443 of 444 samples (99.8%) in native code it called: libopenblas.so 95%, ...",
    /// or None when none were.
    pub fn native_text(&self) -> Option<String> {
        let n: u64 = self.native.values().sum();
        if n == 0 {
            return None;
        }
        Some(format!(
            "{n} of {} samples ({:.1}%) in native code it called, outside the interpreter: {}",
            self.samples,
            pct(n, self.samples),
            native_files(&self.native)
        ))
    }
}

/// One function's listing.
#[derive(Clone, Debug)]
pub struct Listing {
    pub function: String,
    pub file: String,
    pub first_line: i32,
    pub samples: u64,
    pub total: u64,
    pub rows: Vec<Row>,
    /// Samples per source line.
    pub line_totals: BTreeMap<i32, u64>,
    /// Source lines by number, when known.
    pub source: BTreeMap<i32, String>,
    /// Where the source came from, or why it is missing.
    pub source_note: String,
}

fn line_table_kind(v: &Version) -> LineTableKind {
    match (v.major, v.minor) {
        (3, m) if m >= 11 => LineTableKind::Pep657,
        (3, 10) => LineTableKind::Pep626,
        _ => LineTableKind::Lnotab,
    }
}

type Key = (String, String, i32);

fn key_of(c: &CodeSnapshot) -> Key {
    (c.file.clone(), c.function.clone(), c.first_line)
}

/// Does `c` match `--function NAME`: the qualified name, its last part, or
/// `FILE:NAME` with `FILE` the end of the file name.
fn matches(c: &CodeSnapshot, name: &str) -> bool {
    let by_name = |n: &str| c.function == n || c.function.rsplit('.').next() == Some(n);
    if by_name(name) {
        return true;
    }
    match name.rsplit_once(':') {
        Some((file, n)) if !file.is_empty() => c.file.ends_with(file) && by_name(n),
        _ => false,
    }
}

/// Build listings: for `function`, the functions of that name (those with samples,
/// hottest first; `<module>` means the main script's); else the `top` hottest functions
/// by self samples (functions without any are left out).
pub fn listings(data: &ProfileData, function: Option<&str>, top: usize) -> Result<Vec<Listing>> {
    if data.code.is_empty() {
        bail!("this profile has no bytecode: record it with --opcodes");
    }
    let version =
        Version::parse(data.meta.python_version.trim_end_matches('t')).ok_or_else(|| {
            anyhow::anyhow!(
                "unknown Python version {:?} in the profile",
                data.meta.python_version
            )
        })?;
    let table = table_of(data).ok_or_else(|| {
        anyhow::anyhow!("no opcode table for Python {}", data.meta.python_version)
    })?;
    let stats = data.instruction_stats();
    let total: u64 = stats.iter().map(|s| s.samples).sum();
    // Self samples per function and per (function, offset, opcode).
    let mut per_fn: HashMap<Key, u64> = HashMap::new();
    let mut per_ins: HashMap<(Key, u32), BTreeMap<String, u64>> = HashMap::new();
    let mut native_ins: HashMap<(Key, u32), BTreeMap<String, u64>> = HashMap::new();
    for s in &stats {
        if !s.native.is_empty() {
            let key = (s.file.clone(), s.function.clone(), s.first_line);
            let e = native_ins.entry((key, s.offset)).or_default();
            for (o, n) in &s.native {
                *e.entry(o.clone()).or_insert(0) += n;
            }
        }
        let key = (s.file.clone(), s.function.clone(), s.first_line);
        *per_fn.entry(key.clone()).or_insert(0) += s.samples;
        *per_ins
            .entry((key, s.offset))
            .or_default()
            .entry(s.opcode.clone())
            .or_insert(0) += s.samples;
    }
    let problems: HashMap<(Key, u32), SpecializationProblem> = spec::problems(data)
        .into_iter()
        .map(|p| {
            (
                ((p.file.clone(), p.function.clone(), p.first_line), p.offset),
                p,
            )
        })
        .collect();
    let samples_of = |c: &CodeSnapshot| per_fn.get(&key_of(c)).copied().unwrap_or(0);
    let main = main_script(data);
    let mut chosen: Vec<&CodeSnapshot> = match function {
        Some(name) => data.code.iter().filter(|c| matches(c, name)).collect(),
        None => data.code.iter().filter(|c| samples_of(c) > 0).collect(),
    };
    if chosen.is_empty() {
        match function {
            Some(name) => bail!("no function named {name:?} in this profile"),
            None => bail!("no function of this profile has self samples with an instruction"),
        }
    }
    chosen.sort_by(|a, b| {
        let is_main = |c: &CodeSnapshot| Some(c.file.as_str()) == main;
        samples_of(b)
            .cmp(&samples_of(a))
            .then(is_main(b).cmp(&is_main(a)))
            .then_with(|| (&a.file, a.first_line).cmp(&(&b.file, b.first_line)))
    });
    match function {
        Some("<module>") => {
            // The main script's module code, whatever the samples of imported modules.
            if let Some(m) = chosen.iter().position(|c| Some(c.file.as_str()) == main) {
                let c = chosen[m];
                chosen = vec![c];
            } else {
                chosen.truncate(1);
            }
        }
        Some(_) => {
            if samples_of(chosen[0]) > 0 {
                chosen.retain(|c| samples_of(c) > 0);
            } else {
                chosen.truncate(1);
            }
        }
        None => chosen.truncate(top.max(1)),
    }
    let kind = line_table_kind(&version);
    Ok(chosen
        .into_iter()
        .map(|c| {
            let key = key_of(c);
            let code = unhex(&c.bytecode);
            let lt = unhex(&c.line_table);
            let sym = Symbols::of(c);
            let rows: Vec<Row> = opcodes::instructions(table, &code)
                .map(|ins| {
                    let forms = per_ins.get(&(key.clone(), ins.offset as u32));
                    let samples = forms.map(|f| f.values().sum()).unwrap_or(0);
                    let mut sampled_as: Vec<(String, u64)> = forms
                        .map(|f| f.iter().map(|(k, v)| (k.clone(), *v)).collect())
                        .unwrap_or_default();
                    sampled_as.sort_by_key(|f| std::cmp::Reverse(f.1));
                    if sampled_as.len() == 1 && sampled_as[0].0 == ins.name {
                        sampled_as.clear();
                    }
                    let arg = if sym.is_empty() {
                        match (ins.dis_arg(), disasm::jump_target(table, &ins)) {
                            (_, Some(t)) => format!("to {t}"),
                            (Some(a), None) => a.to_string(),
                            (None, None) => String::new(),
                        }
                    } else {
                        disasm::arg_text(table, &ins, &sym)
                    };
                    Row {
                        line: linetable::line_for_offset(
                            kind,
                            &lt,
                            c.first_line,
                            ins.offset as u32,
                            version.major,
                            version.minor,
                        ),
                        offset: ins.offset as u32,
                        opcode: ins.name.to_string(),
                        arg,
                        samples,
                        sampled_as,
                        problem: problems.get(&(key.clone(), ins.offset as u32)).cloned(),
                        native: native_ins
                            .get(&(key.clone(), ins.offset as u32))
                            .cloned()
                            .unwrap_or_default(),
                    }
                })
                .collect();
            let mut line_totals = BTreeMap::new();
            for r in &rows {
                if let Some(l) = r.line {
                    *line_totals.entry(l).or_insert(0) += r.samples;
                }
            }
            let (source, source_note) = source_of(c);
            Listing {
                function: c.function.clone(),
                file: c.file.clone(),
                first_line: c.first_line,
                samples: samples_of(c),
                total,
                rows,
                line_totals,
                source,
                source_note,
            }
        })
        .collect())
}

/// The function's source lines by number: recorded in the profile, else read here.
fn source_of(c: &CodeSnapshot) -> (BTreeMap<i32, String>, String) {
    if !c.source.is_empty() {
        let lines = c
            .source
            .iter()
            .enumerate()
            .map(|(i, l)| (c.first_line + i as i32, l.clone()))
            .collect();
        return (
            lines,
            "source as read from the target at record time".into(),
        );
    }
    let recorded = c.source_note.clone();
    match std::fs::read_to_string(&c.file) {
        Ok(text) => (
            text.lines()
                .enumerate()
                .map(|(i, l)| (i as i32 + 1, l.to_string()))
                .collect(),
            match recorded {
                Some(why) => format!(
                    "source read from this machine's {} (not recorded: {why})",
                    c.file
                ),
                None => format!(
                    "source read from this machine's {} (the profile has none)",
                    c.file
                ),
            },
        ),
        Err(e) => (
            BTreeMap::new(),
            match recorded {
                Some(why) => format!("no source lines: {why}"),
                None => format!("no source lines: cannot read {}: {e}", c.file),
            },
        ),
    }
}

fn line_text(l: &Listing, n: i32) -> &str {
    l.source.get(&n).map(|s| s.trim()).unwrap_or("")
}

/// Text listing, fitted to `style.width` (nothing is cut: long rows wrap).
pub fn write_text(
    data: &ProfileData,
    listings: &[Listing],
    w: &mut dyn Write,
    style: TextStyle,
) -> Result<()> {
    let width = style.width;
    let names = FileNames::new(data, &RenderOptions::default());
    let put = |w: &mut dyn Write, lines: Vec<String>| -> Result<()> {
        for l in lines {
            writeln!(w, "{l}")?;
        }
        Ok(())
    };
    for l in listings {
        let hottest = l.rows.iter().map(|r| r.samples).max().unwrap_or(0);
        put(
            w,
            paragraph(
                width,
                "",
                2,
                &format!("{} ({}:{})", l.function, names.show(&l.file), l.first_line),
            ),
        )?;
        put(
            w,
            paragraph(
                width,
                "",
                2,
                &format!(
                    "{} self samples, {:.1}% of all {} · Python {}",
                    l.samples,
                    pct(l.samples, l.total),
                    l.total,
                    data.meta.python_version
                ),
            ),
        )?;
        put(w, paragraph(width, "", 2, &l.source_note))?;
        put(
            w,
            paragraph(
                width,
                "",
                2,
                "Rows with │ are source lines and carry the line's total; the others are \
                 its instructions. % of fn: share of this function's self samples.",
            ),
        )?;
        let op_w = l
            .rows
            .iter()
            .map(|r| width_of(&r.opcode))
            .max()
            .unwrap_or(8);
        let pads = [6, op_w, 0];
        put(
            w,
            row(
                width,
                &format!("{:>8} {:>8}  ", "samples", "% of fn"),
                &[
                    format!("{:>6}", "offset"),
                    "instruction".into(),
                    "argument".into(),
                ],
                &pads,
            ),
        )?;
        let mut last_line = None;
        for r in &l.rows {
            if r.line != last_line && r.line.is_some() {
                let n = r.line.unwrap_or(0);
                let t = l.line_totals.get(&n).copied().unwrap_or(0);
                let (count, p) = numbers(t, l.samples);
                let prefix = format!("{count:>8} {p:>8}  {n:>6} │ ");
                put(w, paragraph(width, &prefix, 18, line_text(l, n)))?;
                last_line = r.line;
            }
            let (count, p) = numbers(r.samples, l.samples);
            let mut items = vec![format!("{:>6}", r.offset), r.opcode.clone()];
            if !r.arg.is_empty() {
                items.push(r.arg.clone());
            }
            if r.samples > 0 && r.samples == hottest {
                items.push("◀ hottest".into());
            }
            if let Some(pr) = &r.problem {
                items.push(format!("⚠ {}", pr.kind));
            }
            put(
                w,
                row(width, &format!("{count:>8} {p:>8}  "), &items, &pads),
            )?;
            if !r.sampled_as.is_empty() {
                let forms: Vec<String> = r
                    .sampled_as
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect();
                put(
                    w,
                    paragraph(
                        width,
                        &" ".repeat(28),
                        30,
                        &format!("sampled as: {}", forms.join(", ")),
                    ),
                )?;
            }
            if let Some(native) = r.native_text() {
                put(
                    w,
                    paragraph(width, &" ".repeat(28), 30, &format!("native: {native}")),
                )?;
            }
            if let Some(pr) = &r.problem {
                put(
                    w,
                    paragraph(width, &" ".repeat(28), 30, &format!("why: {}", pr.reason)),
                )?;
            }
        }
        writeln!(w)?;
    }
    Ok(())
}

fn numbers(n: u64, of: u64) -> (String, String) {
    if n > 0 {
        (n.to_string(), format!("{:.1}%", pct(n, of)))
    } else {
        (String::new(), String::new())
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An anchor for an instruction of the `i`th listing.
pub fn anchor(i: usize, offset: u32) -> String {
    format!("f{i}-o{offset}")
}

/// A self-contained HTML page (no scripts, no external resources).
pub fn write_html(data: &ProfileData, listings: &[Listing], w: &mut dyn Write) -> Result<()> {
    let m = &data.meta;
    let names = FileNames::new(data, &RenderOptions::default());
    write!(
        w,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>pyprof annotate · {}</title>\n<style>\n\
         body{{font-family:system-ui,sans-serif;margin:2em;background:#fafafa;color:#222}}\n\
         h1{{font-size:1.4em;overflow-wrap:anywhere}} h2{{font-size:1.2em;margin-top:2em;overflow-wrap:anywhere}}\n\
         table{{border-collapse:collapse;font-family:ui-monospace,monospace;font-size:15px}}\n\
         td,th{{padding:2px 10px;text-align:left;vertical-align:top}} td.n,th.n{{text-align:right}}\n\
         td.src{{white-space:pre-wrap}} td.op,td.arg{{white-space:nowrap}}\n\
         tr.src td{{background:#e8eef7;color:#234;font-weight:bold;padding-top:6px}}\n\
         tr.hot td.op{{font-weight:bold}} .forms{{color:#555;font-size:13px;white-space:normal}}\n\
         tr.problem td{{color:#7a1f8a;font-size:13px;padding-bottom:6px}}\n\
         ul.problems{{font-size:14px}} .note{{color:#555}}\n\
         </style></head><body>\n<h1>{} · Python {}</h1>\n<p>{} samples at {} Hz over {:.1} s ({}); {} errors.\n\
         Source rows carry the line's total; <i>% of function</i> is the share of the function's self samples.</p>\n",
        esc(&m.target),
        esc(&m.target),
        esc(&m.python_version),
        m.samples,
        m.rate_hz,
        m.duration_secs,
        esc(&m.mode),
        m.error_count()
    )?;
    for (i, l) in listings.iter().enumerate() {
        let hottest = l.rows.iter().map(|r| r.samples).max().unwrap_or(0).max(1);
        writeln!(
            w,
            "<section id=\"f{i}\"><h2 class=\"function\"><span class=\"name\">{}</span> <small>({}:{})</small></h2>\n\
             <p>{} self samples, {:.1}% of all. <span class=\"note\">{}</span></p>",
            esc(&l.function),
            esc(names.show(&l.file)),
            l.first_line,
            l.samples,
            pct(l.samples, l.total),
            esc(&l.source_note)
        )?;
        let problems: Vec<&Row> = l.rows.iter().filter(|r| r.problem.is_some()).collect();
        if !problems.is_empty() {
            writeln!(w, "<p>Specialization problems:</p><ul class=\"problems\">")?;
            for r in problems {
                if let Some(p) = &r.problem {
                    writeln!(
                        w,
                        "<li><a href=\"#{}\">offset {} · line {} · {}</a>: {}</li>",
                        anchor(i, r.offset),
                        r.offset,
                        p.line,
                        esc(&p.kind),
                        esc(&p.reason)
                    )?;
                }
            }
            writeln!(w, "</ul>")?;
        }
        writeln!(
            w,
            "<table>\n<tr><th class=\"n\">samples</th><th class=\"n\">% of function</th><th class=\"n\">line / offset</th><th>instruction</th><th>argument</th></tr>"
        )?;
        let mut last_line = None;
        for r in &l.rows {
            if r.line != last_line && r.line.is_some() {
                let n = r.line.unwrap_or(0);
                let t = l.line_totals.get(&n).copied().unwrap_or(0);
                let (count, p) = numbers(t, l.samples);
                writeln!(
                    w,
                    "<tr class=\"src\"><td class=\"n\">{count}</td><td class=\"n\">{p}</td><td class=\"n\">{n}</td><td class=\"src\" colspan=\"2\">{}</td></tr>",
                    esc(line_text(l, n))
                )?;
                last_line = r.line;
            }
            let heat = r.samples as f64 / hottest as f64;
            let bg = if r.samples > 0 {
                format!(
                    " style=\"background:rgba(230,80,40,{:.2})\"",
                    0.1 + 0.6 * heat
                )
            } else {
                String::new()
            };
            let mut extra = String::new();
            if !r.sampled_as.is_empty() {
                let f: Vec<String> = r
                    .sampled_as
                    .iter()
                    .map(|(k, v)| format!("{} {v}", esc(k)))
                    .collect();
                extra.push_str(&format!(
                    "<div class=\"forms\">sampled as {}</div>",
                    f.join(", ")
                ));
            }
            if let Some(native) = r.native_text() {
                extra.push_str(&format!("<div class=\"forms\">{}</div>", esc(&native)));
            }
            let class = if r.samples == hottest && r.samples > 0 {
                " class=\"ins hot\""
            } else {
                " class=\"ins\""
            };
            let (count, p) = numbers(r.samples, l.samples);
            writeln!(
                w,
                "<tr id=\"{}\"{class}{bg}><td class=\"n\">{count}</td><td class=\"n\">{p}</td><td class=\"n\">{}</td><td class=\"op\">{}{extra}</td><td class=\"arg\">{}</td></tr>",
                anchor(i, r.offset),
                r.offset,
                esc(&r.opcode),
                esc(&r.arg)
            )?;
            if let Some(p) = &r.problem {
                writeln!(
                    w,
                    "<tr class=\"problem\"{bg}><td colspan=\"3\"></td><td colspan=\"2\">⚠ {}: {}</td></tr>",
                    esc(&p.kind),
                    esc(&p.reason)
                )?;
            }
        }
        writeln!(w, "</table></section>")?;
    }
    writeln!(w, "</body></html>")?;
    Ok(())
}
