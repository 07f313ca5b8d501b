//! SVG flamegraphs, drawn by inferno, titled with what was profiled and how.
//!
//! What a class sees matters here: labels are cut on the right (the function name stays
//! readable, with or without JavaScript), the root bar is labelled in the file itself,
//! opcode leaves have their own palette by specialization state (see
//! [`super::specialization::State`]) with a legend drawn into the SVG, and each import
//! (the import machinery's frames, `<frozen importlib._bootstrap>`, and the imported
//! module's code below them) is folded into one `[import name]` frame, so a launched
//! program's imports do not make a tall, empty picture (`--imports` draws them in full).

use super::collapsed;
use super::opcodes::table_of;
use super::specialization::{self as spec, State};
use super::RenderOptions;
use crate::profile::ProfileData;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::io::Write;

/// The label of a folded import whose module is not known.
pub const IMPORT_FOLD: &str = "[import]";
/// Frames narrower than this share of the samples (percent) are not drawn (inferno's
/// default): invisible anyway, they would only make the picture taller.
pub const MIN_WIDTH: f64 = 0.1;

/// "pid 1234 (python app.py) · Python 3.12.1"
pub fn title(data: &ProfileData) -> String {
    format!("{} · Python {}", data.meta.target, data.meta.python_version)
}

/// "100 Hz, 10.0 s, bpf sampler (nonblocking) · 1000 samples, 2 errors"
pub fn subtitle(data: &ProfileData) -> String {
    let m = &data.meta;
    let how = if m.sampler.is_empty() {
        m.mode.clone()
    } else {
        format!("{} sampler ({})", m.sampler, m.mode)
    };
    format!(
        "{} Hz, {:.1} s, {} · {} samples, {} errors{}",
        m.rate_hz,
        m.duration_secs,
        how,
        m.samples,
        m.error_count(),
        if m.opcodes {
            " · leaves are opcodes"
        } else {
            ""
        }
    )
}

/// Is this frame label one of the import system's own frames?
fn is_import_machinery(label: &str) -> bool {
    label.contains("(<frozen importlib._bootstrap")
        || label.contains("importlib/_bootstrap.py")
        || label.contains("importlib/_bootstrap_external.py")
}

/// The module a `<module> (file:line)` label runs: `json/decoder.py` → `json.decoder`.
fn module_of(label: &str) -> Option<String> {
    let rest = label.strip_prefix("<module> (")?;
    let file = rest.rsplit_once(':').map(|r| r.0).unwrap_or(rest);
    let file = file.trim_end_matches(')');
    if file.starts_with('<') {
        // "<frozen os>"
        return Some(
            file.trim_start_matches("<frozen ")
                .trim_end_matches('>')
                .to_string(),
        );
    }
    let file = file.strip_suffix(".py").unwrap_or(file);
    let file = file.strip_suffix("/__init__").unwrap_or(file);
    let name = file.trim_start_matches('/').replace('/', ".");
    (!name.is_empty()).then_some(name)
}

