//! `pyprof top`: a live, sortable terminal view of the hottest functions of a running
//! Python process (like `py-spy top`).
//!
//! Sampling runs on the calling thread with the same fixed-rate clock as `record`
//! (`sampler::Ticker`: tick k at a random instant of period k after the start; a tick
//! that comes too late is skipped and counted as late). Between ticks the loop waits for
//! keyboard input with a timeout that ends at the next deadline, so it never busy-spins.
//! Samples of the current window go into a fresh [`Profile`]; once a second the window is
//! folded into [`Stats`] and the screen is redrawn:
//!
//! * `%Own`: share of the window's samples (thread stacks) whose leaf is the function;
//! * `%Total`: share of the window's samples that have the function anywhere on the stack
//!   (a recursive function counts once per sample);
//! * `OwnTime`, `TotalTime`: the same counts since the start (or the last reset), in
//!   seconds (`samples / rate`).
//!
//! Functions are keyed by (file, qualified name, first line) and shown as
//! `function (file:first_line)`. With `--opcodes`, key `o` switches to a view of the hot
//! opcodes (executed opcode, base opcode, `%Own`) and the hottest
//! `function (file:line)` + instruction offset spots.
//!
//! Keys: `1`..`4` (or `←`/`→`, `s`) choose the sort column, `r` resets the counters, `p`
//! pauses (no sampling, the screen stays as it is), `o` toggles the opcode view, `q` or
//! Ctrl-C quits. SIGINT, SIGTERM and SIGHUP also end the view cleanly (the handler ends
//! the process itself if the loop does not notice within 2 s), and so does a terminal
//! that hangs up (its input is watched with poll(2): crossterm's reader would spin on
//! it). The terminal is restored on every way out: normal return, error, or panic. When
//! the target exits, the view says so and returns after a few seconds (or at once on
//! `q`).

use crate::output::opcodes::fit;
use crate::output::short_filename;
use crate::process::live::is_alive;
use crate::profile::{Meta, Profile, ProfileData};
use crate::sampler::{Sampler, Session};
use anyhow::{bail, Context, Result};
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::crossterm::{cursor, execute, terminal};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::{Frame, Terminal};
use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Stdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How often the window is folded into the counters and the screen redrawn.
const REFRESH: Duration = Duration::from_secs(1);
/// How long the last screen stays up after the target exited.
const EXIT_LINGER: Duration = Duration::from_secs(3);

/// What `pyprof top` was asked for.
#[derive(Clone, Debug)]
pub struct TopOptions {
    /// Samples per second.
    pub rate_hz: f64,
    /// The sampler backend (bpf, ptrace or read).
    pub sampler: crate::sampler::SamplerKind,
    /// Capture the executing opcode of every frame (enables the opcode view).
    pub opcodes: bool,
    /// What is profiled, as the header shows it: "pid 1234 (python app.py)".
    pub target_label: String,
}

/// The column the function table is sorted by (always descending).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    Own,
    Total,
    OwnTime,
    TotalTime,
}

impl SortBy {
    const ALL: [SortBy; 4] = [
        SortBy::Own,
        SortBy::Total,
        SortBy::OwnTime,
        SortBy::TotalTime,
    ];

    fn index(self) -> usize {
        match self {
            SortBy::Own => 0,
            SortBy::Total => 1,
            SortBy::OwnTime => 2,
            SortBy::TotalTime => 3,
        }
    }

    fn next(self) -> SortBy {
        Self::ALL[(self.index() + 1) % 4]
    }

    fn prev(self) -> SortBy {
        Self::ALL[(self.index() + 3) % 4]
    }

    /// Does this column sort by the current window (else by the cumulative counts)?
    fn windowed(self) -> bool {
        matches!(self, SortBy::Own | SortBy::Total)
    }
}

/// Which tables are on screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Functions,
    Opcodes,
}

/// Samples in the current window (`now`) and since the start or last reset (`all`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub now_own: u64,
    pub now_total: u64,
    pub all_own: u64,
    pub all_total: u64,
    /// Of `now_own`: samples in native code the instruction called (opcodes, hotspots).
    pub now_native: u64,
}

/// A function: (file, qualified name, first line).
pub type FnKey = (String, String, i32);
/// An opcode as executed and its base: (opcode, base).
pub type OpKey = (String, String);
/// An instruction: (file, function, line, offset, opcode).
pub type SpotKey = (String, String, i32, u32, String);

/// The counters the screen shows.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub functions: HashMap<FnKey, Tally>,
    pub opcodes: HashMap<OpKey, Tally>,
    pub spots: HashMap<SpotKey, Tally>,
    /// Thread stacks recorded since the start (or the last reset).
    pub samples: u64,
    /// Thread stacks recorded in the last window.
    pub window_samples: u64,
    pub ticks: u64,
    pub late: u64,
    pub errors: BTreeMap<String, u64>,
    /// Ticks per second achieved in the last window.
    pub achieved_hz: f64,
    /// Threads seen in the last window.
    pub threads: usize,
    /// Seconds of sampling folded in (pauses excluded).
    pub elapsed: f64,
    /// The sampler saw where threads were executing (`meta.ip_seen`): the opcode tables
    /// show the share of native code an instruction called.
    pub native_seen: bool,
    /// Windows folded in since the start (or the last reset).
    pub windows: u64,
    /// Thread stacks left out in the last window (idle, or not holding the GIL, as the
    /// session's thread filter asks).
    pub window_dropped: u64,
}

