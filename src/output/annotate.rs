//! `pyprof annotate`: the hottest functions of a profile as annotated bytecode, in `dis`
//! order, with the source line above each group of instructions and samples per
//! instruction. Text for a terminal, or a self-contained HTML page to project.

use super::opcodes::{fit, pct, table_of};
use super::short_filename;
use crate::code::linetable;
use crate::code::opcodes::{self, OpcodeTable};
use crate::profile::{CodeSnapshot, ProfileData};
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
    pub arg: Option<u32>,
    /// Jump target, for jumps.
    pub target: Option<u32>,
    pub samples: u64,
    /// The forms this instruction was sampled as, if any differ from `opcode`.
    pub sampled_as: Vec<(String, u64)>,
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
}

fn line_table_kind(v: &Version) -> LineTableKind {
    match (v.major, v.minor) {
        (3, m) if m >= 11 => LineTableKind::Pep657,
        (3, 10) => LineTableKind::Pep626,
        _ => LineTableKind::Lnotab,
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// Build listings for the chosen functions: `function` (exact name, or the part after
/// the last dot) or else the `top` hottest by self samples.
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
    type Key = (String, String, i32);
    let mut per_fn: HashMap<Key, u64> = HashMap::new();
    let mut per_ins: HashMap<(Key, u32), BTreeMap<String, u64>> = HashMap::new();
    for s in &stats {
        let key = (s.file.clone(), s.function.clone(), s.first_line);
        *per_fn.entry(key.clone()).or_insert(0) += s.samples;
        *per_ins
            .entry((key, s.offset))
            .or_default()
            .entry(s.opcode.clone())
            .or_insert(0) += s.samples;
    }
    let mut chosen: Vec<&CodeSnapshot> = match function {
        Some(name) => data
            .code
            .iter()
            .filter(|c| c.function == name || c.function.rsplit('.').next() == Some(name))
            .collect(),
        None => data.code.iter().collect(),
    };
    if chosen.is_empty() {
        bail!(
            "no function named {:?} in this profile",
            function.unwrap_or("")
        );
    }
    let key_of = |c: &CodeSnapshot| (c.file.clone(), c.function.clone(), c.first_line);
    chosen.sort_by(|a, b| {
        let (na, nb) = (
            per_fn.get(&key_of(a)).copied().unwrap_or(0),
            per_fn.get(&key_of(b)).copied().unwrap_or(0),
        );
        nb.cmp(&na)
            .then_with(|| (&a.file, a.first_line).cmp(&(&b.file, b.first_line)))
    });
    if function.is_none() {
        chosen.truncate(top.max(1));
    }
    let kind = line_table_kind(&version);
    Ok(chosen
        .into_iter()
        .map(|c| {
            let key = key_of(c);
            let code = unhex(&c.bytecode);
            let lt = unhex(&c.line_table);
            let rows = opcodes::instructions(table, &code)
                .map(|ins| {
                    let forms = per_ins.get(&(key.clone(), ins.offset as u32));
                    let samples = forms.map(|f| f.values().sum()).unwrap_or(0);
                    let mut sampled_as: Vec<(String, u64)> = forms
                        .map(|f| f.iter().map(|(k, v)| (k.clone(), *v)).collect())
                        .unwrap_or_default();
                    sampled_as.sort_by(|a, b| b.1.cmp(&a.1));
                    if sampled_as.len() == 1 && sampled_as[0].0 == ins.name {
                        sampled_as.clear();
                    }
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
                        arg: ins.dis_arg(),
                        target: jump_target(table, &ins),
                        samples,
                        sampled_as,
                    }
                })
                .collect();
            Listing {
                function: c.function.clone(),
                file: c.file.clone(),
                first_line: c.first_line,
                samples: per_fn.get(&key).copied().unwrap_or(0),
                total,
                rows,
            }
        })
        .collect())
}

/// The byte offset a jump goes to, as `dis` shows it.
fn jump_target(table: &OpcodeTable, ins: &opcodes::Instr) -> Option<u32> {
    use opcodes::flags;
    let f = table.flags(ins.base);
    if f & (flags::JREL | flags::JABS | flags::JBACK) == 0 {
        return None;
    }
    let arg = ins.arg as i64;
    let unit = if table.is_wordcode() && (table.major, table.minor) >= (3, 10) {
        2
    } else {
        1
    };
    let next = ins.end_offset as i64;
    let t = if f & flags::JABS != 0 {
        arg * unit
    } else if f & flags::JBACK != 0 {
        next - arg * unit
    } else {
        next + arg * unit
    };
    (t >= 0).then_some(t as u32)
}