/// Fold each import (from the first import machinery frame down to the leaf) into one
/// `[import name]` frame, named after the module whose code runs below it, and merge the
/// stacks made equal. Returns the lines and whether anything was folded.
pub fn fold_imports(lines: &[String]) -> (Vec<String>, bool) {
    let mut merged: BTreeMap<String, u64> = BTreeMap::new();
    let mut folded = false;
    for line in lines {
        let Some((stack, count)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(count) = count.parse::<u64>() else {
            continue;
        };
        let parts: Vec<&str> = stack.split(';').collect();
        let key = match parts.iter().position(|p| is_import_machinery(p)) {
            Some(i) => {
                folded = true;
                let label = parts[i..]
                    .iter()
                    .find_map(|p| module_of(p))
                    .map(|m| format!("[import {m}]"))
                    .unwrap_or_else(|| IMPORT_FOLD.to_string());
                let mut kept: Vec<&str> = parts[..i].to_vec();
                kept.push(&label);
                kept.join(";")
            }
            None => stack.to_string(),
        };
        *merged.entry(key).or_insert(0) += count;
    }
    (
        merged
            .into_iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect(),
        folded,
    )
}

/// `rgb(r,g,b)` for a state, varied a little by name so neighbours stay apart.
fn leaf_color(state: State, name: &str) -> inferno::flamegraph::color::Color {
    let (r, g, b) = state.rgb();
    let h = name
        .bytes()
        .fold(2166136261u32, |h, c| (h ^ c as u32).wrapping_mul(16777619));
    let j = |v: u8, k: u32| (v as i32 + ((h >> k) % 21) as i32 - 10).clamp(0, 255) as u8;
    inferno::flamegraph::color::Color {
        r: j(r, 0),
        g: j(g, 8),
        b: j(b, 16),
    }
}

/// The colour of `<native FILE>` frames (below an opcode leaf).
const NATIVE_RGB: (u8, u8, u8) = (175, 160, 120);

pub fn write(data: &ProfileData, opts: &RenderOptions, w: &mut dyn Write) -> Result<()> {
    let (lines, folded) = if opts.imports {
        (collapsed::lines(data, opts), false)
    } else {
        fold_imports(&collapsed::lines(data, opts))
    };
    if lines.is_empty() {
        return write_empty(data, w);
    }
    // Opcode leaves: a colour by state, and the self samples of each state for the legend.
    let table = table_of(data);
    // (3.13t: the generic form of a family is all there is, not a missed specialization.)
    let no_specializer = spec::no_specializer(data);
    let mut palette = inferno::flamegraph::color::PaletteMap::default();
    let mut per_state: BTreeMap<State, u64> = BTreeMap::new();
    let mut leaf_state: BTreeMap<String, State> = BTreeMap::new();
    for f in &data.frames {
        if let (Some(op), Some(base)) = (&f.opcode, &f.base_opcode) {
            let label = format!("[{op}]");
            let st = match spec::state(table, op, base) {
                State::Unspecialized if no_specializer => State::Plain,
                st => st,
            };
            palette.insert(&label, leaf_color(st, op));
            leaf_state.insert(label, st);
        }
    }
    // Native code an instruction called: one colour, apart from the instruction's.
    let mut native_samples = 0u64;
    for f in data.frames.iter().filter(|f| f.native_object().is_some()) {
        let (r, g, b) = NATIVE_RGB;
        palette.insert(&f.function, inferno::flamegraph::color::Color { r, g, b });
    }
    // --native: native frames in the same colour, Python frames in inferno's.
    let mut native_frames = false;
    if data.frames.iter().any(|f| f.object.is_some()) {
        let names = super::FileNames::new(data, opts);
        for f in data.frames.iter().filter(|f| f.object.is_some()) {
            let (r, g, b) = NATIVE_RGB;
            let label = collapsed::frame_label(f, opts, &names);
            palette.insert(&label, inferno::flamegraph::color::Color { r, g, b });
            native_frames = true;
        }
    }
    for line in &lines {
        if let Some((stack, n)) = line.rsplit_once(' ') {
            let mut parts = stack.rsplit(';');
            let mut leaf = parts.next().unwrap_or("");
            let n = n.parse::<u64>().unwrap_or(0);
            if leaf.starts_with("<native ") {
                native_samples += n;
                leaf = parts.next().unwrap_or("");
            }
            if let Some(st) = leaf_state.get(leaf) {
                *per_state.entry(*st).or_insert(0) += n;
            }
        }
    }
    let mut o = inferno::flamegraph::Options::default();
    o.title = title(data);
    let mut sub = subtitle(data);
    if folded {
        sub.push_str(" · imports folded (--imports draws them)");
    }
    o.subtitle = Some(sub);
    o.count_name = "samples".into();
    o.name_type = "Frame:".into();
    o.min_width = MIN_WIDTH;
    o.text_truncate_direction = inferno::flamegraph::TextTruncateDirection::Right;
    o.palette_map = Some(&mut palette);
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut o, lines.iter().map(|s| s.as_str()), &mut svg)
        .context("drawing the flamegraph")?;
    let mut svg = String::from_utf8(svg).context("inferno wrote invalid UTF-8")?;
    svg = patch_script(&label_root(&svg, "all"));
    if !per_state.is_empty() {
        let mut items: Vec<LegendItem> = vec![LegendItem {
            rgb: (230, 120, 40),
            text: "Python function".into(),
        }];
        let specializing = table.map(|t| t.has_inline_caches()).unwrap_or(false) && !no_specializer;
        for (st, n) in &per_state {
            let text = if !specializing && *st == State::Plain {
                let build = if no_specializer {
                    " (free-threaded)"
                } else {
                    ""
                };
                format!(
                    "opcode: Python {}{build} does not specialize ({n} samples)",
                    data.meta.python_version
                )
            } else {
                format!("{} ({n} samples)", st.legend())
            };
            items.push(LegendItem {
                rgb: st.rgb(),
                text,
            });
        }
        if native_samples > 0 {
            items.push(LegendItem {
                rgb: NATIVE_RGB,
                text: format!(
                    "<native FILE>: native code the instruction called, outside the \
                     interpreter ({native_samples} samples)"
                ),
            });
        }
        svg = add_legend(&svg, "opcode leaves by state:", &items);
    } else if native_frames {
        let items = vec![
            LegendItem {
                rgb: (230, 120, 40),
                text: "Python function".into(),
            },
            LegendItem {
                rgb: NATIVE_RGB,
                text: "native function (--native): C, C++ or Rust, in the interpreter, \
                       an extension or a library"
                    .into(),
            },
        ];
        svg = add_legend(&svg, "frames:", &items);
    }
    w.write_all(svg.as_bytes())?;
    Ok(())
}