impl Stats {
    /// Fold a finished window (`ticks` taken and `late` skipped over `secs` seconds) into
    /// the counters: it becomes the current window, and is added to the cumulative counts.
    pub fn fold(&mut self, data: &ProfileData, ticks: u64, late: u64, secs: f64) {
        for t in self.functions.values_mut() {
            t.now_own = 0;
            t.now_total = 0;
        }
        for t in self.opcodes.values_mut() {
            t.now_own = 0;
            t.now_native = 0;
        }
        for t in self.spots.values_mut() {
            t.now_own = 0;
            t.now_native = 0;
        }
        self.native_seen |= data.meta.ip_seen > 0;
        // Frame id → function index (frames differ by line and opcode; functions don't).
        let mut index: HashMap<(&str, &str, i32), usize> = HashMap::new();
        let mut fn_of: Vec<usize> = Vec::with_capacity(data.frames.len());
        // --native: a native function is keyed by its object (its file, if any, is shown
        // by line, which top does not).
        for f in &data.frames {
            let n = index.len();
            let file = match &f.object {
                Some(o) => o.as_str(),
                None => f.file.as_str(),
            };
            let i = *index
                .entry((file, f.function.as_str(), f.first_line))
                .or_insert(n);
            fn_of.push(i);
        }
        let mut own = vec![0u64; index.len()];
        let mut total = vec![0u64; index.len()];
        // (samples, of them in native code the instruction called)
        type Spot<'a> = (&'a str, &'a str, i32, u32, &'a str);
        let mut ops: HashMap<(&str, &str), (u64, u64)> = HashMap::new();
        let mut spots: HashMap<Spot, (u64, u64)> = HashMap::new();
        let mut seen: Vec<usize> = Vec::new();
        let mut samples = 0u64;
        for s in &data.stacks {
            samples += s.count;
            if let Some(&leaf) = s.frames.last() {
                if let Some(&i) = fn_of.get(leaf as usize) {
                    own[i] += s.count;
                }
                if let Some(f) = data.frames.get(leaf as usize) {
                    if let (Some(op), Some(base)) = (&f.opcode, &f.base_opcode) {
                        let native = if s.native.is_some() { s.count } else { 0 };
                        let e = ops.entry((op, base)).or_default();
                        e.0 += s.count;
                        e.1 += native;
                        if let Some(off) = f.offset {
                            let e = spots
                                .entry((&f.file, &f.function, f.line, off, op))
                                .or_default();
                            e.0 += s.count;
                            e.1 += native;
                        }
                    }
                }
            }
            seen.clear();
            seen.extend(s.frames.iter().filter_map(|&id| fn_of.get(id as usize)));
            seen.sort_unstable();
            seen.dedup();
            for &i in &seen {
                total[i] += s.count;
            }
        }
        for ((file, function, first_line), i) in index {
            let t = self
                .functions
                .entry((file.to_string(), function.to_string(), first_line))
                .or_default();
            t.now_own = own[i];
            t.now_total = total[i];
            t.all_own += own[i];
            t.all_total += total[i];
        }
        for ((op, base), (n, native)) in ops {
            let t = self
                .opcodes
                .entry((op.to_string(), base.to_string()))
                .or_default();
            t.now_own = n;
            t.all_own += n;
            t.now_native = native;
        }
        for ((file, function, line, off, op), (n, native)) in spots {
            let t = self
                .spots
                .entry((
                    file.to_string(),
                    function.to_string(),
                    line,
                    off,
                    op.to_string(),
                ))
                .or_default();
            t.now_own = n;
            t.all_own += n;
            t.now_native = native;
        }
        self.samples += samples;
        self.window_samples = samples;
        self.ticks += ticks;
        self.late += late;
        for (reason, n) in &data.meta.errors {
            *self.errors.entry(reason.clone()).or_insert(0) += n;
        }
        self.achieved_hz = if secs > 0.0 { ticks as f64 / secs } else { 0.0 };
        self.threads = data.threads.len();
        self.elapsed += secs;
        self.windows += 1;
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Functions, sorted by `sort` (descending), ties by the other counts, then by name.
    pub fn function_rows(&self, sort: SortBy) -> Vec<(&FnKey, &Tally)> {
        let mut rows: Vec<_> = self.functions.iter().collect();
        rows.sort_by(|a, b| {
            let (ka, kb) = (sort_key(a.1, sort), sort_key(b.1, sort));
            kb.cmp(&ka)
                .then_with(|| (&a.0 .1, &a.0 .0, a.0 .2).cmp(&(&b.0 .1, &b.0 .0, b.0 .2)))
        });
        rows
    }

    /// Opcodes by self samples: the window's for a windowed sort, else cumulative.
    pub fn opcode_rows(&self, sort: SortBy) -> Vec<(&OpKey, &Tally)> {
        let mut rows: Vec<_> = self.opcodes.iter().collect();
        rows.sort_by(|a, b| {
            own_key(b.1, sort)
                .cmp(&own_key(a.1, sort))
                .then(a.0.cmp(b.0))
        });
        rows
    }

