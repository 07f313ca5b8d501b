//! CPython line tables: byte offset within `co_code` → source line (and, for 3.11+, columns).
//!
//! This module owns the decoding of the three on-disk formats a code object uses to map
//! bytecode offsets to source positions. Everything here is a pure function over byte slices
//! copied out of the target process; nothing reads memory or knows about `PyCodeObject`
//! layouts. The caller picks the format from the version's
//! [`LineTableKind`](crate::runtime::layout::LineTableKind):
//!
//! | versions  | field          | format                        | decoder            |
//! |-----------|----------------|-------------------------------|--------------------|
//! | 2.7–3.9   | `co_lnotab`    | (addr delta, line delta) u8 pairs; line delta unsigned ≤3.5, `int8` from 3.6 | [`lnotab_line`] |
//! | 3.10      | `co_linetable` | PEP 626 (addr delta u8, line delta `int8`, −128 = no line) | [`pep626_line`] |
//! | 3.11+     | `co_linetable` | PEP 657 location table (`Objects/locations.md`) | [`pep657_location`] |
//!
//! Offsets are always **byte** offsets into `co_code` (`co_code_adaptive` on 3.11+). Note the
//! callers' units differ: ≤3.9 `f_lasti` is a byte offset, 3.10 `f_lasti` counts 2-byte code
//! units (multiply by 2), and 3.11+ derives the offset from the instruction pointer minus the
//! start of the code (a code-unit pointer difference: multiply by 2).
//!
//! Robustness: the tables come from another process's memory and may be torn, truncated or
//! garbage. No function here panics or loops beyond the table's length; malformed input gives
//! `None`. Decoding is lazy in one respect: the 3.11+ decoder only inspects entries up to the
//! one covering the queried offset, so garbage *after* it is not noticed; odd-length ≤3.10
//! tables are rejected outright.
//!
//! Lines are whatever the table says, including 0 (3.11+ module code puts its `RESUME` on
//! line 0) — a line is only "absent" when the table says so (−128 on 3.10, entry kind 15 on
//! 3.11+) or the offset is outside the table.

use crate::runtime::layout::LineTableKind;

/// A source location as CPython 3.11+ reports it through `co_positions()`.
///
/// Columns are 0-based UTF-8 **byte** offsets into the source line (not character
/// offsets); `end_column` is exclusive. `None` columns mean the interpreter has no column
/// information for the instruction (e.g. `-X no_debug_ranges`, or synthetic instructions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    pub line: i32,
    pub end_line: i32,
    pub column: Option<u32>,
    pub end_column: Option<u32>,
}

/// A byte range `[start, end)` of `co_code` and its line (`None`: no line).
pub type LineRange = (u32, u32, Option<i32>);

// ------------------------------------------------------------------------------------------ //
// ≤3.9: co_lnotab
// ------------------------------------------------------------------------------------------ //

/// Line of the instruction at `byte_offset`, from a ≤3.9 `co_lnotab`.
///
/// `co_lnotab` is a sequence of `(addr_delta, line_delta)` byte pairs; the line of an offset
/// is `firstlineno` plus the line deltas of every pair whose cumulative address is
/// `<= byte_offset` (this is `PyCode_Addr2Line`, and agrees with `dis.findlinestarts`).
/// Line deltas are unsigned in 2.7 and ≤3.5 and `int8` from 3.6 (`signed_deltas`). Large
/// jumps are split into several pairs: `(255, 0)` for big address gaps; `(n, 255)/(0, 255)…`
/// (unsigned) or `(n, 127)/(0, 127)…` and `(n, -128)/(0, -128)…` (signed) for big line gaps.
/// Note that on ≤3.9 a line delta of −128 is an ordinary delta, unlike 3.10.
///
/// Returns `None` only for an odd-length table or a line that overflows `i32`. The lnotab
/// does not know the code's length: an offset past the end gets the last line.
pub fn lnotab_line(
    lnotab: &[u8],
    firstlineno: i32,
    byte_offset: u32,
    signed_deltas: bool,
) -> Option<i32> {
    if !lnotab.len().is_multiple_of(2) {
        return None;
    }
    let target = u64::from(byte_offset);
    let mut line = i64::from(firstlineno);
    let mut addr: u64 = 0;
    for pair in lnotab.chunks_exact(2) {
        addr += u64::from(pair[0]);
        if addr > target {
            break;
        }
        line += lnotab_delta(pair[1], signed_deltas);
    }
    i32::try_from(line).ok()
}

fn lnotab_delta(byte: u8, signed: bool) -> i64 {
    if signed {
        i64::from(byte as i8)
    } else {
        i64::from(byte)
    }
}

