//! SVG flamegraphs, drawn by inferno, titled with what was profiled and how.

use super::{collapsed, RenderOptions};
use crate::profile::ProfileData;
use anyhow::{Context, Result};
use std::io::Write;

/// "pid 1234 (python app.py) · Python 3.12.1"
pub fn title(data: &ProfileData) -> String {
    format!("{} · Python {}", data.meta.target, data.meta.python_version)
}

/// "100 Hz, 10.0 s, blocking · 1000 samples, 2 errors"
pub fn subtitle(data: &ProfileData) -> String {
    let m = &data.meta;
    format!(
        "{} Hz, {:.1} s, {} · {} samples, {} errors{}",
        m.rate_hz,
        m.duration_secs,
        m.mode,
        m.samples,
        m.error_count(),
        if m.opcodes {
            " · leaves are opcodes"
        } else {
            ""
        }
    )
}

pub fn write(data: &ProfileData, opts: &RenderOptions, w: &mut dyn Write) -> Result<()> {
    let lines = collapsed::lines(data, opts);
    if lines.is_empty() {
        return write_empty(data, w);
    }
    let mut o = inferno::flamegraph::Options::default();
    o.title = title(data);
    o.subtitle = Some(subtitle(data));
    o.count_name = "samples".into();
    o.name_type = "Frame:".into();
    o.min_width = 0.05;
    inferno::flamegraph::from_lines(&mut o, lines.iter().map(|s| s.as_str()), w)
        .context("drawing the flamegraph")?;
    Ok(())
}

/// inferno refuses an empty profile; a user still gets an SVG that says what happened.
fn write_empty(data: &ProfileData, w: &mut dyn Write) -> Result<()> {
    let esc = |s: String| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
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
        esc(title(data)),
        esc(subtitle(data))
    )?;
    Ok(())
}