    /// Instructions by self samples, as `opcode_rows`.
    pub fn spot_rows(&self, sort: SortBy) -> Vec<(&SpotKey, &Tally)> {
        let mut rows: Vec<_> = self.spots.iter().collect();
        rows.sort_by(|a, b| {
            own_key(b.1, sort)
                .cmp(&own_key(a.1, sort))
                .then(a.0.cmp(b.0))
        });
        rows
    }
}

fn sort_key(t: &Tally, sort: SortBy) -> (u64, u64, u64, u64) {
    match sort {
        SortBy::Own => (t.now_own, t.now_total, t.all_own, t.all_total),
        SortBy::Total => (t.now_total, t.now_own, t.all_total, t.all_own),
        SortBy::OwnTime => (t.all_own, t.all_total, t.now_own, t.now_total),
        SortBy::TotalTime => (t.all_total, t.all_own, t.now_total, t.now_own),
    }
}

fn own_key(t: &Tally, sort: SortBy) -> (u64, u64) {
    if sort.windowed() {
        (t.now_own, t.all_own)
    } else {
        (t.all_own, t.now_own)
    }
}

/// Everything the screen shows; no terminal or target in it, so it renders anywhere.
pub struct App {
    pub target_label: String,
    pub python_version: String,
    pub mode: &'static str,
    pub rate_hz: f64,
    pub opcodes: bool,
    /// The target's working directory (file names under it are shown relative to it).
    pub cwd: String,
    pub stats: Stats,
    pub sort: SortBy,
    pub view: View,
    pub paused: bool,
    /// When the target was seen gone.
    pub exited: Option<Instant>,
    /// A one-off message for the status line (cleared by the next key).
    pub message: Option<String>,
}

/// What a key asks of the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    None,
    Redraw,
    Reset,
    TogglePause,
    Quit,
}

impl App {
    pub fn new(opts: &TopOptions, python_version: String, cwd: String) -> App {
        App {
            target_label: opts.target_label.clone(),
            python_version,
            mode: opts.sampler.name(),
            rate_hz: opts.rate_hz,
            opcodes: opts.opcodes,
            cwd,
            stats: Stats::default(),
            sort: SortBy::Own,
            view: View::Functions,
            paused: false,
            exited: None,
            message: None,
        }
    }

    /// Is the clock running (not paused, target alive)?
    pub fn sampling(&self) -> bool {
        !self.paused && self.exited.is_none()
    }