fn lnotab_ranges(
    lnotab: &[u8],
    firstlineno: i32,
    signed_deltas: bool,
) -> Option<Vec<(u64, u64, Option<i64>)>> {
    if !lnotab.len().is_multiple_of(2) {
        return None;
    }
    let mut out = Vec::new();
    let mut line = i64::from(firstlineno);
    let mut addr: u64 = 0;
    for pair in lnotab.chunks_exact(2) {
        let delta = u64::from(pair[0]);
        if delta > 0 {
            out.push((addr, addr + delta, Some(line)));
            addr += delta;
        }
        line += lnotab_delta(pair[1], signed_deltas);
    }
    // The last line runs to the end of the code.
    out.push((addr, u64::MAX, Some(line)));
    Some(out)
}

// ------------------------------------------------------------------------------------------ //
// 3.10: PEP 626 co_linetable
// ------------------------------------------------------------------------------------------ //

const PEP626_NO_LINE: i8 = -128;

/// Line of the instruction at `byte_offset`, from a 3.10 `co_linetable` (PEP 626).
///
/// The table is `(addr_delta: u8, line_delta: i8)` pairs; each pair covers the next
/// `addr_delta` bytes. The running line starts at `firstlineno` and every pair adds its
/// delta — except `line_delta == -128`, which marks the range as having no line and leaves
/// the running line unchanged. Zero-length pairs only move the running line (the compiler
/// splits line jumps beyond ±127 into `(0, ±127)` pairs, and ranges longer than 254 bytes
/// into `(254, d)`, `(n, 0)` — or `(n, -128)` when the range has no line).
///
/// `None` when the instruction has no line, the offset is past the table, the table has odd
/// length, or the line overflows `i32`.
pub fn pep626_line(linetable: &[u8], firstlineno: i32, byte_offset: u32) -> Option<i32> {
    if !linetable.len().is_multiple_of(2) {
        return None;
    }
    let target = u64::from(byte_offset);
    let mut line = i64::from(firstlineno);
    let mut end: u64 = 0;
    for pair in linetable.chunks_exact(2) {
        let start = end;
        end += u64::from(pair[0]);
        let delta = pair[1] as i8;
        let this = if delta == PEP626_NO_LINE {
            None
        } else {
            line += i64::from(delta);
            Some(line)
        };
        if start <= target && target < end {
            return this.and_then(|l| i32::try_from(l).ok());
        }
    }
    None
}

fn pep626_ranges(linetable: &[u8], firstlineno: i32) -> Option<Vec<(u64, u64, Option<i64>)>> {
    if !linetable.len().is_multiple_of(2) {
        return None;
    }
    let mut out = Vec::new();
    let mut line = i64::from(firstlineno);
    let mut end: u64 = 0;
    for pair in linetable.chunks_exact(2) {
        let start = end;
        end += u64::from(pair[0]);
        let delta = pair[1] as i8;
        let this = if delta == PEP626_NO_LINE {
            None
        } else {
            line += i64::from(delta);
            Some(line)
        };
        if end > start {
            out.push((start, end, this));
        }
    }
    Some(out)
}

// ------------------------------------------------------------------------------------------ //
// 3.11+: PEP 657 location table
// ------------------------------------------------------------------------------------------ //

/// Entry kinds (bits 3–6 of an entry's first byte). 0–9 are the short forms.
const KIND_ONE_LINE0: u8 = 10;
const KIND_ONE_LINE2: u8 = 12;
const KIND_NO_COLUMNS: u8 = 13;
const KIND_LONG: u8 = 14;
const KIND_NONE: u8 = 15;

/// Longest varint accepted: 6 chunks of 6 bits (CPython's own never exceed 32 bits).
const MAX_VARINT_CHUNKS: u32 = 6;

/// One decoded entry of a 3.11+ location table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pep657Entry {
    /// Byte range `[start, end)` covered.
    start: u64,
    end: u64,
    /// `None` for kind 15 (no location).
    loc: Option<Pep657Loc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pep657Loc {
    line: i64,
    end_line: i64,
    column: Option<u64>,
    end_column: Option<u64>,
}

impl Pep657Loc {
    fn to_location(self) -> Option<Location> {
        let col = |c: Option<u64>| -> Option<Option<u32>> {
            match c {
                None => Some(None),
                Some(v) => u32::try_from(v).ok().map(Some),
            }
        };
        Some(Location {
            line: i32::try_from(self.line).ok()?,
            end_line: i32::try_from(self.end_line).ok()?,
            column: col(self.column)?,
            end_column: col(self.end_column)?,
        })
    }
}

/// Sequential decoder of a 3.11+ location table. Stops (returns `None`, sets `malformed`)
/// at the first entry it cannot decode. Every step consumes at least one byte, so it ends
/// within `table.len()` steps.
struct Pep657Decoder<'a> {
    table: &'a [u8],
    pos: usize,
    line: i64,
    addr: u64,
    malformed: bool,
}

