//! `pyprof diff`: a differential flamegraph of two profiles and a table of what changed:
//! "before/after an optimisation", or "3.10 vs 3.12 on the same program".
//!
//! Across versions the same code is named differently, so both profiles are first put in
//! common terms:
//! * functions are matched by file, first line and name: 3.10 names a method `step`,
//!   3.11+ `Particle.step`; both become `Particle.step`;
//! * opcodes are compared by base instruction, with renamed instructions matched
//!   (3.10 `BINARY_MULTIPLY` and 3.11+ `BINARY_OP *`, `CALL_FUNCTION`/`CALL_METHOD`/
//!   `PRECALL` and `CALL`, `LOAD_METHOD` and `LOAD_ATTR`, ...); the table shows the
//!   specialized forms behind each.
//!
//! The picture is drawn as AFTER (widths are AFTER's samples). Every frame is coloured by
//! the change of its *inclusive* share (the samples of its whole subtree), so a function
//! whose time is all in its opcode leaves still shows how it changed: red for a larger
//! share after, blue for a smaller one, grey within ±0.5 points. The legend names only the
//! colours drawn.

use super::disasm::{self, Symbols};
use super::flamegraph::{add_legend, fold_imports, label_root, patch_script, LegendItem};
use super::opcodes::{pct, table_of};
use super::specialization::Decoded;
use super::text::{row, width_of};
use super::{collapsed, FileNames, RenderOptions, TextStyle};
use crate::code::opcodes;
use crate::profile::{Frame, ProfileData};
use anyhow::{Context, Result};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;

/// Changes of an inclusive share smaller than this (percentage points) are "the same".
pub const SAME: f64 = 0.5;

/// (file as shown, first line, last part of the name): how a function is matched.
type FnKey = (String, i32, String);

fn fn_key(names: &FileNames, f: &Frame) -> FnKey {
    let last = f.function.rsplit('.').next().unwrap_or(&f.function);
    (
        names.show(&f.file).to_string(),
        f.first_line,
        last.to_string(),
    )
}

/// For each matched function, the name to show: the qualified one where either side has it.
fn common_names(before: &ProfileData, after: &ProfileData) -> HashMap<FnKey, String> {
    let mut out: HashMap<FnKey, String> = HashMap::new();
    for d in [before, after] {
        let names = FileNames::new(d, &RenderOptions::default());
        for f in &d.frames {
            let e = out
                .entry(fn_key(&names, f))
                .or_insert_with(|| f.function.clone());
            if f.function.len() > e.len() {
                *e = f.function.clone();
            }
        }
    }
    out
}

/// ≤3.10 binary and in-place operators, as 3.11's `BINARY_OP` names them.
fn old_binary_op(name: &str) -> Option<String> {
    let (inplace, rest) = match name.strip_prefix("INPLACE_") {
        Some(r) => (true, r),
        None => (false, name.strip_prefix("BINARY_")?),
    };
    let op = match rest {
        "ADD" => "+",
        "SUBTRACT" => "-",
        "MULTIPLY" => "*",
        "MATRIX_MULTIPLY" => "@",
        "TRUE_DIVIDE" | "DIVIDE" => "/",
        "FLOOR_DIVIDE" => "//",
        "MODULO" => "%",
        "POWER" => "**",
        "LSHIFT" => "<<",
        "RSHIFT" => ">>",
        "AND" => "&",
        "OR" => "|",
        "XOR" => "^",
        _ => return None,
    };
    Some(format!("BINARY_OP {op}{}", if inplace { "=" } else { "" }))
}