    /// Apply a key to the view; what needs the loop is returned.
    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        self.message = None;
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('c') | KeyCode::Char('C') if ctrl => Action::Quit,
            KeyCode::Char('q') | KeyCode::Char('Q') => Action::Quit,
            KeyCode::Char(c @ '1'..='4') => {
                self.sort = SortBy::ALL[(c as u8 - b'1') as usize];
                Action::Redraw
            }
            KeyCode::Right | KeyCode::Char('s') | KeyCode::Tab => {
                self.sort = self.sort.next();
                Action::Redraw
            }
            KeyCode::Left | KeyCode::Char('S') | KeyCode::BackTab => {
                self.sort = self.sort.prev();
                Action::Redraw
            }
            KeyCode::Char('r') | KeyCode::Char('R') => Action::Reset,
            KeyCode::Char('p') | KeyCode::Char('P') | KeyCode::Char(' ') => {
                if self.exited.is_some() {
                    Action::Redraw
                } else {
                    Action::TogglePause
                }
            }
            KeyCode::Char('o') | KeyCode::Char('O') => {
                if self.opcodes {
                    self.view = match self.view {
                        View::Functions => View::Opcodes,
                        View::Opcodes => View::Functions,
                    };
                } else {
                    self.message =
                        Some("no opcodes captured: start pyprof top with --opcodes".into());
                }
                Action::Redraw
            }
            _ => Action::Redraw,
        }
    }

    fn pct(&self, n: u64) -> String {
        let total = self.stats.window_samples;
        let p = if total == 0 {
            0.0
        } else {
            100.0 * n as f64 / total as f64
        };
        format!("{p:.2}%")
    }

    fn time(&self, n: u64) -> String {
        let s = n as f64 / self.rate_hz;
        if s < 100.0 {
            format!("{s:.2}s")
        } else if s < 10_000.0 {
            format!("{s:.1}s")
        } else {
            format!("{s:.0}s")
        }
    }

    /// "function (file:line)" in at most `width` characters: the file is cut at its
    /// start first, so the name and the line number stay readable.
    fn place(&self, function: &str, file: &str, line: i32, width: usize) -> String {
        if file.is_empty() && line == 0 && function.starts_with("<task ") {
            // An asyncio task (--async-aware): no code of its own.
            return fit_middle(&format!("{function} (asyncio task)"), width);
        }
        if line == 0 && !file.is_empty() && !file.contains('/') && !file.ends_with(".py") {
            // A native function (--native): in its object.
            return fit_middle(&format!("{function} ({file})"), width);
        }
        let file = short_filename(file, &self.cwd);
        let full = format!("{function} ({file}:{line})");
        if full.chars().count() <= width {
            return full;
        }
        let fixed = function.chars().count() + format!(" (…:{line})").chars().count();
        if fixed < width {
            let keep = width - fixed;
            let n = file.chars().count();
            let tail: String = file.chars().skip(n.saturating_sub(keep)).collect();
            return format!("{function} (…{tail}:{line})");
        }
        // No room for the file: the name (and line) first.
        let with_line = format!("{function}:{line}");
        if with_line.chars().count() <= width {
            return with_line;
        }
        fit(function, width)
    }

    /// Draw the whole screen.
    pub fn draw(&self, f: &mut Frame, now: Instant) {
        let [title, counters, status, _gap, body, footer] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Min(0),
            Constraint::Length(1),
        ])
        .areas(f.area());
        let width = f.area().width as usize;
        let bold = Style::new().add_modifier(Modifier::BOLD);
        // The target label gives way first (cut in its middle: the pid at its start and
        // the script at its end stay), so the Python version stays on screen.
        let tail = format!(
            " · Python {} · {} · {} Hz",
            self.python_version, self.mode, self.rate_hz
        );
        let room = width.saturating_sub("pyprof top · ".chars().count() + tail.chars().count());
        let head = format!(
            "pyprof top · {}{tail}",
            fit_middle(&self.target_label, room.max(12))
        );
        f.render_widget(Paragraph::new(Span::styled(fit(&head, width), bold)), title);

        let s = &self.stats;
        let line = format!(
            "Samples: {}  Errors: {}  Rate: {:.1}/{} Hz  Threads: {}  Late: {}  Sampled: {:.0}s",
            s.samples,
            s.error_count(),
            s.achieved_hz,
            self.rate_hz,
            s.threads,
            s.late,
            s.elapsed
        );
        f.render_widget(Paragraph::new(fit(&line, width)), counters);

        let (text, style) = self.status_line(now);
        f.render_widget(
            Paragraph::new(Span::styled(fit(&text, width), style)),
            status,
        );

        match self.view {
            View::Functions => self.draw_functions(f, body),
            View::Opcodes => self.draw_opcodes(f, body),
        }

        let mut keys = String::from(" 1-4/←→/s sort  r reset  p pause");
        if self.opcodes {
            keys.push_str(match self.view {
                View::Functions => "  o opcodes",
                View::Opcodes => "  o functions",
            });
        }
        keys.push_str("  q quit");
        f.render_widget(
            Paragraph::new(Span::styled(
                format!("{:<width$}", fit(&keys, width)),
                Style::new().add_modifier(Modifier::REVERSED),
            )),
            footer,
        );
    }

    fn status_line(&self, now: Instant) -> (String, Style) {
        if let Some(at) = self.exited {
            let left = EXIT_LINGER.saturating_sub(now.saturating_duration_since(at));
            return (
                format!(
                    "The target process exited. Closing in {} s (q to quit now).",
                    left.as_secs_f64().ceil() as u64
                ),
                fg(Color::Red).add_modifier(Modifier::BOLD),
            );
        }
        if self.paused {
            return (
                "PAUSED: not sampling (p to resume)".into(),
                Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD),
            );
        }
        if let Some(m) = &self.message {
            return (m.clone(), fg(Color::Yellow));
        }
        if !self.stats.errors.is_empty() {
            let mut why: Vec<_> = self.stats.errors.iter().collect();
            why.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let why: Vec<String> = why.iter().map(|(k, v)| format!("{v} {k}")).collect();
            return (format!("Errors: {}", why.join(", ")), Style::new());
        }
        if self.stats.windows == 0 {
            return ("Collecting samples…".into(), Style::new());
        }
        if self.stats.window_samples == 0 && self.stats.window_dropped > 0 {
            return (
                "No thread ran Python code in the last second (idle threads are left out)".into(),
                Style::new(),
            );
        }
        (String::new(), Style::new())
    }

    fn header(&self, names: &[(&str, Option<SortBy>)]) -> Row<'static> {
        let cells: Vec<Cell> = names
            .iter()
            .map(|(name, col)| {
                if *col == Some(self.sort) {
                    Cell::from(Line::from(format!("{name}▼")).right_aligned())
                        .style(Style::new().add_modifier(Modifier::REVERSED))
                } else if col.is_some() {
                    Cell::from(Line::from(name.to_string()).right_aligned())
                } else {
                    Cell::from(name.to_string())
                }
            })
            .collect();
        Row::new(cells).style(Style::new().add_modifier(Modifier::BOLD))
    }

    fn draw_functions(&self, f: &mut Frame, area: Rect) {
        let widths = [
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(10),
            Constraint::Fill(1),
        ];
        let label_w = (area.width as usize)
            .saturating_sub(8 + 8 + 9 + 10 + 4)
            .max(10);
        let rows: Vec<Row> = self
            .stats
            .function_rows(self.sort)
            .into_iter()
            .take(area.height as usize)
            .map(|((file, function, first_line), t)| {
                Row::new(vec![
                    right(self.pct(t.now_own)),
                    right(self.pct(t.now_total)),
                    right(self.time(t.all_own)),
                    right(self.time(t.all_total)),
                    Cell::from(self.place(function, file, *first_line, label_w)),
                ])
            })
            .collect();
        let header = self.header(&[
            ("%Own", Some(SortBy::Own)),
            ("%Total", Some(SortBy::Total)),
            ("OwnTime", Some(SortBy::OwnTime)),
            ("TotalTime", Some(SortBy::TotalTime)),
            ("Function (file:line)", None),
        ]);
        f.render_widget(
            Table::new(rows, widths).header(header).column_spacing(1),
            area,
        );
    }

    fn draw_opcodes(&self, f: &mut Frame, area: Rect) {
        let [t1, ops_area, _gap, t2, spots_area] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Percentage(40),
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Fill(1),
        ])
        .areas(area);
        let bold = Style::new().add_modifier(Modifier::BOLD);
        // The %Own column sorts by the window, OwnTime by the cumulative counts.
        let (own_col, time_col) = if self.sort.windowed() {
            (Some(self.sort), None)
        } else {
            (None, Some(self.sort))
        };
        f.render_widget(
            Paragraph::new(Span::styled("Hot opcodes (self samples)", bold)),
            t1,
        );
        // Column widths from what is shown; narrow terminals drop the base column, then
        // the cumulative time, before any name is cut.
        let width = area.width as usize;
        let op_rows = self.stats.opcode_rows(self.sort);
        let op_rows: Vec<_> = op_rows
            .into_iter()
            .take(ops_area.height.saturating_sub(1) as usize)
            .collect();
        let spot_rows: Vec<_> = self
            .stats
            .spot_rows(self.sort)
            .into_iter()
            .take(spots_area.height.saturating_sub(1) as usize)
            .collect();
        let op_w = op_rows
            .iter()
            .map(|((op, _), _)| op.chars().count())
            .chain(spot_rows.iter().map(|(k, _)| k.4.chars().count()))
            .max()
            .unwrap_or(6)
            .max(6);
        let base_w = op_rows
            .iter()
            .filter(|((op, base), _)| op != base)
            .map(|((_, base), _)| base.chars().count())
            .max()
            .unwrap_or(0)
            .max(4);
        // With the thread's place seen: the share of each row in native code it called.
        let native = self.stats.native_seen;
        let nat = if native { 8 } else { 0 };
        let native_cell = |t: &Tally| {
            right(if t.now_native == 0 {
                String::new()
            } else {
                format!(
                    "{:.0}%",
                    100.0 * t.now_native as f64 / t.now_own.max(1) as f64
                )
            })
        };
        let with_time = width >= 8 + 1 + 9 + 1 + nat + op_w + 1 + 20;
        let with_base = width >= 8 + 1 + 9 + 1 + nat + op_w + 1 + base_w;
        let rows: Vec<Row> = op_rows
            .iter()
            .map(|((op, base), t)| {
                let mut cells = vec![right(self.pct(t.now_own))];
                if with_base || with_time {
                    cells.push(right(self.time(t.all_own)));
                }
                if native {
                    cells.push(native_cell(t));
                }
                cells.push(Cell::from(op.clone()));
                if with_base {
                    // Only where it says something: a specialized or instrumented form.
                    cells.push(Cell::from(if op == base {
                        String::new()
                    } else {
                        base.clone()
                    }));
                }
                Row::new(cells)
            })
            .collect();
        let mut nums = vec![("%Own", own_col)];
        let mut widths = vec![Constraint::Length(8)];
        if with_base || with_time {
            nums.push(("OwnTime", time_col));
            widths.push(Constraint::Length(9));
        }
        if native {
            nums.push(("Native", None));
            widths.push(Constraint::Length(7));
        }
        widths.push(Constraint::Length(op_w as u16));
        let mut texts = vec!["Opcode"];
        if with_base {
            texts.push("Base");
            widths.push(Constraint::Fill(1));
        }
        let header = self.opcode_header(&nums, &texts);
        f.render_widget(
            Table::new(rows, widths).header(header).column_spacing(1),
            ops_area,
        );

        f.render_widget(
            Paragraph::new(Span::styled(
                "Hotspots: function (file:line), instruction offset and opcode",
                bold,
            )),
            t2,
        );
        let fixed = |time: bool| 8 + 1 + if time { 9 + 1 } else { 0 } + nat + 7 + 1 + op_w + 1;
        let longest_name = spot_rows
            .iter()
            .map(|(k, _)| k.1.chars().count())
            .max()
            .unwrap_or(10);
        let spot_time = width >= fixed(true) + longest_name.min(30);
        let label_w = width.saturating_sub(fixed(spot_time)).max(6);
        let rows: Vec<Row> = spot_rows
            .iter()
            .map(|((file, function, line, off, op), t)| {
                let mut cells = vec![right(self.pct(t.now_own))];
                if spot_time {
                    cells.push(right(self.time(t.all_own)));
                }
                if native {
                    cells.push(native_cell(t));
                }
                cells.push(Cell::from(self.place(function, file, *line, label_w)));
                cells.push(right(off.to_string()));
                cells.push(Cell::from(op.clone()));
                Row::new(cells)
            })
            .collect();
        let mut nums = vec![("%Own", own_col)];
        let mut widths = vec![Constraint::Length(8)];
        if spot_time {
            nums.push(("OwnTime", time_col));
            widths.push(Constraint::Length(9));
        }
        if native {
            nums.push(("Native", None));
            widths.push(Constraint::Length(7));
        }
        widths.extend([
            Constraint::Fill(1),
            Constraint::Length(7),
            Constraint::Length(op_w as u16),
        ]);
        let header = self.opcode_header(&nums, &["Function (file:line)", "Offset", "Opcode"]);
        f.render_widget(
            Table::new(rows, widths).header(header).column_spacing(1),
            spots_area,
        );
    }

    /// Header of an opcode table: two numeric columns (the one sorted by is marked),
    /// then text columns (a numeric-looking "Offset" is right-aligned).
    fn opcode_header(&self, nums: &[(&str, Option<SortBy>)], texts: &[&str]) -> Row<'static> {
        let mut cells: Vec<Cell> = nums
            .iter()
            .map(|(name, col)| {
                if col.is_some() {
                    Cell::from(Line::from(format!("{name}▼")).right_aligned())
                        .style(Style::new().add_modifier(Modifier::REVERSED))
                } else {
                    Cell::from(Line::from(name.to_string()).right_aligned())
                }
            })
            .collect();
        for t in texts {
            if *t == "Offset" {
                cells.push(Cell::from(Line::from(t.to_string()).right_aligned()));
            } else {
                cells.push(Cell::from(t.to_string()));
            }
        }
        Row::new(cells).style(Style::new().add_modifier(Modifier::BOLD))
    }
}

