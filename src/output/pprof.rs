//! pprof: a gzipped `perftools.profiles.Profile` protobuf (`profile.proto` of
//! github.com/google/pprof), the format `go tool pprof`, Pyroscope/Grafana, Parca and
//! speedscope read.
//!
//! The protobuf is encoded by hand (varints and length-delimited fields; the few
//! message types are small) and compressed with gzip, as the format requires on disk.
//!
//! - `sample_type` is `[("samples", "count"), ("cpu", "nanoseconds")]`, or
//!   `("wall", "nanoseconds")` for a profile recorded with `--idle` (waiting threads
//!   sampled too: wall time): a sample's values are its count and count × period;
//!   `period_type` is the same and `period` is 1e9 / rate (the rate is taken as 100 Hz
//!   when unknown); `default_sample_type` is "cpu" or "wall".
//! - One `Function` per distinct (name, file, first line): `name` is the function's
//!   (qualified) name, `system_name` the same with its file and first line
//!   (`<module> (/srv/app/main.py:1)`): a profile whose names and system names differ is
//!   taken as demangled, so `go tool pprof` does not strip `<module>` as a C++ template
//!   argument list. File names are the interpreter's, in full (`-list` opens them).
//!   One `Location` per distinct frame (function and line; the first line with
//!   `function`, 0 with `nolineno`), all in one `Mapping` that says functions, file
//!   names and lines are already known, so no tool tries to symbolize; its file (the
//!   `File:` of pprof's header) is the main script, else the interpreter binary.
//! - Each distinct stack is one `Sample`, its `location_id`s leaf first as pprof wants,
//!   labelled `thread` = the thread's label. With `--opcodes` the executing instruction
//!   is an extra leaf location whose function is named `[OPNAME]`; stacks cut by
//!   `--max-depth` end (at the root) in a `[truncated]` location; with `threads` a root
//!   location per thread is added, as in the collapsed output.
//! - `time_nanos` comes from `meta.started_at` (an explicit UTC offset is honoured; the
//!   pyprof form without one is local time and is converted with this machine's time
//!   zone), `duration_nanos` from `meta.duration_secs`; `comment`s name the exporter,
//!   the target and the interpreter.

use super::RenderOptions;
use crate::profile::ProfileData;
use anyhow::Result;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;

/// A protobuf message being encoded.
#[derive(Default)]
struct Encoder {
    buf: Vec<u8>,
}

const VARINT: u64 = 0;
const LEN: u64 = 2;

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

impl Encoder {
    fn key(&mut self, field: u32, wire: u64) {
        put_varint(&mut self.buf, (u64::from(field) << 3) | wire);
    }

    /// A uint64/int64/bool field; zero is the default and is omitted (proto3).
    fn uint(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, VARINT);
            put_varint(&mut self.buf, v);
        }
    }

    /// An int64 field (negative values take ten bytes, as protobuf encodes them).
    fn int(&mut self, field: u32, v: i64) {
        self.uint(field, v as u64);
    }

    /// A length-delimited field, always written (an empty string must stay in place).
    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, LEN);
        put_varint(&mut self.buf, b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    /// A packed repeated varint field.
    fn packed(&mut self, field: u32, vs: impl IntoIterator<Item = u64>) {
        let mut tmp = Vec::new();
        for v in vs {
            put_varint(&mut tmp, v);
        }
        if !tmp.is_empty() {
            self.bytes(field, &tmp);
        }
    }

    fn message(&mut self, field: u32, f: impl FnOnce(&mut Encoder)) {
        let mut inner = Encoder::default();
        f(&mut inner);
        self.bytes(field, &inner.buf);
    }
}

/// The string table; index 0 is "".
struct Strings {
    list: Vec<String>,
    ids: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Strings {
        let mut s = Strings {
            list: Vec::new(),
            ids: HashMap::new(),
        };
        s.id("");
        s
    }