impl<'a> Pep657Decoder<'a> {
    fn new(table: &'a [u8], firstlineno: i32) -> Self {
        Pep657Decoder {
            table,
            pos: 0,
            line: i64::from(firstlineno),
            addr: 0,
            malformed: false,
        }
    }

    /// A byte inside an entry: must not have the entry-start bit.
    fn byte(&mut self) -> Option<u8> {
        let b = *self.table.get(self.pos)?;
        if b & 0x80 != 0 {
            return None;
        }
        self.pos += 1;
        Some(b)
    }

    /// Unsigned varint: 6-bit chunks, least significant first, 0x40 = more chunks follow.
    fn varint(&mut self) -> Option<u64> {
        let mut b = self.byte()?;
        let mut val = u64::from(b & 63);
        let mut shift = 0u32;
        let mut chunks = 1u32;
        while b & 64 != 0 {
            if chunks >= MAX_VARINT_CHUNKS {
                return None;
            }
            b = self.byte()?;
            shift += 6;
            chunks += 1;
            val |= u64::from(b & 63) << shift;
        }
        Some(val)
    }

    /// Signed varint: zig-zag-like, low bit is the sign (`1` = negative), magnitude above.
    fn svarint(&mut self) -> Option<i64> {
        let u = self.varint()?;
        let magnitude = (u >> 1) as i64; // u < 2^36, cannot overflow
        Some(if u & 1 != 0 { -magnitude } else { magnitude })
    }

    fn decode(&mut self) -> Option<Pep657Entry> {
        let first = *self.table.get(self.pos)?;
        if first & 0x80 == 0 {
            return None; // not an entry start
        }
        self.pos += 1;
        let kind = (first >> 3) & 15;
        let start = self.addr;
        let end = start + 2 * (u64::from(first & 7) + 1);
        let loc = match kind {
            KIND_NONE => None,
            KIND_LONG => {
                self.line += self.svarint()?;
                let end_line = self.line + self.varint()? as i64;
                // Columns are stored + 1 so that 0 means "none".
                let column = self.varint()?.checked_sub(1);
                let end_column = self.varint()?.checked_sub(1);
                Some(Pep657Loc {
                    line: self.line,
                    end_line,
                    column,
                    end_column,
                })
            }
            KIND_NO_COLUMNS => {
                self.line += self.svarint()?;
                Some(Pep657Loc {
                    line: self.line,
                    end_line: self.line,
                    column: None,
                    end_column: None,
                })
            }
            KIND_ONE_LINE0..=KIND_ONE_LINE2 => {
                self.line += i64::from(kind - KIND_ONE_LINE0);
                let column = u64::from(self.byte()?);
                let end_column = u64::from(self.byte()?);
                Some(Pep657Loc {
                    line: self.line,
                    end_line: self.line,
                    column: Some(column),
                    end_column: Some(end_column),
                })
            }
            short => {
                // Short forms 0–9: same line; column = kind * 8 + bits 4–6 of the second
                // byte, end column = column + bits 0–3.
                let second = self.byte()?;
                let column = u64::from(short) * 8 + u64::from((second >> 4) & 7);
                let end_column = column + u64::from(second & 15);
                Some(Pep657Loc {
                    line: self.line,
                    end_line: self.line,
                    column: Some(column),
                    end_column: Some(end_column),
                })
            }
        };
        self.addr = end;
        Some(Pep657Entry { start, end, loc })
    }
}

impl Iterator for Pep657Decoder<'_> {
    type Item = Pep657Entry;

    fn next(&mut self) -> Option<Pep657Entry> {
        if self.malformed || self.pos >= self.table.len() {
            return None;
        }
        let entry = self.decode();
        if entry.is_none() {
            self.malformed = true;
        }
        entry
    }
}

/// Source location of the instruction at `byte_offset`, from a 3.11+ `co_linetable`
/// (PEP 657; format in CPython's `Objects/locations.md`).
///
/// Each entry starts with a byte `1kkkkLLL`: kind `k` (4 bits) and length `L + 1` code
/// units (2 bytes each, caches included). Kinds:
/// * 0–9 short form: same line; one byte `0ccceeee` → column `k*8 + ccc`, end `column + eeee`.
/// * 10–12 one-line form: line += `k - 10`; column byte, end-column byte.
/// * 13 no columns: line += svarint.
/// * 14 long form: line += svarint, end_line = line + varint, column + 1 varint,
///   end column + 1 varint (0 = none).
/// * 15 no location: the line is unknown; the running line is left unchanged.
///
/// `None` for no-location entries, offsets past the table, undecodable entries before or at
/// the offset, and lines that overflow `i32`.
pub fn pep657_location(linetable: &[u8], firstlineno: i32, byte_offset: u32) -> Option<Location> {
    let target = u64::from(byte_offset);
    for entry in Pep657Decoder::new(linetable, firstlineno) {
        if entry.start <= target && target < entry.end {
            return entry.loc?.to_location();
        }
    }
    None
}