/// Cut `s` to `n` characters in its middle, marking the cut with `…`.
fn fit_middle(s: &str, n: usize) -> String {
    let len = s.chars().count();
    if len <= n {
        return s.to_string();
    }
    let head = n.saturating_sub(1) / 3;
    let tail = n.saturating_sub(1) - head;
    let mut out: String = s.chars().take(head).collect();
    out.push('…');
    out.extend(s.chars().skip(len - tail));
    out
}

/// A foreground colour, unless `NO_COLOR` asks for none (bold and reverse stay).
fn fg(c: Color) -> Style {
    if crate::output::no_color_unset() {
        Style::new().fg(c)
    } else {
        Style::new()
    }
}

fn right(s: String) -> Cell<'static> {
    Cell::from(Line::from(s).right_aligned())
}

/// Set by SIGINT, SIGTERM or SIGHUP (the handler is installed once per process).
static STOP: AtomicBool = AtomicBool::new(false);
/// A view is running (the handler's watchdog only acts then).
static RUNNING: AtomicBool = AtomicBool::new(false);
static HANDLER: OnceLock<bool> = OnceLock::new();
/// How long the loop has to notice a signal before the handler ends the process.
const SIGNAL_GRACE: Duration = Duration::from_secs(2);

/// The stop flag, cleared, with the handler installed. Should the loop not notice the
/// flag within `SIGNAL_GRACE` (stuck somewhere), the handler restores the terminal and
/// ends the process, so a signal always ends `pyprof top`.
fn stop_flag() -> &'static AtomicBool {
    STOP.store(false, Ordering::SeqCst);
    // If the program already has a handler, Ctrl-C still reaches us as a key (raw mode).
    HANDLER.get_or_init(|| {
        ctrlc::set_handler(|| {
            STOP.store(true, Ordering::SeqCst);
            if RUNNING.load(Ordering::SeqCst) {
                std::thread::sleep(SIGNAL_GRACE);
                if RUNNING.load(Ordering::SeqCst) {
                    restore_terminal();
                    std::process::exit(1);
                }
            }
        })
        .is_ok()
    });
    &STOP
}

