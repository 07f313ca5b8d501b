//! Output formats: collapsed stacks, SVG flamegraphs (inferno), the JSON profile.
//!
//! Every writer renders a `ProfileData`, so a saved JSON profile re-renders to any
//! format without the target. Files are written to a temporary name beside the
//! destination and renamed, so a reader never sees a half-written file.

pub mod annotate;
pub mod chrometrace;
pub mod collapsed;
pub mod diff;
pub mod flamegraph;
pub mod opcodes;
pub mod pprof;
pub mod speedscope;

use crate::profile::ProfileData;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The formats `record` and `report` can write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// SVG flamegraph (inferno)
    Flamegraph,
    /// Collapsed stacks, one line per stack: `a (f.py:1);b (f.py:2) 42`
    #[value(alias = "raw")]
    Collapsed,
    /// The lossless pyprof JSON profile
    Json,
    /// Text report of hot opcodes (needs --opcodes)
    Opcodes,
    /// speedscope's JSON file format, one profile per thread
    Speedscope,
    /// Chrome trace event format (chrome://tracing, Perfetto), aggregated on a synthetic timeline
    Chrometrace,
    /// Gzipped pprof protobuf (Pyroscope, Grafana, Parca, `go tool pprof`)
    Pprof,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Flamegraph => "svg",
            Format::Collapsed => "txt",
            Format::Json => "json",
            Format::Opcodes => "txt",
            Format::Speedscope => "speedscope.json",
            Format::Chrometrace => "trace.json",
            Format::Pprof => "pb.gz",
        }
    }
}

/// How stacks are labelled when rendered.
#[derive(Clone, Debug, Default)]
pub struct RenderOptions {
    /// A root frame per thread.
    pub threads: bool,
    /// Aggregate by function: label frames with the function's first line.
    pub function: bool,
    /// No line numbers at all.
    pub nolineno: bool,
    /// Keep file names as the interpreter has them (default: shortened).
    pub full_filenames: bool,
}

/// Render a profile in `format` to `path` (atomically).
pub fn write(data: &ProfileData, format: Format, opts: &RenderOptions, path: &Path) -> Result<()> {
    write_atomic(path, |w| render(data, format, opts, w, false))
}

/// Render to standard output (for terminal formats); colour when it is a terminal.
pub fn write_stdout(data: &ProfileData, format: Format, opts: &RenderOptions) -> Result<()> {
    use std::io::IsTerminal;
    let stdout = std::io::stdout();
    let color = stdout.is_terminal();
    render(data, format, opts, &mut stdout.lock(), color)
}

/// Render a profile in `format` (colour applies to the opcode report only).
pub fn render(
    data: &ProfileData,
    format: Format,
    opts: &RenderOptions,
    w: &mut dyn Write,
    color: bool,
) -> Result<()> {
    match format {
        Format::Collapsed => collapsed::write(data, opts, w),
        Format::Flamegraph => flamegraph::write(data, opts, w),
        Format::Json => {
            serde_json::to_writer(&mut *w, data)?;
            w.write_all(b"\n")?;
            Ok(())
        }
        Format::Opcodes => opcodes::write(data, w, color, 20),
        Format::Speedscope => speedscope::write(data, opts, w),
        Format::Chrometrace => chrometrace::write(data, opts, w),
        Format::Pprof => pprof::write(data, opts, w),
    }
}

/// Check before sampling that `path` can be written: not a directory, its folder exists
/// and accepts a new file.
pub fn check_writable(path: &Path) -> Result<()> {
    if path.is_dir() {
        bail!("cannot write output {}: it is a directory", path.display());
    }
    let tmp = temp_path(path);
    std::fs::File::create(&tmp)
        .with_context(|| format!("cannot write output {}", path.display()))?;
    let _ = std::fs::remove_file(&tmp);
    Ok(())
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    path.with_file_name(format!(".{name}.pyprof-{}.tmp", std::process::id()))
}

/// Write through a temporary file in the same folder, then rename over `path`.
pub fn write_atomic(path: &Path, f: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let file = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot write output {}", path.display()))?;
        let mut w = std::io::BufWriter::new(file);
        f(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all().ok();
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot write output {}", path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A file name as shown in stacks: the part after `site-packages/`, `dist-packages/` or
/// `lib/pythonX.Y/`, else relative to the target's working directory, else unchanged.
pub fn short_filename<'a>(file: &'a str, cwd: &str) -> &'a str {
    for marker in ["/site-packages/", "/dist-packages/"] {
        if let Some(i) = file.rfind(marker) {
            return &file[i + marker.len()..];
        }
    }
    if let Some(i) = file.find("/lib/python") {
        let rest = &file[i + "/lib/python".len()..];
        if let Some(j) = rest.find('/') {
            return &rest[j + 1..];
        }
    }
    if !cwd.is_empty() && cwd != "/" {
        if let Some(rest) = file.strip_prefix(cwd) {
            if let Some(rest) = rest.strip_prefix('/') {
                return rest;
            }
        }
    }
    file
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortens_filenames() {
        assert_eq!(
            short_filename("/usr/lib/python3.11/threading.py", ""),
            "threading.py"
        );
        assert_eq!(
            short_filename("/v/lib/python3.12/site-packages/numpy/core.py", ""),
            "numpy/core.py"
        );
        assert_eq!(short_filename("/home/u/app/x.py", "/home/u"), "app/x.py");
        assert_eq!(
            short_filename("/home/u/app/x.py", "/srv"),
            "/home/u/app/x.py"
        );
        assert_eq!(short_filename("<string>", "/srv"), "<string>");
    }
}