fn pep657_entry_ranges(linetable: &[u8], firstlineno: i32) -> Vec<(u64, u64, Option<Location>)> {
    Pep657Decoder::new(linetable, firstlineno)
        .map(|e| (e.start, e.end, e.loc.and_then(Pep657Loc::to_location)))
        .collect()
}

// ------------------------------------------------------------------------------------------ //
// Convenience
// ------------------------------------------------------------------------------------------ //

/// Whether a ≤3.9 `co_lnotab` of this version has signed line deltas (3.6+).
pub fn lnotab_signed(major: u8, minor: u8) -> bool {
    (major, minor) >= (3, 6)
}

/// Line of the instruction at `byte_offset` in a table of the given kind (`major.minor` is
/// the target's version; it only matters for `Lnotab`, whose deltas are signed from 3.6).
pub fn line_for_offset(
    kind: LineTableKind,
    table: &[u8],
    firstlineno: i32,
    byte_offset: u32,
    major: u8,
    minor: u8,
) -> Option<i32> {
    match kind {
        LineTableKind::Lnotab => {
            lnotab_line(table, firstlineno, byte_offset, lnotab_signed(major, minor))
        }
        LineTableKind::Pep626 => pep626_line(table, firstlineno, byte_offset),
        LineTableKind::Pep657 => pep657_location(table, firstlineno, byte_offset).map(|l| l.line),
    }
}

/// Clip raw ranges to `[0, code_len)`, fill gaps with `None` and merge equal neighbours:
/// the result covers `[0, code_len)` exactly, in order.
fn normalise<T: Clone + PartialEq>(
    raw: Vec<(u64, u64, Option<T>)>,
    code_len: u32,
) -> Vec<(u32, u32, Option<T>)> {
    let len = u64::from(code_len);
    let mut out: Vec<(u32, u32, Option<T>)> = Vec::new();
    let push = |start: u64, end: u64, value: Option<T>, out: &mut Vec<(u32, u32, Option<T>)>| {
        // start < end <= len <= u32::MAX here.
        let (s, e) = (start as u32, end as u32);
        if let Some(last) = out.last_mut() {
            if last.1 == s && last.2 == value {
                last.1 = e;
                return;
            }
        }
        out.push((s, e, value));
    };
    let mut pos: u64 = 0;
    for (start, end, value) in raw {
        if pos >= len {
            break;
        }
        let (start, end) = (start.max(pos), end.min(len));
        if start >= end {
            continue;
        }
        if start > pos {
            push(pos, start, None, &mut out);
        }
        push(start, end, value, &mut out);
        pos = end;
    }
    if pos < len {
        push(pos, len, None, &mut out);
    }
    out
}

/// Every byte range of a code object with its line, for annotated listings: contiguous,
/// ordered, covering exactly `[0, code_len_bytes)`, neighbours with the same line merged.
/// Offsets the table does not cover (or that follow an undecodable entry) get `None`.
/// For any offset `o < code_len_bytes`, the range containing `o` carries
/// `line_for_offset(kind, table, firstlineno, o, major, minor)`.
pub fn line_ranges(
    kind: LineTableKind,
    table: &[u8],
    firstlineno: i32,
    code_len_bytes: u32,
    major: u8,
    minor: u8,
) -> Vec<LineRange> {
    let to_i32 = |v: Vec<(u64, u64, Option<i64>)>| -> Vec<(u64, u64, Option<i32>)> {
        v.into_iter()
            .map(|(s, e, l)| (s, e, l.and_then(|l| i32::try_from(l).ok())))
            .collect()
    };
    let raw = match kind {
        LineTableKind::Lnotab => {
            lnotab_ranges(table, firstlineno, lnotab_signed(major, minor)).map(to_i32)
        }
        LineTableKind::Pep626 => pep626_ranges(table, firstlineno).map(to_i32),
        LineTableKind::Pep657 => Some(
            pep657_entry_ranges(table, firstlineno)
                .into_iter()
                .map(|(s, e, loc)| (s, e, loc.map(|l| l.line)))
                .collect(),
        ),
    };
    normalise(raw.unwrap_or_default(), code_len_bytes)
}