/// inferno's script shows a bare `..` in a box too narrow for one character and the
/// dots: show nothing there instead (its text before the script runs is empty too).
pub fn patch_script(svg: &str) -> String {
    const AT: &str = "var substringLength = Math.floor(w / known_font_width) - 2;";
    svg.replacen(
        AT,
        &format!(
            "{AT}\n        if (substringLength < 1) {{ textElemNewAttributes.push([newX, \"\"]); continue; }}"
        ),
        1,
    )
}

/// One swatch of a legend.
pub struct LegendItem {
    pub rgb: (u8, u8, u8),
    pub text: String,
}

/// Give the root frame (inferno leaves its text empty until its script runs) a label
/// that shows without JavaScript.
pub fn label_root(svg: &str, label: &str) -> String {
    let Some(t) = svg.find("<g><title>all (") else {
        return svg.to_string();
    };
    let Some(rel) = svg[t..].find("></text>") else {
        return svg.to_string();
    };
    let at = t + rel + 1;
    format!("{}{label}{}", &svg[..at], &svg[at..])
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Draw a legend below inferno's picture: the image grows by the legend's height.
pub fn add_legend(svg: &str, heading: &str, items: &[LegendItem]) -> String {
    const ROW: usize = 20;
    const WIDTH: usize = 1200;
    const CHAR: f64 = 7.3; // 12px monospace
    let Some(height) = svg_height(svg) else {
        return svg.to_string();
    };
    // Lay the swatches out in rows.
    let mut rows: Vec<Vec<(usize, &LegendItem)>> = vec![Vec::new()];
    let mut x = 10 + (heading.chars().count() as f64 * CHAR) as usize + 12;
    for it in items {
        let w = 16 + (it.text.chars().count() as f64 * CHAR) as usize + 18;
        if x + w > WIDTH - 10 && !rows.last().is_some_and(|r| r.is_empty()) {
            rows.push(Vec::new());
            x = 10 + (heading.chars().count() as f64 * CHAR) as usize + 12;
        }
        if let Some(r) = rows.last_mut() {
            r.push((x, it));
        }
        x += w;
    }
    let extra = rows.len() * ROW + 8;
    let new_h = height + extra;
    let mut g = format!(
        "<g id=\"legend\"><text x=\"10\" y=\"{}\">{}</text>",
        height + 16,
        esc(heading)
    );
    for (i, r) in rows.iter().enumerate() {
        let y = height + 4 + i * ROW;
        for (x, it) in r {
            let (cr, cg, cb) = it.rgb;
            g.push_str(&format!(
                "<g class=\"swatch\"><rect x=\"{x}\" y=\"{y}\" width=\"12\" height=\"12\" \
                 fill=\"rgb({cr},{cg},{cb})\" stroke=\"rgb(80,80,80)\" stroke-width=\"0.5\"/>\
                 <text x=\"{}\" y=\"{}\">{}</text></g>",
                x + 16,
                y + 11,
                esc(&it.text)
            ));
        }
    }
    g.push_str("</g>");
    let mut out = svg.replacen(
        &format!("height=\"{height}\" onload"),
        &format!("height=\"{new_h}\" onload"),
        1,
    );
    out = out.replacen(
        &format!("viewBox=\"0 0 {WIDTH} {height}\""),
        &format!("viewBox=\"0 0 {WIDTH} {new_h}\""),
        1,
    );
    out = out.replacen(
        &format!("<rect x=\"0\" y=\"0\" width=\"100%\" height=\"{height}\""),
        &format!("<rect x=\"0\" y=\"0\" width=\"100%\" height=\"{new_h}\""),
        1,
    );
    match out.rfind("</svg>") {
        Some(i) => format!("{}{g}{}", &out[..i], &out[i..]),
        None => out,
    }
}

/// The `height` of the outer `<svg>` element.
fn svg_height(svg: &str) -> Option<usize> {
    let start = svg.find("<svg ")?;
    let tag = &svg[start..start + svg[start..].find('>')?];
    let h = tag.split("height=\"").nth(1)?;
    h[..h.find('"')?].parse().ok()
}

/// inferno refuses an empty profile; a user still gets an SVG that says what happened.
fn write_empty(data: &ProfileData, w: &mut dyn Write) -> Result<()> {
    write!(
        w,
        r##"<?xml version="1.0" standalone="no"?>
<svg version="1.1" width="1200" height="120" xmlns="http://www.w3.org/2000/svg">
<rect x="0" y="0" width="1200" height="120" fill="#eeeeee"/>
<text x="600" y="40" font-size="17" font-family="Verdana" text-anchor="middle">{}</text>
<text x="600" y="70" font-size="12" font-family="Verdana" text-anchor="middle">{}</text>
<text x="600" y="95" font-size="12" font-family="Verdana" text-anchor="middle">No Python stacks were sampled.</text>
</svg>
"##,
        esc(&title(data)),
        esc(&subtitle(data))
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_runs_of_import_frames() {
        let lines = vec![
            "<module> (a.py:1);_find_and_load (<frozen importlib._bootstrap>:1);_load (<frozen importlib._bootstrap>:2);<module> (b.py:1);[LOAD_NAME] 2".to_string(),
            "<module> (a.py:1);_find_and_load (<frozen importlib._bootstrap>:1);<module> (b.py:1);[LOAD_NAME] 3".to_string(),
            "<module> (a.py:1);f (a.py:3) 5".to_string(),
        ];
        let (out, folded) = fold_imports(&lines);
        assert!(folded);
        assert_eq!(
            out,
            vec![
                "<module> (a.py:1);[import b] 5".to_string(),
                "<module> (a.py:1);f (a.py:3) 5".to_string()
            ]
        );
        assert_eq!(
            module_of("<module> (json/decoder.py:3)").as_deref(),
            Some("json.decoder")
        );
        assert_eq!(
            module_of("<module> (asyncio/__init__.py:1)").as_deref(),
            Some("asyncio")
        );
        assert_eq!(module_of("<module> (<frozen os>:1)").as_deref(), Some("os"));
    }
}
