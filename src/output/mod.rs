//! Output formats: collapsed stacks, SVG flamegraphs (inferno), the JSON profile, and
//! the helpers they share: file names as shown in labels, the width of text reports
//! (terminal, `COLUMNS`, or unlimited in files) and whether to colour them (`NO_COLOR`).
//!
//! Every writer renders a `ProfileData`, so a saved JSON profile re-renders to any
//! format without the target. Files are written to a temporary name beside the
//! destination and renamed, so a reader never sees a half-written file.

pub mod annotate;
pub mod chrometrace;
pub mod collapsed;
pub mod diff;
pub mod disasm;
pub mod flamegraph;
pub mod opcodes;
pub mod pprof;
pub mod specialization;
pub mod speedscope;
pub mod text;

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
    /// Flamegraphs: draw imports in full (default: each import folded into one frame).
    pub imports: bool,
}

/// How a text report is laid out: its width (None: unlimited, as in a file) and colour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TextStyle {
    pub width: Option<usize>,
    pub color: bool,
}

impl TextStyle {
    /// For a file: full width, no colour.
    pub fn file() -> TextStyle {
        TextStyle::default()
    }

    /// For standard output: `COLUMNS` if set, else the terminal's width when it is one,
    /// else unlimited; colour only on a terminal and when `NO_COLOR` is not set.
    pub fn stdout() -> TextStyle {
        use std::io::IsTerminal;
        let tty = std::io::stdout().is_terminal();
        let width = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.trim().parse::<usize>().ok())
            .filter(|&c| c > 0)
            .or_else(|| {
                if tty {
                    ratatui::crossterm::terminal::size()
                        .ok()
                        .map(|(w, _)| w as usize)
                        .filter(|&w| w > 0)
                } else {
                    None
                }
            });
        TextStyle {
            width: width.map(|w| w.max(20)),
            color: tty && no_color_unset(),
        }
    }
}

/// `NO_COLOR` (<https://no-color.org>): set to anything non-empty turns colour off.
pub fn no_color_unset() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Render a profile in `format` to `path` (atomically).
pub fn write(data: &ProfileData, format: Format, opts: &RenderOptions, path: &Path) -> Result<()> {
    if path.as_os_str() == "-" {
        return write_stdout(data, format, opts);
    }
    write_atomic(path, |w| render(data, format, opts, w, TextStyle::file()))
}

impl Format {
    /// The format a file name asks for by its extension, if it names one.
    pub fn from_path(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        let f = if name.ends_with(".speedscope.json") {
            Format::Speedscope
        } else if name.ends_with(".trace.json") || name.ends_with(".chrometrace.json") {
            Format::Chrometrace
        } else if name.ends_with(".json") {
            Format::Json
        } else if name.ends_with(".svg") {
            Format::Flamegraph
        } else if name.ends_with(".pb.gz") || name.ends_with(".pprof") {
            Format::Pprof
        } else if name.ends_with(".collapsed") || name.ends_with(".folded") {
            Format::Collapsed
        } else if name.ends_with(".txt") {
            // A .txt is text: collapsed stacks, or the opcode report when asked for.
            Format::Collapsed
        } else {
            return None;
        };
        Some(f)
    }

    /// Do `-f self` and an output named `path` agree (a .txt takes either text
    /// format)?
    pub fn fits(self, path: &Path) -> bool {
        match Format::from_path(path) {
            None => true,
            Some(Format::Collapsed)
                if path
                    .to_string_lossy()
                    .to_ascii_lowercase()
                    .ends_with(".txt") =>
            {
                matches!(self, Format::Collapsed | Format::Opcodes)
            }
            Some(f) => f == self,
        }
    }
}

/// Render to standard output (for terminal formats), fitted to the terminal. A closed
/// pipe (`| head`) ends quietly.
pub fn write_stdout(data: &ProfileData, format: Format, opts: &RenderOptions) -> Result<()> {
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    let r = render(data, format, opts, &mut w, TextStyle::stdout())
        .and_then(|()| w.flush().map_err(anyhow::Error::from));
    match r {
        Err(e) if is_broken_pipe(&e) => Ok(()),
        r => r,
    }
}