/// Line `n` (1-based) of a source file's lines, trimmed ("" when unknown).
fn source_line(src: &Option<Vec<String>>, n: i32) -> String {
    src.as_ref()
        .and_then(|s| s.get((n as usize).wrapping_sub(1)))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl Row {
    /// The argument column: a jump's target, else the argument, else nothing.
    fn arg_text(&self) -> String {
        match (self.arg, self.target) {
            (_, Some(t)) => format!("→{t}"),
            (Some(a), None) => a.to_string(),
            (None, None) => String::new(),
        }
    }
}

fn source_lines(file: &str) -> Option<Vec<String>> {
    std::fs::read_to_string(file)
        .ok()
        .map(|t| t.lines().map(String::from).collect())
}

/// Text listing.
pub fn write_text(data: &ProfileData, listings: &[Listing], w: &mut dyn Write) -> Result<()> {
    for l in listings {
        let src = source_lines(&l.file);
        let hottest = l.rows.iter().map(|r| r.samples).max().unwrap_or(0);
        writeln!(
            w,
            "{}",
            fit(
                &format!(
                    "{} ({}:{})",
                    l.function,
                    short_filename(&l.file, &data.meta.cwd),
                    l.first_line
                ),
                80
            )
        )?;
        writeln!(
            w,
            "{} self samples, {:.1}% of {} · Python {}",
            l.samples,
            pct(l.samples, l.total),
            l.total,
            data.meta.python_version
        )?;
        writeln!(
            w,
            "{:>6}  {:<32} {:>7} {:>8} {:>6}",
            "offset", "opcode", "arg", "samples", "%"
        )?;
        let mut last_line = None;
        for r in &l.rows {
            if r.line != last_line && r.line.is_some() {
                let n = r.line.unwrap_or(0);
                let text = source_line(&src, n);
                writeln!(w, "{}", fit(&format!("  {n:>4} │ {text}"), 80))?;
                last_line = r.line;
            }
            let arg = r.arg_text();
            let (count, p) = if r.samples > 0 {
                (
                    r.samples.to_string(),
                    format!("{:.1}%", pct(r.samples, l.samples)),
                )
            } else {
                (String::new(), String::new())
            };
            let mark = if r.samples > 0 && r.samples == hottest {
                " ◀ hottest"
            } else {
                ""
            };
            writeln!(
                w,
                "{:>6}  {:<32} {:>7} {:>8} {:>6}{mark}",
                r.offset,
                fit(&r.opcode, 32),
                arg,
                count,
                p
            )?;
            if !r.sampled_as.is_empty() {
                let forms: Vec<String> = r
                    .sampled_as
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect();
                writeln!(
                    w,
                    "{}",
                    fit(&format!("        sampled as: {}", forms.join(", ")), 80)
                )?;
            }
        }
        writeln!(w)?;
    }
    Ok(())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A self-contained HTML page (no scripts, no external resources).
pub fn write_html(data: &ProfileData, listings: &[Listing], w: &mut dyn Write) -> Result<()> {
    let m = &data.meta;
    write!(
        w,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>pyprof annotate · {}</title>\n<style>\n\
         body{{font-family:system-ui,sans-serif;margin:2em;background:#fafafa;color:#222}}\n\
         h1{{font-size:1.4em}} h2{{font-size:1.2em;margin-top:2em}}\n\
         table{{border-collapse:collapse;font-family:ui-monospace,monospace;font-size:15px}}\n\
         td,th{{padding:2px 10px;text-align:left}} td.n{{text-align:right}}\n\
         tr.src td{{background:#e8eef7;color:#234;font-weight:bold;padding-top:6px}}\n\
         tr.hot td.op{{font-weight:bold}} .forms{{color:#666;font-size:13px}}\n\
         </style></head><body>\n<h1>{} · Python {}</h1>\n<p>{} samples at {} Hz over {:.1} s ({}); {} errors.</p>\n",
        esc(&m.target),
        esc(&m.target),
        esc(&m.python_version),
        m.samples,
        m.rate_hz,
        m.duration_secs,
        esc(&m.mode),
        m.error_count()
    )?;
    for l in listings {
        let src = source_lines(&l.file);
        let hottest = l.rows.iter().map(|r| r.samples).max().unwrap_or(0).max(1);
        writeln!(
            w,
            "<h2>{} <small>({}:{})</small></h2>\n<p>{} self samples, {:.1}% of all</p>\n<table>\n<tr><th>offset</th><th>opcode</th><th>arg</th><th>samples</th><th>%</th></tr>",
            esc(&l.function),
            esc(&short_filename(&l.file, &m.cwd).to_string()),
            l.first_line,
            l.samples,
            pct(l.samples, l.total)
        )?;
        let mut last_line = None;
        for r in &l.rows {
            if r.line != last_line && r.line.is_some() {
                let n = r.line.unwrap_or(0);
                let text = source_line(&src, n);
                writeln!(
                    w,
                    "<tr class=\"src\"><td class=\"n\">{n}</td><td colspan=\"4\">{}</td></tr>",
                    esc(&text)
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
            let arg = r.arg_text();
            let forms = if r.sampled_as.is_empty() {
                String::new()
            } else {
                let f: Vec<String> = r
                    .sampled_as
                    .iter()
                    .map(|(k, v)| format!("{} {v}", esc(k)))
                    .collect();
                format!("<div class=\"forms\">sampled as {}</div>", f.join(", "))
            };
            let class = if r.samples == hottest && r.samples > 0 {
                " class=\"hot\""
            } else {
                ""
            };
            let (count, p) = if r.samples > 0 {
                (
                    r.samples.to_string(),
                    format!("{:.1}%", pct(r.samples, l.samples)),
                )
            } else {
                (String::new(), String::new())
            };
            writeln!(
                w,
                "<tr{class}{bg}><td class=\"n\">{}</td><td class=\"op\">{}{forms}</td><td class=\"n\">{}</td><td class=\"n\">{count}</td><td class=\"n\">{p}</td></tr>",
                r.offset,
                esc(&r.opcode),
                esc(&arg)
            )?;
        }
        writeln!(w, "</table>")?;
    }
    writeln!(w, "</body></html>")?;
    Ok(())
}