/// What waiting on the terminal's input gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ready {
    /// Bytes to read.
    Input,
    Timeout,
    /// A signal came (SIGWINCH: the size may have changed).
    Interrupted,
    /// The terminal hung up (closed window, killed tmux): nobody is watching.
    Gone,
}

/// The terminal's input, watched with poll(2). crossterm's reader spins forever on a
/// terminal that hung up, so it is only asked to read once poll(2) says there are bytes
/// and no hangup.
struct Input {
    fd: std::os::fd::RawFd,
    _tty: Option<std::fs::File>,
}

impl Input {
    /// The same terminal crossterm reads: standard input when it is one, else /dev/tty.
    fn open() -> Result<Input> {
        use std::os::fd::AsRawFd;
        if std::io::stdin().is_terminal() {
            return Ok(Input {
                fd: std::io::stdin().as_raw_fd(),
                _tty: None,
            });
        }
        let tty = std::fs::File::open("/dev/tty").context("opening the terminal (/dev/tty)")?;
        Ok(Input {
            fd: tty.as_raw_fd(),
            _tty: Some(tty),
        })
    }

    /// Wait up to `timeout` (whole milliseconds, rounded down) for input.
    fn wait(&self, timeout: Duration) -> Result<Ready> {
        let mut fds = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd, for the duration of the call.
        let n = unsafe { libc::poll(&mut fds, 1, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(Ready::Interrupted);
            }
            return Err(e).context("waiting for the keyboard");
        }
        if n == 0 {
            return Ok(Ready::Timeout);
        }
        if fds.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
            return Ok(Ready::Gone);
        }
        Ok(Ready::Input)
    }
}