/// The instruction an opcode is compared as, across versions; `op` is a 3.11+
/// `BINARY_OP`'s operator, when known.
fn family_of(base: &str, op: Option<&str>) -> String {
    if let Some(b) = old_binary_op(base) {
        return b;
    }
    match base {
        "BINARY_OP" => match op {
            Some(op) => format!("BINARY_OP {op}"),
            None => "BINARY_OP".into(),
        },
        "CALL_FUNCTION" | "CALL_FUNCTION_KW" | "CALL_METHOD" | "PRECALL" | "CALL_KW" => {
            "CALL".into()
        }
        "LOAD_METHOD" => "LOAD_ATTR".into(),
        "LOAD_FAST_BORROW" => "LOAD_FAST".into(),
        "LOAD_FAST_BORROW_LOAD_FAST_BORROW" => "LOAD_FAST_LOAD_FAST".into(),
        b => match b
            .strip_prefix("POP_JUMP_FORWARD_")
            .or_else(|| b.strip_prefix("POP_JUMP_BACKWARD_"))
        {
            Some(rest) => format!("POP_JUMP_{rest}"),
            None => b.to_string(),
        },
    }
}

/// The family of every frame's opcode (None for frames without one), each function's
/// bytecode decoded once.
pub fn families(d: &ProfileData) -> Vec<Option<String>> {
    let table = table_of(d);
    let mut ops: HashMap<(&str, &str, i32), HashMap<u32, String>> = HashMap::new();
    d.frames
        .iter()
        .map(|f| {
            let base = f.base_opcode.as_deref().or(f.opcode.as_deref())?;
            let op = match (base, table, f.offset) {
                ("BINARY_OP", Some(t), Some(off)) => ops
                    .entry((f.file.as_str(), f.function.as_str(), f.first_line))
                    .or_insert_with(|| {
                        Decoded::find(d, &f.file, &f.function, f.first_line)
                            .map(|dc| {
                                opcodes::instructions(t, &dc.code)
                                    .filter(|i| i.base_name == "BINARY_OP")
                                    .filter_map(|i| {
                                        Some((
                                            i.offset as u32,
                                            disasm::argrepr(t, &i, &Symbols::default())?,
                                        ))
                                    })
                                    .collect()
                            })
                            .unwrap_or_default()
                    })
                    .get(&off)
                    .cloned(),
                _ => None,
            };
            Some(family_of(base, op.as_deref()))
        })
        .collect()
}

/// A copy of `d` with functions renamed to their common names and opcodes to their
/// families (so both profiles draw the same labels).
fn in_common_terms(d: &ProfileData, common: &HashMap<FnKey, String>) -> ProfileData {
    let names = FileNames::new(d, &RenderOptions::default());
    let fams = families(d);
    let mut out = d.clone();
    for ((f, orig), fam) in out.frames.iter_mut().zip(&d.frames).zip(fams) {
        if let Some(n) = common.get(&fn_key(&names, orig)) {
            f.function = n.clone();
        }
        if f.opcode.is_some() {
            f.opcode = fam.clone();
            f.base_opcode = fam;
        }
    }
    out
}

fn parse(line: &str) -> Option<(&str, u64)> {
    let (stack, n) = line.rsplit_once(' ')?;
    Some((stack, n.parse().ok()?))
}

/// Every path (`a;b;c`) of both profiles' stacks as a node of one tree, with each
/// side's samples through it (inclusive), so a frame's change is one lookup.
#[derive(Default)]
struct Paths<'a> {
    ids: HashMap<(u32, &'a str), u32>,
    /// Samples through each node: before, after.
    counts: Vec<[u64; 2]>,
    totals: [u64; 2],
}

impl<'a> Paths<'a> {
    /// Node 0 is the root (the empty path).
    fn new() -> Paths<'a> {
        Paths {
            counts: vec![[0, 0]],
            ..Default::default()
        }
    }

    fn child(&mut self, parent: u32, label: &'a str) -> u32 {
        let next = self.counts.len() as u32;
        let id = *self.ids.entry((parent, label)).or_insert(next);
        if id == next {
            self.counts.push([0, 0]);
        }
        id
    }

    /// Count `lines` as side 0 (before) or 1 (after).
    fn add(&mut self, lines: &'a [String], side: usize) {
        for line in lines {
            let Some((stack, n)) = parse(line) else {
                continue;
            };
            self.totals[side] += n;
            self.counts[0][side] += n;
            let mut id = 0;
            for part in stack.split(';') {
                id = self.child(id, part);
                self.counts[id as usize][side] += n;
            }
        }
    }

    /// Change of the node's share of all samples, in percentage points.
    fn delta(&self, id: u32) -> f64 {
        let c = self.counts.get(id as usize).copied().unwrap_or([0, 0]);
        pct(c[1], self.totals[1]) - pct(c[0], self.totals[0])
    }
}