/// Render a profile in `format` (the style applies to the opcode report only).
pub fn render(
    data: &ProfileData,
    format: Format,
    opts: &RenderOptions,
    w: &mut dyn Write,
    style: TextStyle,
) -> Result<()> {
    match format {
        Format::Collapsed => collapsed::write(data, opts, w),
        Format::Flamegraph => flamegraph::write(data, opts, w),
        Format::Json => {
            // The problems are derived data: always as this pyprof finds them.
            let mut with = data.clone();
            with.specialization_problems = if data.meta.opcodes {
                specialization::problems(data)
            } else {
                Vec::new()
            };
            serde_json::to_writer(&mut *w, &with)?;
            w.write_all(b"\n")?;
            Ok(())
        }
        Format::Opcodes => opcodes::write(data, w, style, 20),
        Format::Speedscope => speedscope::write(data, opts, w),
        Format::Chrometrace => chrometrace::write(data, opts, w),
        Format::Pprof => pprof::write(data, opts, w),
    }
}

/// Where an output goes: standard output (`-`), a regular file (written to a temporary
/// name and renamed, so it is never half-written), or something else that exists — a
/// device, a FIFO, or a symlink to one of those — written in place, never replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    File(PathBuf),
    InPlace(PathBuf),
}

impl Destination {
    pub fn of(path: &Path) -> Destination {
        if path.as_os_str() == "-" {
            return Destination::Stdout;
        }
        // A symlink is followed: what matters is what it points at.
        match std::fs::metadata(path) {
            Ok(m) if !m.is_file() && !m.is_dir() => Destination::InPlace(path.to_path_buf()),
            Ok(_) => Destination::File(real_file(path)),
            Err(_) => Destination::File(path.to_path_buf()),
        }
    }
}

/// A regular file behind `path`: the file a symlink points at (so that the symlink
/// stays a symlink when the file is replaced).
fn real_file(path: &Path) -> PathBuf {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
        }
        _ => path.to_path_buf(),
    }
}

/// Check before sampling that `path` can be written: not a directory, its folder exists
/// and accepts a new file (or, for a device or FIFO, that it opens for writing).
pub fn check_writable(path: &Path) -> Result<()> {
    match Destination::of(path) {
        Destination::Stdout => Ok(()),
        Destination::InPlace(p) => {
            // A FIFO would block until a reader comes: only its permissions are checked.
            let m = std::fs::metadata(&p)
                .with_context(|| format!("cannot write output {}", p.display()))?;
            use std::os::unix::fs::FileTypeExt;
            if m.file_type().is_fifo() {
                return Ok(());
            }
            std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .with_context(|| format!("cannot write output {}", p.display()))?;
            Ok(())
        }
        Destination::File(p) => {
            if p.is_dir() {
                bail!("cannot write output {}: it is a directory", p.display());
            }
            let tmp = temp_path(&p);
            std::fs::File::create(&tmp)
                .with_context(|| format!("cannot write output {}", p.display()))?;
            let _ = std::fs::remove_file(&tmp);
            Ok(())
        }
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    path.with_file_name(format!(".{name}.pyprof-{}.tmp", std::process::id()))
}

/// Write `path` with `f`: a regular file through a temporary file in the same folder,
/// then renamed over it; a device or FIFO in place; `-` to standard output. A full disk
/// (or /dev/full) is an error that says so; a closed pipe ends quietly (the reader has
/// what it wanted).
pub fn write_atomic(path: &Path, f: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let dest = Destination::of(path);
    let shown = path.display().to_string();
    let fail = |e: anyhow::Error| -> Result<()> {
        if is_broken_pipe(&e) {
            return Ok(());
        }
        Err(e.context(format!("cannot write output {shown}")))
    };
    match dest {
        Destination::Stdout => {
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::new(stdout.lock());
            match f(&mut w).and_then(|()| w.flush().map_err(anyhow::Error::from)) {
                Ok(()) => Ok(()),
                Err(e) => fail(e),
            }
        }
        Destination::InPlace(p) => {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .with_context(|| format!("cannot write output {}", p.display()))?;
            let mut w = std::io::BufWriter::new(file);
            match f(&mut w).and_then(|()| w.flush().map_err(anyhow::Error::from)) {
                Ok(()) => Ok(()),
                Err(e) => fail(e),
            }
        }
        Destination::File(p) => {
            let tmp = temp_path(&p);
            let result = (|| {
                let file = std::fs::File::create(&tmp)?;
                let mut w = std::io::BufWriter::new(file);
                f(&mut w)?;
                let file = w.into_inner().map_err(|e| e.into_error())?;
                file.sync_all().ok();
                std::fs::rename(&tmp, &p)?;
                Ok(())
            })();
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result.or_else(fail)
        }
    }
}

/// Is this error a write to a closed pipe (EPIPE)?
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// File names as labels show them: [`short_filename`], plus relative to the main
/// script's folder (`sys.path[0]`, as py-spy does), so a script run from anywhere shows
/// as `demo.py`, not its full path.
#[derive(Clone, Debug, Default)]
pub struct FileNames {
    cwd: String,
    /// The main script's folder, with a trailing `/`.
    script_dir: Option<String>,
    full: bool,
}

impl FileNames {
    pub fn new(data: &ProfileData, opts: &RenderOptions) -> FileNames {
        FileNames::of(&data.meta.cwd, main_script(data), opts.full_filenames)
    }

    /// For a target with working directory `cwd` and main script `script`.
    pub fn of(cwd: &str, script: Option<&str>, full: bool) -> FileNames {
        FileNames {
            cwd: cwd.to_string(),
            script_dir: script.and_then(|f| {
                let (dir, _) = f.rsplit_once('/')?;
                (!dir.is_empty()).then(|| format!("{dir}/"))
            }),
            full,
        }
    }

    /// Shortened (unless full file names were asked for).
    pub fn show<'a>(&self, file: &'a str) -> &'a str {
        if self.full {
            return file;
        }
        let short = short_filename(file, "");
        if short.len() != file.len() {
            return short;
        }
        if let Some(dir) = &self.script_dir {
            if let Some(rest) = file.strip_prefix(dir.as_str()) {
                return rest;
            }
        }
        short_filename(file, &self.cwd)
    }
}