type PanicHook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;

/// The terminal is in raw mode on the alternate screen (or on its way there).
static SCREEN_ON: AtomicBool = AtomicBool::new(false);

/// Leave raw mode and the alternate screen, once: leaving twice would move the cursor
/// back over what was printed in between (a panic message).
fn restore_terminal() {
    if !SCREEN_ON.swap(false, Ordering::SeqCst) {
        return;
    }
    let _ = terminal::disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        terminal::LeaveAlternateScreen,
        cursor::Show
    );
}

/// The terminal in raw mode on the alternate screen; restored on drop, and by a panic
/// hook (before the program's own hook prints, so its message stays readable).
struct Screen {
    /// None once abandoned.
    terminal: Option<Terminal<CrosstermBackend<Stdout>>>,
    prev_hook: Option<Arc<PanicHook>>,
}

impl Screen {
    fn enter() -> Result<Screen> {
        let prev: Arc<PanicHook> = Arc::new(std::panic::take_hook());
        {
            let prev = prev.clone();
            std::panic::set_hook(Box::new(move |info| {
                restore_terminal();
                prev(info)
            }));
        }
        let terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))
            .context("opening the terminal")?;
        let screen = Screen {
            terminal: Some(terminal),
            prev_hook: Some(prev),
        };
        SCREEN_ON.store(true, Ordering::SeqCst);
        terminal::enable_raw_mode().context("switching the terminal to raw mode")?;
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )
        .context("switching to the alternate screen")?;
        Ok(screen)
    }

    /// The terminal hung up: let go of it without the writes ratatui makes when it is
    /// dropped (which fail there, and report it on standard error, which fails too).
    fn abandon(&mut self) {
        if let Some(t) = self.terminal.take() {
            std::mem::forget(t);
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore_terminal();
        // The panic hook cannot be changed while unwinding; the process is ending then.
        if let Some(prev) = self.prev_hook.take() {
            if !std::thread::panicking() {
                drop(std::panic::take_hook());
                match Arc::try_unwrap(prev) {
                    Ok(hook) => std::panic::set_hook(hook),
                    Err(shared) => std::panic::set_hook(Box::new(move |info| shared(info))),
                }
            }
        }
    }
}

/// How the view ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Quit,
    TargetExited,
    /// The terminal hung up: nobody to show anything to.
    TerminalGone,
}

/// Run the live view on the calling thread until `q`, Ctrl-C (SIGINT/SIGTERM/SIGHUP) or
/// a few seconds after the target exits. Standard output must be a terminal.
pub fn run(mut sampler: Sampler, opts: TopOptions) -> Result<()> {
    if !(opts.rate_hz.is_finite() && opts.rate_hz > 0.0) {
        bail!("the rate must be more than 0 Hz, not {}", opts.rate_hz);
    }
    if !std::io::stdout().is_terminal() {
        bail!("pyprof top needs a terminal: standard output is not one (use pyprof record to write a profile)");
    }
    let stop = stop_flag();
    let pid = sampler.targets.sessions[0].pid;
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let version = sampler.targets.sessions[0].runtime.version.to_string();
    let mut app = App::new(&opts, version, cwd);
    let input = Input::open()?;
    let outcome = {
        let _running = Running::start();
        let mut screen = Screen::enter()?;
        let outcome = match screen.terminal.as_mut() {
            Some(terminal) => match terminal.clear() {
                Ok(()) => event_loop(&mut sampler, &opts, &mut app, terminal, &input, stop),
                Err(e) => Err(e).context("clearing the terminal"),
            },
            None => Ok(Outcome::TerminalGone),
        };
        if matches!(outcome, Ok(Outcome::TerminalGone)) {
            screen.abandon();
        }
        outcome
    };
    if outcome? == Outcome::TargetExited {
        use std::io::Write;
        // The terminal may be gone by now: never fail (or panic) for a message.
        let _ = writeln!(
            std::io::stderr(),
            "pyprof top: {} exited; {} samples, {} errors",
            opts.target_label,
            app.stats.samples,
            app.stats.error_count()
        );
    }
    Ok(())
}

/// Marks a view running (for the signal watchdog) until dropped.
struct Running;

impl Running {
    fn start() -> Running {
        RUNNING.store(true, Ordering::SeqCst);
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.store(false, Ordering::SeqCst);
    }
}

/// The samples of the current window.
struct Window {
    profile: Profile,
    start: Instant,
    ticks: u64,
    late: u64,
    /// The session's count of left-out thread stacks when the window began.
    dropped_before: u64,
}

impl Window {
    fn new(opts: &TopOptions, session: &Session) -> Window {
        Window {
            profile: Profile::new(Meta {
                rate_hz: opts.rate_hz,
                ..Default::default()
            }),
            start: Instant::now(),
            ticks: 0,
            late: 0,
            dropped_before: dropped(session),
        }
    }