/// 3.11+ only: every byte range with its full location, like [`line_ranges`] (contiguous,
/// covering `[0, code_len_bytes)`, equal neighbours merged).
pub fn location_ranges(
    linetable: &[u8],
    firstlineno: i32,
    code_len_bytes: u32,
) -> Vec<(u32, u32, Option<Location>)> {
    normalise(pep657_entry_ranges(linetable, firstlineno), code_len_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(
        line: i32,
        end_line: i32,
        column: Option<u32>,
        end_column: Option<u32>,
    ) -> Option<Location> {
        Some(Location {
            line,
            end_line,
            column,
            end_column,
        })
    }

    // ---- encoders used to build tables for the tests (mirroring CPython's compiler) ----

    fn varint(out: &mut Vec<u8>, mut v: u32) {
        while v >= 64 {
            out.push(64 | (v & 63) as u8);
            v >>= 6;
        }
        out.push(v as u8);
    }

    fn svarint(out: &mut Vec<u8>, v: i32) {
        if v < 0 {
            varint(out, ((-v as u32) << 1) | 1);
        } else {
            varint(out, (v as u32) << 1);
        }
    }

    fn first(kind: u8, units: u8) -> u8 {
        0x80 | (kind << 3) | (units - 1)
    }

    // ------------------------------------ lnotab ------------------------------------

    #[test]
    fn lnotab_basic() {
        // firstlineno 10: offsets 0..6 line 10, 6..10 line 11, 10.. line 14
        let t = [6, 1, 4, 3];
        assert_eq!(lnotab_line(&t, 10, 0, true), Some(10));
        assert_eq!(lnotab_line(&t, 10, 5, true), Some(10));
        assert_eq!(lnotab_line(&t, 10, 6, true), Some(11));
        assert_eq!(lnotab_line(&t, 10, 9, true), Some(11));
        assert_eq!(lnotab_line(&t, 10, 10, true), Some(14));
        assert_eq!(lnotab_line(&t, 10, 10_000, true), Some(14));
        assert_eq!(lnotab_line(&[], 7, 0, true), Some(7));
        assert_eq!(lnotab_line(&[], 7, 100, false), Some(7));
    }

    #[test]
    fn lnotab_leading_zero_addr_pair_applies_at_offset_zero() {
        // (0, 2): the line changes before the first instruction.
        assert_eq!(lnotab_line(&[0, 2, 4, 1], 1, 0, true), Some(3));
        assert_eq!(lnotab_line(&[0, 2, 4, 1], 1, 4, true), Some(4));
    }

    #[test]
    fn lnotab_signed_vs_unsigned() {
        let t = [2, 0xff, 2, 0x80];
        assert_eq!(lnotab_line(&t, 500, 2, true), Some(499));
        assert_eq!(lnotab_line(&t, 500, 4, true), Some(499 - 128));
        assert_eq!(lnotab_line(&t, 500, 2, false), Some(755));
        assert_eq!(lnotab_line(&t, 500, 4, false), Some(755 + 128));
    }

    #[test]
    fn lnotab_big_jumps() {
        // 2.7 style: +300 lines after 4 bytes = (4,255),(0,45); then 300 bytes = (255,0),(45,1)
        let t = [4, 255, 0, 45, 255, 0, 45, 1];
        assert_eq!(lnotab_line(&t, 1, 3, false), Some(1));
        assert_eq!(lnotab_line(&t, 1, 4, false), Some(301));
        assert_eq!(lnotab_line(&t, 1, 303, false), Some(301));
        assert_eq!(lnotab_line(&t, 1, 304, false), Some(302));
        // 3.6+ style: -300 = (2,-128),(0,-128),(0,-44)
        let t = [2, 0x80, 0, 0x80, 0, (-44i8) as u8];
        assert_eq!(lnotab_line(&t, 400, 1, true), Some(400));
        assert_eq!(lnotab_line(&t, 400, 2, true), Some(100));
    }

    #[test]
    fn lnotab_malformed() {
        assert_eq!(lnotab_line(&[1], 1, 0, true), None);
        assert_eq!(lnotab_line(&[2, 1, 2], 1, 0, true), None);
        // i32 overflow
        let t = [1, 127].repeat(20);
        assert_eq!(lnotab_line(&t, i32::MAX - 10, 100, true), None);
        assert_eq!(lnotab_line(&t, i32::MAX - 10, 0, true), Some(i32::MAX - 10));
    }

    // ------------------------------------ PEP 626 ------------------------------------

    #[test]
    fn pep626_basic() {
        // 4 bytes line 5 (delta +4 from 1), 2 bytes no line, 6 bytes line 3 (delta -2)
        let t = [4, 4, 2, 0x80, 6, (-2i8) as u8];
        assert_eq!(pep626_line(&t, 1, 0), Some(5));
        assert_eq!(pep626_line(&t, 1, 3), Some(5));
        assert_eq!(pep626_line(&t, 1, 4), None);
        assert_eq!(pep626_line(&t, 1, 6), Some(3));
        assert_eq!(pep626_line(&t, 1, 11), Some(3));
        assert_eq!(pep626_line(&t, 1, 12), None); // past the table
        assert_eq!(pep626_line(&[], 1, 0), None);
    }

    #[test]
    fn pep626_zero_length_and_split_entries() {
        // +300 lines: (0,127),(0,127),(8,46); then 600 bytes of one line: (254,1),(254,0),(92,0)
        let t = [0, 127, 0, 127, 8, 46, 254, 1, 254, 0, 92, 0];
        assert_eq!(pep626_line(&t, 1, 0), Some(301));
        assert_eq!(pep626_line(&t, 1, 7), Some(301));
        assert_eq!(pep626_line(&t, 1, 8), Some(302));
        assert_eq!(pep626_line(&t, 1, 8 + 599), Some(302));
        assert_eq!(pep626_line(&t, 1, 8 + 600), None);
        // -128 leaves the running line alone: the next delta is relative to the line before it.
        let t = [2, 3, 254, 0x80, 10, 0x80, 2, 1];
        assert_eq!(pep626_line(&t, 10, 0), Some(13));
        assert_eq!(pep626_line(&t, 10, 100), None);
        assert_eq!(pep626_line(&t, 10, 260), None);
        assert_eq!(pep626_line(&t, 10, 266), Some(14));
    }

    #[test]
    fn pep626_malformed() {
        assert_eq!(pep626_line(&[4], 1, 0), None);
        assert_eq!(pep626_line(&[4, 1, 4], 1, 0), None);
        let t = [1, 127].repeat(40);
        assert_eq!(pep626_line(&t, i32::MAX - 200, 39), None);
    }

    // ------------------------------------ PEP 657 ------------------------------------

    #[test]
    fn pep657_short_forms() {
        for kind in 0..=9u8 {
            for second in [0u8, 0x0f, 0x70, 0x7f, 0x35] {
                let t = [first(kind, 2), second];
                let col = u32::from(kind) * 8 + u32::from(second >> 4);
                let expect = loc(7, 7, Some(col), Some(col + u32::from(second & 15)));
                assert_eq!(pep657_location(&t, 7, 0), expect);
                assert_eq!(pep657_location(&t, 7, 3), expect);
                assert_eq!(pep657_location(&t, 7, 4), None);
            }
        }
    }

    #[test]
    fn pep657_one_line_forms() {
        let t = [
            first(10, 1),
            5,
            9,
            first(11, 2),
            127,
            0,
            first(12, 8),
            0,
            127,
        ];
        assert_eq!(pep657_location(&t, 3, 0), loc(3, 3, Some(5), Some(9)));
        assert_eq!(pep657_location(&t, 3, 2), loc(4, 4, Some(127), Some(0)));
        assert_eq!(pep657_location(&t, 3, 5), loc(4, 4, Some(127), Some(0)));
        assert_eq!(pep657_location(&t, 3, 6), loc(6, 6, Some(0), Some(127)));
        assert_eq!(pep657_location(&t, 3, 21), loc(6, 6, Some(0), Some(127)));
        assert_eq!(pep657_location(&t, 3, 22), None);
    }

    #[test]
    fn pep657_long_no_column_and_none() {
        let mut t = vec![first(14, 3)];
        svarint(&mut t, -5); // line 100 -> 95
        varint(&mut t, 3); // end line 98
        varint(&mut t, 300 + 1); // column 300
        varint(&mut t, 0); // no end column
        t.push(first(15, 1)); // no location, running line stays 95
        t.push(first(13, 2));
        svarint(&mut t, 100_000); // 100095, no columns
        t.push(first(14, 1));
        svarint(&mut t, 0);
        varint(&mut t, 0);
        varint(&mut t, 0);
        varint(&mut t, 1); // column None, end column 0
        t.push(first(0, 1));
        t.push(0x12);
        assert_eq!(pep657_location(&t, 100, 0), loc(95, 98, Some(300), None));
        assert_eq!(pep657_location(&t, 100, 5), loc(95, 98, Some(300), None));
        assert_eq!(pep657_location(&t, 100, 6), None);
        assert_eq!(
            pep657_location(&t, 100, 8),
            loc(100_095, 100_095, None, None)
        );
        assert_eq!(
            pep657_location(&t, 100, 11),
            loc(100_095, 100_095, None, None)
        );
        assert_eq!(
            pep657_location(&t, 100, 12),
            loc(100_095, 100_095, None, Some(0))
        );
        assert_eq!(
            pep657_location(&t, 100, 14),
            loc(100_095, 100_095, Some(1), Some(3))
        );
        assert_eq!(pep657_location(&t, 100, 16), None);
        assert_eq!(
            line_for_offset(LineTableKind::Pep657, &t, 100, 8, 3, 12),
            Some(100_095)
        );
    }

    #[test]
    fn pep657_varints() {
        for v in [
            0u32,
            1,
            63,
            64,
            4095,
            4096,
            262_143,
            262_144,
            16_777_216,
            i32::MAX as u32,
        ] {
            let mut t = vec![first(14, 1)];
            svarint(&mut t, 0);
            varint(&mut t, v);
            varint(&mut t, 0);
            varint(&mut t, 0);
            let expect = i32::try_from(1 + i64::from(v)).ok().map(|e| Location {
                line: 1,
                end_line: e,
                column: None,
                end_column: None,
            });
            assert_eq!(pep657_location(&t, 1, 0), expect, "varint {v}");
        }
        for v in [-1i32, 1, -63, 64, -4096, 200_000, -200_000] {
            let mut t = vec![first(13, 1)];
            svarint(&mut t, v);
            assert_eq!(
                pep657_location(&t, 1_000_000, 0),
                loc(1_000_000 + v, 1_000_000 + v, None, None)
            );
        }
        // "negative zero" (sign bit set, magnitude 0) decodes to 0 as in CPython.
        assert_eq!(
            pep657_location(&[first(13, 1), 1], 5, 0),
            loc(5, 5, None, None)
        );
    }

    #[test]
    fn pep657_malformed() {
        // Truncated entries.
        assert_eq!(pep657_location(&[first(0, 1)], 1, 0), None);
        assert_eq!(pep657_location(&[first(10, 1), 3], 1, 0), None);
        assert_eq!(pep657_location(&[first(14, 1), 0, 0, 0], 1, 0), None);
        assert_eq!(pep657_location(&[first(13, 1), 0x40], 1, 0), None);
        // Continuation byte where an entry should start.
        assert_eq!(pep657_location(&[0x05, first(13, 1), 0], 1, 0), None);
        // An entry start inside an entry.
        assert_eq!(pep657_location(&[first(10, 1), 3, first(0, 1)], 1, 0), None);
        // Endless varint.
        let mut t = vec![first(13, 1)];
        t.extend([0x7f; 64]);
        assert_eq!(pep657_location(&t, 1, 0), None);
        // Line overflow.
        let mut t = vec![first(13, 1)];
        svarint(&mut t, 1000);
        assert_eq!(pep657_location(&t, i32::MAX - 5, 0), None);
        // Garbage after the queried entry is not inspected.
        let t = [first(10, 1), 1, 2, 0x00, 0x00];
        assert_eq!(pep657_location(&t, 1, 0), loc(1, 1, Some(1), Some(2)));
        assert_eq!(pep657_location(&t, 1, 2), None);
    }

    // ------------------------------------ ranges ------------------------------------

    #[test]
    fn ranges_cover_code() {
        let t = [6, 1, 4, 3];
        assert_eq!(
            line_ranges(LineTableKind::Lnotab, &t, 10, 20, 3, 8),
            vec![(0, 6, Some(10)), (6, 10, Some(11)), (10, 20, Some(14))]
        );
        assert_eq!(
            line_ranges(LineTableKind::Lnotab, &t, 10, 8, 3, 8),
            vec![(0, 6, Some(10)), (6, 8, Some(11))]
        );
        assert_eq!(
            line_ranges(LineTableKind::Lnotab, &[1], 10, 8, 3, 8),
            vec![(0, 8, None)]
        );
        assert_eq!(line_ranges(LineTableKind::Lnotab, &t, 10, 0, 3, 8), vec![]);
        let t = [4, 4, 2, 0x80, 0, 1, 6, (-3i8) as u8, 2, 0];
        assert_eq!(
            line_ranges(LineTableKind::Pep626, &t, 1, 20, 3, 10),
            vec![
                (0, 4, Some(5)),
                (4, 6, None),
                (6, 14, Some(3)),
                (14, 20, None)
            ]
        );
        let t = [
            first(10, 1),
            1,
            2,
            first(0, 2),
            0x12,
            first(15, 1),
            first(11, 1),
            0,
            4,
        ];
        assert_eq!(
            line_ranges(LineTableKind::Pep657, &t, 1, 14, 3, 11),
            vec![
                (0, 6, Some(1)),
                (6, 8, None),
                (8, 10, Some(2)),
                (10, 14, None)
            ]
        );
        assert_eq!(
            location_ranges(&t, 1, 10),
            vec![
                (0, 2, loc(1, 1, Some(1), Some(2))),
                (2, 6, loc(1, 1, Some(1), Some(3))),
                (6, 8, None),
                (8, 10, loc(2, 2, Some(0), Some(4))),
            ]
        );
    }

    // ------------------------------ random / hostile input ------------------------------

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn random_table(rng: &mut Rng) -> Vec<u8> {
        let len = rng.below(80) as usize;
        let style = rng.below(4);
        (0..len)
            .map(|i| match style {
                // Mostly-valid PEP 657 shape: entry starts followed by small bytes.
                0 => {
                    if rng.below(3) == 0 || i == 0 {
                        0x80 | rng.below(128) as u8
                    } else {
                        rng.below(128) as u8
                    }
                }
                1 => [0x00, 0x7f, 0x80, 0xff, 0x40][rng.below(5) as usize],
                _ => rng.below(256) as u8,
            })
            .collect()
    }

    const KINDS: [(LineTableKind, u8, u8); 4] = [
        (LineTableKind::Lnotab, 2, 7),
        (LineTableKind::Lnotab, 3, 8),
        (LineTableKind::Pep626, 3, 10),
        (LineTableKind::Pep657, 3, 12),
    ];

    /// Point lookups and range listings agree on every offset, for any input.
    fn check_consistent(table: &[u8], firstlineno: i32, code_len: u32) {
        for (kind, major, minor) in KINDS {
            let ranges = line_ranges(kind, table, firstlineno, code_len, major, minor);
            let mut pos = 0;
            for &(s, e, line) in &ranges {
                assert_eq!(s, pos);
                assert!(e > s);
                for off in s..e {
                    assert_eq!(
                        line_for_offset(kind, table, firstlineno, off, major, minor),
                        line,
                        "{kind:?} {table:?} off {off}"
                    );
                }
                pos = e;
            }
            assert_eq!(pos, code_len);
            for w in ranges.windows(2) {
                assert_ne!(w[0].2, w[1].2, "unmerged neighbours");
            }
        }
        let locs = location_ranges(table, firstlineno, code_len);
        let mut pos = 0;
        for &(s, e, l) in &locs {
            assert_eq!(s, pos);
            for off in s..e {
                assert_eq!(pep657_location(table, firstlineno, off), l);
            }
            pos = e;
        }
        assert_eq!(pos, code_len);
    }

    #[test]
    fn random_input_never_panics_and_is_consistent() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let firsts = [
            0,
            1,
            -1,
            1000,
            i32::MAX,
            i32::MIN,
            i32::MAX - 3,
            i32::MIN + 3,
        ];
        for _ in 0..3000 {
            let table = random_table(&mut rng);
            let first = firsts[rng.below(firsts.len() as u64) as usize];
            let code_len = rng.below(200) as u32;
            check_consistent(&table, first, code_len);
            for off in [0, 1, u32::MAX, u32::MAX - 1, rng.next() as u32] {
                for (kind, major, minor) in KINDS {
                    let _ = line_for_offset(kind, &table, first, off, major, minor);
                }
                let _ = pep657_location(&table, first, off);
            }
            let _ = line_ranges(LineTableKind::Pep657, &table, first, u32::MAX, 3, 11);
            let _ = line_ranges(LineTableKind::Lnotab, &table, first, u32::MAX, 3, 6);
            let _ = line_ranges(LineTableKind::Pep626, &table, first, u32::MAX, 3, 10);
            let _ = location_ranges(&table, first, u32::MAX);
        }
    }

    #[test]
    fn truncated_valid_tables() {
        let mut t = vec![first(14, 3)];
        svarint(&mut t, 300_000);
        varint(&mut t, 70_000);
        varint(&mut t, 1000);
        varint(&mut t, 2000);
        t.extend([
            first(13, 8),
            0x41,
            0x01,
            first(5, 1),
            0x33,
            first(11, 1),
            3,
            4,
            first(15, 2),
        ]);
        let full = pep657_location(&t, 1, 0);
        assert_eq!(full, loc(300_001, 370_001, Some(999), Some(1999)));
        for cut in 0..=t.len() {
            check_consistent(&t[..cut], 1, 40);
            for off in 0..40 {
                let got = pep657_location(&t[..cut], 1, off);
                // A prefix either agrees with the full table or says None.
                assert!(got.is_none() || got == pep657_location(&t, 1, off));
            }
        }
        let lnotab = [4, 255, 0, 45, 255, 0, 45, 1, 2, 0x80];
        for cut in 0..=lnotab.len() {
            check_consistent(&lnotab[..cut], 1, 400);
        }
    }

    #[test]
    fn huge_tables_are_linear() {
        // 1 MiB of zero-length lnotab/pep626 pairs and of maximal PEP 657 entries.
        let big = [0u8, 127].repeat(1 << 19);
        assert_eq!(lnotab_line(&big, 0, 0, true), Some(127 * (1 << 19)));
        assert_eq!(pep626_line(&big, 0, 0), None);
        let big657 = [first(9, 8), 0x7f].repeat(1 << 19);
        assert_eq!(
            pep657_location(&big657, 1, 16 * ((1 << 19) - 1)),
            loc(1, 1, Some(79), Some(94))
        );
        assert_eq!(
            line_ranges(LineTableKind::Pep657, &big657, 1, u32::MAX, 3, 11).len(),
            2
        );
    }
}