/// The frames inferno draws for sorted `lines`, as (depth, first sample) → node, laid out
/// as inferno does (a frame merges with the previous line's frame at the same depth).
fn layout<'a>(lines: &'a [String], paths: &mut Paths<'a>) -> HashMap<(usize, u64), u32> {
    let mut out = HashMap::new();
    let mut last: Vec<&str> = Vec::new();
    let mut time = 0u64;
    for line in lines {
        let Some((stack, n)) = parse(line) else {
            continue;
        };
        let parts: Vec<&str> = stack.split(';').collect();
        let shared = last.iter().zip(&parts).take_while(|(a, b)| a == b).count();
        let mut id = 0;
        for (depth, part) in parts.iter().enumerate() {
            id = paths.child(id, part);
            if depth >= shared {
                out.insert((depth + 1, time), id);
            }
        }
        last = parts;
        time += n;
    }
    out
}

fn diff_rgb(delta: f64, max: f64) -> (u8, u8, u8) {
    if delta.abs() < SAME {
        return (225, 225, 225);
    }
    let i = (delta.abs() / max.max(SAME)).clamp(0.15, 1.0);
    let mix = |a: f64, b: f64| (a + (b - a) * i).round() as u8;
    if delta > 0.0 {
        (mix(250.0, 225.0), mix(215.0, 45.0), mix(215.0, 40.0))
    } else {
        (mix(215.0, 50.0), mix(225.0, 90.0), mix(250.0, 230.0))
    }
}