    /// Fold the window into `stats` and begin the next one.
    fn roll(&mut self, stats: &mut Stats, opts: &TopOptions, session: &Session) {
        let secs = self.start.elapsed().as_secs_f64();
        stats.fold(&self.profile.to_data(), self.ticks, self.late, secs);
        stats.window_dropped = dropped(session).saturating_sub(self.dropped_before);
        *self = Window::new(opts, session);
    }
}

fn dropped(session: &Session) -> u64 {
    session.dropped_idle + session.dropped_gil
}

/// The clock, the window and the screen: sample at each deadline, wait for keys between.
fn event_loop(
    sampler: &mut Sampler,
    opts: &TopOptions,
    app: &mut App,
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    input: &Input,
    stop: &AtomicBool,
) -> Result<Outcome> {
    let pid = sampler.targets.sessions[0].pid;
    let period = Duration::from_secs_f64(1.0 / opts.rate_hz);
    let clock = Instant::now();
    let mut ticker = crate::sampler::Ticker::new(clock, period, true);
    let mut k: u64 = 0;
    let mut window = Window::new(opts, &sampler.targets.sessions[0]);
    let mut next_refresh = clock + REFRESH;
    let mut dirty = true;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(Outcome::Quit);
        }
        let now = Instant::now();
        if let Some(at) = app.exited {
            if now >= at + EXIT_LINGER {
                return Ok(Outcome::TargetExited);
            }
        }
        if now >= next_refresh {
            next_refresh += REFRESH;
            if next_refresh <= now {
                next_refresh = now + REFRESH;
            }
            if app.sampling() {
                window.roll(&mut app.stats, opts, &sampler.targets.sessions[0]);
            } else if app.exited.is_none() && !is_alive(pid) {
                app.exited = Some(now);
            }
            dirty = true;
        }
        if dirty {
            if let Err(e) = terminal.draw(|f| app.draw(f, Instant::now())) {
                if input.wait(Duration::ZERO)? == Ready::Gone {
                    return Ok(Outcome::TerminalGone);
                }
                return Err(e).context("drawing the screen");
            }
            dirty = false;
        }

        // Wait for a key until the next tick (or the next refresh when not sampling).
        let mut wake = next_refresh;
        if app.sampling() {
            wake = wake.min(ticker.deadline());
        }
        if let Some(at) = app.exited {
            wake = wake.min(at + EXIT_LINGER);
        }
        // Wait for keys in whole milliseconds (poll(2) counts no finer), then sleep the
        // rest, so that ticks at high rates are not taken late.
        let timeout = wake.saturating_duration_since(Instant::now());
        let ready = input.wait(timeout)?;
        if ready == Ready::Gone {
            return Ok(Outcome::TerminalGone);
        }
        if ready == Ready::Interrupted {
            dirty = true; // maybe a resize: the next draw fits the new size
            continue;
        }
        if ready == Ready::Input {
            while event::poll(Duration::ZERO).context("reading the keyboard")? {
                let action = match event::read().context("reading the keyboard")? {
                    Event::Key(key) => app.on_key(key),
                    Event::Resize(..) => Action::Redraw,
                    _ => Action::None,
                };
                match action {
                    Action::None => {}
                    Action::Redraw => dirty = true,
                    Action::Quit => return Ok(Outcome::Quit),
                    Action::Reset => {
                        let now = Instant::now();
                        app.stats = Stats::default();
                        window = Window::new(opts, &sampler.targets.sessions[0]);
                        next_refresh = now + REFRESH;
                        dirty = true;
                    }
                    Action::TogglePause => {
                        app.paused = !app.paused;
                        if !app.paused {
                            // Resume on a fresh clock and window: the pause is neither late
                            // ticks nor part of the achieved rate.
                            let now = Instant::now();
                            ticker.restart(now);
                            k = 0;
                            window = Window::new(opts, &sampler.targets.sessions[0]);
                            next_refresh = now + REFRESH;
                        }
                        dirty = true;
                    }
                }
            }
            continue;
        }
        let left = wake.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(2) {
            std::thread::sleep(left);
        }
        if !app.sampling() {
            continue;
        }
        let now = Instant::now();
        if now < ticker.deadline() {
            continue; // woke for the refresh
        }
        let behind = ticker.behind(now);
        if behind >= 1.0 {
            // Skip the ticks we can no longer take on time, and count them.
            let skip = behind.floor() as u64;
            window.late += skip;
            ticker.advance(skip);
            continue;
        }
        ticker.advance(1);
        k += 1;
        window.ticks += 1;
        let errors: Vec<_> = sampler
            .tick(&mut window.profile)
            .into_iter()
            .filter(|(i, _)| *i == 0)
            .flat_map(|(_, e)| e)
            .collect();
        if (!errors.is_empty() || k.is_multiple_of(16)) && !is_alive(pid) {
            // Reads failed because the target is gone: not the profiler's failure.
            window.roll(&mut app.stats, opts, &sampler.targets.sessions[0]);
            app.exited = Some(Instant::now());
            dirty = true;
            continue;
        }
        for e in errors {
            window.profile.add_error(e.to_string());
        }
    }
}

#[cfg(test)]
#[path = "top_tests.rs"]
mod tests;