/// The file of the `__main__` module: the `<module>` frame at the root of the most
/// samples that is not part of the interpreter (frozen or under `lib/pythonX.Y`).
pub fn main_script(data: &ProfileData) -> Option<&str> {
    let mut by: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for s in &data.stacks {
        let Some(f) = s.frames.first().and_then(|&i| data.frames.get(i as usize)) else {
            continue;
        };
        if f.function == "<module>" && !f.file.starts_with('<') && !is_library(&f.file) {
            *by.entry(f.file.as_str()).or_insert(0) += s.count;
        }
    }
    by.into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        .map(|(f, _)| f)
}

/// Under `site-packages/`, `dist-packages/` or `lib/pythonX.Y/`.
pub fn is_library(file: &str) -> bool {
    file.contains("/site-packages/") || file.contains("/dist-packages/") || {
        file.find("/lib/python")
            .map(|i| file[i + "/lib/python".len()..].contains('/'))
            .unwrap_or(false)
    }
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

    #[test]
    fn main_script_folder_shortens_like_sys_path() {
        use crate::profile::{Frame, Stack};
        let frame = |function: &str, file: &str| Frame {
            function: function.into(),
            file: file.into(),
            first_line: 1,
            line: 1,
            offset: None,
            opcode: None,
            base_opcode: None,
            object: None,
        };
        let mut data = ProfileData::default();
        data.meta.cwd = "/home/u".into();
        data.frames = vec![
            frame("<module>", "/tmp/x/demo.py"),
            frame("f", "/tmp/x/lib/helper.py"),
            frame("<module>", "/usr/lib/python3.12/runpy.py"),
        ];
        data.stacks = vec![
            Stack {
                frames: vec![0, 1],
                thread: 0,
                count: 5,
                truncated: false,
                native: None,
            },
            Stack {
                frames: vec![2],
                thread: 0,
                count: 9,
                truncated: false,
                native: None,
            },
        ];
        let names = FileNames::new(&data, &RenderOptions::default());
        assert_eq!(main_script(&data), Some("/tmp/x/demo.py"));
        assert_eq!(names.show("/tmp/x/demo.py"), "demo.py");
        assert_eq!(names.show("/tmp/x/lib/helper.py"), "lib/helper.py");
        assert_eq!(names.show("/usr/lib/python3.12/json/x.py"), "json/x.py");
        assert_eq!(names.show("/home/u/app.py"), "app.py");
        assert_eq!(names.show("/srv/other.py"), "/srv/other.py");
    }
}