/// Write the differential SVG.
pub fn write_svg(
    before: &ProfileData,
    after: &ProfileData,
    opts: &RenderOptions,
    w: &mut dyn Write,
) -> Result<()> {
    let common = common_names(before, after);
    let (b, a) = (
        in_common_terms(before, &common),
        in_common_terms(after, &common),
    );
    let fold = |lines: Vec<String>| {
        if opts.imports {
            lines
        } else {
            fold_imports(&lines).0
        }
    };
    let before_lines = fold(collapsed::lines(&b, opts));
    let mut after_lines = fold(collapsed::lines(&a, opts));
    if after_lines.is_empty() {
        anyhow::bail!("the AFTER profile has no stacks: nothing to draw");
    }
    after_lines.sort();
    let mut paths = Paths::new();
    paths.add(&before_lines, 0);
    paths.add(&after_lines, 1);
    let max = (1..paths.counts.len() as u32)
        .filter(|&id| paths.counts[id as usize][1] > 0)
        .map(|id| paths.delta(id).abs())
        .fold(0.0f64, f64::max);
    let only_before = paths
        .counts
        .iter()
        .filter(|c| c[0] > 0 && c[1] == 0)
        .count();

    let mut o = inferno::flamegraph::Options::default();
    o.title = format!("pyprof diff: {} → {}", label(before), label(after));
    o.subtitle = Some(format!(
        "widths: after · colour: change of each frame's share of all samples, its callees \
         included{}",
        if only_before > 0 {
            format!(" · {only_before} frames only before are not drawn (see the table)")
        } else {
            String::new()
        }
    ));
    o.count_name = "samples".into();
    o.min_width = super::flamegraph::MIN_WIDTH;
    o.no_sort = true;
    o.text_truncate_direction = inferno::flamegraph::TextTruncateDirection::Right;
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut o, after_lines.iter().map(|s| s.as_str()), &mut svg)
        .context("drawing the flamegraph")?;
    let svg = String::from_utf8(svg).context("inferno wrote invalid UTF-8")?;

    // Recolour every frame by the change of its inclusive share.
    let frames = layout(&after_lines, &mut paths);
    let mut used: BTreeSet<i8> = BTreeSet::new();
    let mut out = String::with_capacity(svg.len());
    let root_y = find_root_y(&svg);
    let mut rest = svg.as_str();
    while let Some(i) = rest.find("<rect ") {
        let (head, tail) = rest.split_at(i);
        out.push_str(head);
        let end = tail.find("/>").map(|e| e + 2).unwrap_or(tail.len());
        let rect = &tail[..end];
        let mut new_rect = rect.to_string();
        if let (Some(y), Some(x), Some(root)) = (attr(rect, "y"), attr(rect, "fg:x"), root_y) {
            if let (Ok(y), Ok(x)) = (y.parse::<f64>(), x.parse::<u64>()) {
                let depth = ((root - y) / o.frame_height as f64).round() as usize;
                let node = if depth == 0 {
                    Some(0)
                } else {
                    frames.get(&(depth, x)).copied()
                };
                if let Some(id) = node {
                    let d = if id == 0 { 0.0 } else { paths.delta(id) };
                    let (r, g, bl) = diff_rgb(d, max);
                    used.insert(if d.abs() < SAME {
                        0
                    } else if d > 0.0 {
                        1
                    } else {
                        -1
                    });
                    if let Some(old) = attr(rect, "fill") {
                        new_rect = rect.replacen(
                            &format!("fill=\"{old}\""),
                            &format!("fill=\"rgb({r},{g},{bl})\""),
                            1,
                        );
                    }
                }
            }
        }
        out.push_str(&new_rect);
        rest = &tail[end..];
    }
    out.push_str(rest);
    let mut items = Vec::new();
    if used.contains(&1) {
        items.push(LegendItem {
            rgb: diff_rgb(max.max(SAME * 2.0), max),
            text: "larger share after (deeper red: more)".into(),
        });
    }
    if used.contains(&-1) {
        items.push(LegendItem {
            rgb: diff_rgb(-max.max(SAME * 2.0), max),
            text: "smaller share after (deeper blue: more)".into(),
        });
    }
    if used.contains(&0) {
        items.push(LegendItem {
            rgb: diff_rgb(0.0, max),
            text: format!("within ±{SAME} points"),
        });
    }
    let out = patch_script(&label_root(&out, "all"));
    let out = add_legend(&out, "change of share:", &items);
    w.write_all(out.as_bytes())?;
    Ok(())
}

/// The y of the root frame's rectangle.
fn find_root_y(svg: &str) -> Option<f64> {
    let t = svg.find("<g><title>all (")?;
    let r = &svg[t..];
    let rect = &r[r.find("<rect ")?..];
    attr(&rect[..rect.find("/>")?], "y")?.parse().ok()
}

/// The value of `name="..."` in a tag.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let i = tag.find(&key)? + key.len();
    Some(&tag[i..i + tag[i..].find('"')?])
}

fn label(d: &ProfileData) -> String {
    format!("{} (Python {})", d.meta.target, d.meta.python_version)
}

/// Self samples per key, and per key the forms behind it, as shares of all samples.
struct Shares {
    by: BTreeMap<String, f64>,
    forms: BTreeMap<String, BTreeMap<String, f64>>,
}

/// `keys`: by frame id, the row of a stack whose leaf it is, and the form behind it.
fn shares(d: &ProfileData, keys: &[Option<(String, String)>]) -> Shares {
    let mut by: BTreeMap<String, u64> = BTreeMap::new();
    let mut forms: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut total = 0;
    for s in &d.stacks {
        total += s.count;
        if let Some(Some((k, form))) = s.frames.last().and_then(|&i| keys.get(i as usize)) {
            *by.entry(k.clone()).or_insert(0) += s.count;
            *forms
                .entry(k.clone())
                .or_default()
                .entry(form.clone())
                .or_insert(0) += s.count;
        }
    }
    let p = |v: u64| pct(v, total);
    Shares {
        by: by.into_iter().map(|(k, v)| (k, p(v))).collect(),
        forms: forms
            .into_iter()
            .map(|(k, m)| (k, m.into_iter().map(|(f, v)| (f, p(v))).collect()))
            .collect(),
    }
}