    fn id(&mut self, s: &str) -> i64 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.list.len() as i64;
        self.list.push(s.to_string());
        self.ids.insert(s.to_string(), id);
        id
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Function {
    name: i64,
    system_name: i64,
    filename: i64,
    start_line: i64,
}

/// Functions and locations, interned; ids start at 1 (0 means unset in pprof).
#[derive(Default)]
struct Tables {
    functions: Vec<Function>,
    function_ids: HashMap<Function, u64>,
    /// (function id, line)
    locations: Vec<(u64, i64)>,
    location_ids: HashMap<(u64, i64), u64>,
}

impl Tables {
    fn location(&mut self, function: Function, line: i64) -> u64 {
        let next = self.functions.len() as u64 + 1;
        let fid = *self.function_ids.entry(function).or_insert(next);
        if fid == next {
            self.functions.push(function);
        }
        let next = self.locations.len() as u64 + 1;
        let lid = *self.location_ids.entry((fid, line)).or_insert(next);
        if lid == next {
            self.locations.push((fid, line));
        }
        lid
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Nanoseconds since the epoch of a start time `YYYY-MM-DDTHH:MM:SS` (pyprof writes
/// `HH-MM-SS`, local time), with optional fraction and `Z`/`±HH:MM` offset. Without an
/// offset the time is local and is converted with this machine's time zone.
pub fn parse_start_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let num = |a: usize, b: usize| -> Option<i64> {
        let part = s.get(a..b)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b' ') {
        return None;
    }
    if !matches!(b[13], b':' | b'-') || b[16] != b[13] {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, min, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 {
        return None;
    }
    if sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac_ns: i64 = 0;
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let mut scale = 100_000_000;
        for c in r[..digits].bytes().take(9) {
            frac_ns += i64::from(c - b'0') * scale;
            scale /= 10;
        }
        rest = &r[digits..];
    }
    let offset_secs = match rest {
        "" => None,
        "Z" | "z" => Some(0),
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            let tz = rest.get(1..)?.replace(':', "");
            if tz.len() != 4 || !tz.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let h: i64 = tz.get(0..2)?.parse().ok()?;
            let m: i64 = tz.get(2..4)?.parse().ok()?;
            Some(sign * (h * 3600 + m * 60))
        }
    };
    let secs = match offset_secs {
        Some(off) => days_from_civil(year, month, day) * 86400 + hour * 3600 + min * 60 + sec - off,
        None => {
            // SAFETY: `tm` is a plain C struct, zeroed then filled; mktime only reads and
            // normalizes it.
            let mut tm: libc::tm = unsafe { std::mem::zeroed() };
            tm.tm_year = (year - 1900) as libc::c_int;
            tm.tm_mon = (month - 1) as libc::c_int;
            tm.tm_mday = day as libc::c_int;
            tm.tm_hour = hour as libc::c_int;
            tm.tm_min = min as libc::c_int;
            tm.tm_sec = sec as libc::c_int;
            tm.tm_isdst = -1;
            let t = unsafe { libc::mktime(&mut tm) };
            if t == -1 {
                return None;
            }
            #[allow(clippy::useless_conversion)] // time_t is narrower on some targets
            i64::from(t)
        }
    };
    secs.checked_mul(1_000_000_000)?.checked_add(frac_ns)
}

/// Nanoseconds per sample at `rate_hz` (100 Hz when the rate is unknown).
fn period_nanos(rate_hz: f64) -> i64 {
    let rate = if rate_hz.is_finite() && rate_hz > 0.0 {
        rate_hz
    } else {
        100.0
    };
    ((1e9 / rate).round() as i64).max(1)
}

/// The uncompressed `Profile` message.
pub fn encode<'a>(data: &'a ProfileData, opts: &RenderOptions) -> Vec<u8> {
    let mut strings = Strings::new();
    let mut tables = Tables::default();

    let samples_s = strings.id("samples");
    let count_s = strings.id("count");
    let cpu_s = strings.id(if data.meta.idle { "wall" } else { "cpu" });
    let nanos_s = strings.id("nanoseconds");
    let thread_s = strings.id("thread");

    let file_of = |file: &'a str| -> &'a str { file };
    let line_of = |line: i32, first_line: i32| -> i64 {
        if opts.nolineno {
            0
        } else if opts.function {
            i64::from(first_line)
        } else {
            i64::from(line)
        }
    };
    // Profile frame id -> location; opcode leaf locations are made when first used.
    let mut frame_locs: Vec<u64> = Vec::with_capacity(data.frames.len());
    for f in &data.frames {
        let function = Function {
            name: strings.id(&f.function),
            system_name: strings.id(&format!("{} ({}:{})", f.function, f.file, f.first_line)),
            filename: strings.id(file_of(&f.file)),
            start_line: i64::from(f.first_line),
        };
        frame_locs.push(tables.location(function, line_of(f.line, f.first_line)));
    }
    let truncated_s = strings.id("[truncated]");
    let truncated = Function {
        name: truncated_s,
        system_name: truncated_s,
        filename: 0,
        start_line: 0,
    };

    // (thread, location ids leaf first) -> count, merged where options made them equal.
    let mut merged: BTreeMap<(u32, Vec<u64>), u64> = BTreeMap::new();
    let mut thread_labels: BTreeMap<u32, (i64, Option<u64>)> = BTreeMap::new();
    for stack in &data.stacks {
        let (_, thread_loc) = *thread_labels.entry(stack.thread).or_insert_with(|| {
            let label = match data.threads.get(stack.thread as usize) {
                Some(t) => t.label(),
                None => format!("thread #{}", stack.thread),
            };
            let id = strings.id(&label);
            let loc = opts.threads.then(|| {
                tables.location(
                    Function {
                        name: id,
                        system_name: id,
                        filename: 0,
                        start_line: 0,
                    },
                    0,
                )
            });
            (id, loc)
        });
        let mut locs = Vec::with_capacity(stack.frames.len() + 3);
        if let Some(&leaf) = stack.frames.last() {
            if let Some(f) = data.frames.get(leaf as usize) {
                if let Some(op) = &f.opcode {
                    // (Leaf first: the native code the instruction was executing, then it.)
                    if let Some(&n) = stack.native.and_then(|n| frame_locs.get(n as usize)) {
                        locs.push(n);
                    }
                    let op_s = strings.id(&format!("[{op}]"));
                    let function = Function {
                        name: op_s,
                        system_name: op_s,
                        filename: strings.id(file_of(&f.file)),
                        start_line: 0,
                    };
                    locs.push(tables.location(function, line_of(f.line, f.first_line)));
                }
            }
        }
        locs.extend(
            stack
                .frames
                .iter()
                .rev()
                .filter_map(|&id| frame_locs.get(id as usize).copied()),
        );
        if stack.truncated {
            locs.push(tables.location(truncated, 0));
        }
        if let Some(loc) = thread_loc {
            locs.push(loc);
        }
        *merged.entry((stack.thread, locs)).or_insert(0) += stack.count;
    }

    let period = period_nanos(data.meta.rate_hz);
    let mut comments = vec![strings.id(&format!("pyprof {}", env!("CARGO_PKG_VERSION")))];
    if !data.meta.target.is_empty() {
        comments.push(strings.id(&data.meta.target));
    }
    if !data.meta.python_version.is_empty() {
        comments.push(strings.id(&format!("python {}", data.meta.python_version)));
    }
    let binary = match super::main_script(data) {
        Some(script) => script,
        None if data.meta.python_binary.is_empty() => "python",
        None => data.meta.python_binary.as_str(),
    };
    let binary_s = strings.id(binary);

    let mut e = Encoder::default();
    for (ty, unit) in [(samples_s, count_s), (cpu_s, nanos_s)] {
        e.message(1, |m| {
            m.int(1, ty);
            m.int(2, unit);
        });
    }
    for ((thread, locs), count) in &merged {
        let label = thread_labels.get(thread).map(|l| l.0).unwrap_or(0);
        e.message(2, |m| {
            m.packed(1, locs.iter().copied());
            let cpu = (*count as i64).saturating_mul(period);
            m.packed(2, [*count, cpu as u64]);
            m.message(3, |l| {
                l.int(1, thread_s);
                l.int(2, label);
            });
        });
    }
    e.message(3, |m| {
        m.uint(1, 1);
        m.int(5, binary_s);
        m.uint(7, 1);
        m.uint(8, 1);
        m.uint(9, 1);
    });
    for (i, (function_id, line)) in tables.locations.iter().enumerate() {
        e.message(4, |m| {
            m.uint(1, i as u64 + 1);
            m.uint(2, 1);
            m.message(4, |l| {
                l.uint(1, *function_id);
                l.int(2, *line);
            });
        });
    }
    for (i, f) in tables.functions.iter().enumerate() {
        e.message(5, |m| {
            m.uint(1, i as u64 + 1);
            m.int(2, f.name);
            m.int(3, f.system_name);
            m.int(4, f.filename);
            m.int(5, f.start_line);
        });
    }
    for s in &strings.list {
        e.bytes(6, s.as_bytes());
    }
    if let Some(t) = parse_start_time(&data.meta.started_at) {
        e.int(9, t);
    }
    let duration = data.meta.duration_secs * 1e9;
    if duration.is_finite() && duration > 0.0 {
        e.int(10, duration.round() as i64);
    }
    e.message(11, |m| {
        m.int(1, cpu_s);
        m.int(2, nanos_s);
    });
    e.int(12, period);
    e.packed(13, comments.iter().map(|&c| c as u64));
    e.int(14, cpu_s);
    e.buf
}

/// Write `data` as a gzipped pprof profile.
pub fn write(data: &ProfileData, opts: &RenderOptions, w: &mut dyn Write) -> Result<()> {
    let raw = encode(data, opts);
    let mut gz = GzEncoder::new(w, Compression::default());
    gz.write_all(&raw)?;
    gz.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        let mut b = Vec::new();
        for v in [0u64, 1, 127, 128, 300, u64::MAX] {
            put_varint(&mut b, v);
        }
        assert_eq!(
            b,
            [
                0x00, 0x01, 0x7f, 0x80, 0x01, 0xac, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff, 0x01
            ]
        );
    }

    #[test]
    fn start_times() {
        assert_eq!(
            parse_start_time("2024-01-02T03:04:05Z"),
            Some(1_704_164_645_000_000_000)
        );
        assert_eq!(
            parse_start_time("2024-01-02T05:04:05.5+02:00"),
            Some(1_704_164_645_500_000_000)
        );
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11017);
        assert!(parse_start_time("2024-01-02T03-04-05").is_some());
        assert_eq!(parse_start_time("yesterday"), None);
        assert_eq!(parse_start_time(""), None);
        assert_eq!(parse_start_time("2024-13-02T03:04:05Z"), None);
    }
}