/// Shares of self samples per opcode (by family) and per function in both profiles,
/// largest change first (rows of at least 0.1% on either side, at most `top`), with the
/// forms behind each opcode row.
pub fn write_table(
    before: &ProfileData,
    after: &ProfileData,
    w: &mut dyn Write,
    top: usize,
    style: TextStyle,
) -> Result<()> {
    let width = style.width;
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
    let common = common_names(before, after);
    let op_keys = |d: &ProfileData| -> Vec<Option<(String, String)>> {
        d.frames
            .iter()
            .zip(families(d))
            .map(|(f, fam)| Some((fam?, f.opcode.clone()?)))
            .collect()
    };
    let fn_keys = |d: &ProfileData| -> Vec<Option<(String, String)>> {
        let names = FileNames::new(d, &RenderOptions::default());
        d.frames
            .iter()
            .map(|f| {
                let k = fn_key(&names, f);
                let name = common
                    .get(&k)
                    .cloned()
                    .unwrap_or_else(|| f.function.clone());
                Some((format!("{name} ({}:{})", k.0, k.1), f.function.clone()))
            })
            .collect()
    };
    type Keys<'a> = &'a dyn Fn(&ProfileData) -> Vec<Option<(String, String)>>;
    let sections: [(&str, Keys, bool); 2] = [
        ("opcode (self samples)", &op_keys, true),
        ("function (self samples)", &fn_keys, false),
    ];
    for (title, keys, with_forms) in sections {
        let (a, b) = (shares(before, &keys(before)), shares(after, &keys(after)));
        if a.by.is_empty() && b.by.is_empty() {
            writeln!(w, "\n{title}: no data (record with --opcodes)")?;
            continue;
        }
        let mut rows: Vec<(String, f64, f64)> =
            a.by.keys()
                .chain(b.by.keys())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .map(|k| {
                    (
                        k.clone(),
                        a.by.get(k).copied().unwrap_or(0.0),
                        b.by.get(k).copied().unwrap_or(0.0),
                    )
                })
                .collect();
        rows.sort_by(|x, y| {
            (y.2 - y.1)
                .abs()
                .total_cmp(&(x.2 - x.1).abs())
                .then(x.0.cmp(&y.0))
        });
        // Rows that matter on either side, largest change first.
        rows.retain(|r| r.1.max(r.2) >= 0.1);
        rows.truncate(top);
        let key_w = rows.iter().map(|r| width_of(&r.0)).max().unwrap_or(10);
        let pads = [key_w, 0];
        writeln!(w)?;
        let mut head = vec![title.to_string()];
        if with_forms {
            head.push("forms behind it (share of all samples)".into());
        }
        for l in row(
            width,
            &format!("{:>7} {:>7} {:>6}  ", "before", "after", "change"),
            &head,
            &pads,
        ) {
            writeln!(w, "{l}")?;
        }
        for (k, x, y) in rows {
            let mut items = vec![k.clone()];
            if with_forms {
                let side = |s: &Shares, tag: &str| -> Option<String> {
                    let f = s.forms.get(&k)?;
                    if f.len() == 1 && f.keys().next() == Some(&k) {
                        return None;
                    }
                    let mut v: Vec<_> = f.iter().collect();
                    v.sort_by(|p, q| q.1.total_cmp(p.1).then(p.0.cmp(q.0)));
                    let list: Vec<String> = v.iter().map(|(f, s)| format!("{f} {s:.1}%")).collect();
                    Some(format!("{tag}: {}", list.join(", ")))
                };
                let parts: Vec<String> = [side(&a, "before"), side(&b, "after")]
                    .into_iter()
                    .flatten()
                    .collect();
                if !parts.is_empty() {
                    items.push(parts.join(" · "));
                }
            }
            for l in row(
                width,
                &format!("{x:>6.1}% {y:>6.1}% {:>+6.1}  ", y - x),
                &items,
                &pads,
            ) {
                writeln!(w, "{l}")?;
            }
        }
    }
    Ok(())
}
