//! Code objects: a code address → `CodeInfo` {qualified name, file, first line, line
//! table, bytecode}, cached by address and cheaply re-validated, plus the decoders for
//! line tables and opcodes.
//!
//! Code objects are immutable apart from their quickened bytecode (3.11+), so a decoded
//! `CodeInfo` is kept; on every use a few header fields are re-read and compared, so an
//! address that was freed and reused for another object is not trusted blindly.

pub mod linetable;
pub mod opcode_tables;
pub mod opcodes;
pub mod resolve;
pub mod source;
pub mod symbols;

use crate::process::Memory;
use crate::runtime::layout::{Layout, StringKind};
use crate::walker::WalkError;
use std::collections::HashMap;
use std::rc::Rc;

/// Longest string (name, file name) we read; longer ones are cut.
pub const MAX_STRING: usize = 4096;
/// Largest line table or bytecode we read.
pub const MAX_TABLE: usize = 1 << 20;

/// A decoded code object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeInfo {
    /// Unique per decoded object (a code object freed and reused gets a new one).
    pub id: u64,
    /// `co_qualname` on 3.11+, `co_name` before.
    pub name: String,
    pub filename: String,
    pub first_line: i32,
    pub line_table: Vec<u8>,
    /// Address of the first code unit (`co_code_adaptive` 3.11+, `co_code`'s bytes before).
    pub code_start: u64,
    /// Length of the bytecode in bytes.
    pub code_len: u64,
    /// 3.11+: `_co_firsttraceable` (in code units).
    pub first_traceable: u32,
    /// With opcode capture: the bytecode as first read (3.11+: quickened at that moment).
    pub bytecode: Vec<u8>,
    /// With opcode capture: for each byte of the bytecode, the offset of the instruction
    /// that owns it (`u32::MAX` where none does), so an offset inside an inline cache or
    /// an `EXTENDED_ARG` prefix maps to its instruction as `dis` numbers it.
    pub owners: Vec<u32>,
    /// With opcode capture: the names and constants its arguments index (for `dis`-style
    /// listings), when they could be read.
    pub symbols: Option<symbols::CodeSymbols>,
    /// Header fields re-read on a cache hit to validate the entry.
    fingerprint: [u64; 4],
}

impl CodeInfo {
    /// The id of [`CodeInfo::freed`] (decoded objects count from 1).
    pub const FREED: u64 = 0;

    /// Stands for a code object the kernel saw a frame run (so it was alive then) that
    /// was freed before userspace could read it: a module or class body that ran once.
    pub fn freed() -> CodeInfo {
        CodeInfo {
            id: Self::FREED,
            name: String::new(),
            filename: String::new(),
            first_line: 0,
            line_table: Vec::new(),
            code_start: 0,
            code_len: 0,
            first_traceable: 0,
            bytecode: Vec::new(),
            owners: Vec::new(),
            symbols: None,
            fingerprint: [0; 4],
        }
    }

    /// The line of the instruction at `byte_offset` (as `dis` numbers offsets).
    pub fn line_at(&self, layout: &Layout, byte_offset: u32) -> Option<i32> {
        linetable::line_for_offset(
            layout.line_table,
            &self.line_table,
            self.first_line,
            byte_offset,
            layout.major,
            layout.minor,
        )
    }

    /// The `dis` offset of the instruction owning `byte_offset` (needs opcode capture).
    pub fn owner(&self, byte_offset: u32) -> Option<u32> {
        match self.owners.get(byte_offset as usize) {
            Some(&o) if o != u32::MAX => Some(o),
            _ => None,
        }
    }
}

/// For each byte of `code`, the offset of the instruction that owns it.
pub fn instruction_owners(table: &opcodes::OpcodeTable, code: &[u8]) -> Vec<u32> {
    fill_owners(code.len(), opcodes::instructions(table, code))
}

/// [`instruction_owners`] for instrumented bytecode, resolving `INSTRUMENTED_LINE` and
/// friends through `original`.
pub fn instruction_owners_with(
    table: &opcodes::OpcodeTable,
    code: &[u8],
    original: opcodes::OriginalOp<'_>,
) -> Vec<u32> {
    fill_owners(
        code.len(),
        opcodes::instructions_with(table, code, original),
    )
}

/// The instruction an `INSTRUMENTED_LINE` / `INSTRUMENTED_INSTRUCTION` (`op`) at byte `pos`
/// replaced, from the code object's `_co_monitoring` side tables (3.12/3.13). Follows the
/// chain (a line event over an instruction event over an instrumented call) to an opcode
/// with a static base. None when the target does not make it available.
pub fn original_opcode(
    mem: &dyn Memory,
    l: &Layout,
    table: &opcodes::OpcodeTable,
    code_addr: u64,
    op: u8,
    pos: usize,
) -> Option<u8> {
    let (mon_off, lines_off, per_off, entry) = (
        l.code_monitoring?,
        l.monitoring_lines?,
        l.monitoring_per_instruction_opcodes?,
        l.monitoring_line_entry_size?,
    );
    let monitoring = mem.read_u64(code_addr.wrapping_add(mon_off as u64)).ok()?;
    if !plausible_ptr(monitoring) {
        return None;
    }
    let unit = (pos / 2) as u64;
    let line_op = table.opcode("INSTRUMENTED_LINE");
    let instr_op = table.opcode("INSTRUMENTED_INSTRUCTION");
    let mut op = op;
    for _ in 0..3 {
        if table.has_static_base(op) {
            return Some(op);
        }
        let side = if Some(op) == line_op {
            let lines = mem
                .read_u64(monitoring.wrapping_add(lines_off as u64))
                .ok()?;
            if !plausible_ptr(lines) {
                return None;
            }
            // 3.14+ (and 3.13 from some patch release on): the entry size is the table's
            // first byte, and entries follow it. The older fixed form starts with the
            // original opcode of code unit 0, which is never 2..=8 (those are not opcodes
            // that begin a code object), so a first byte in 2..=8 marks the variable form
            // even where our table (built from an earlier patch release) says fixed.
            let first = mem.read_u8(lines).ok()?;
            let (entry, data) = if entry == 0 || (2..=8).contains(&first) {
                (first as u64, 1)
            } else {
                (entry as u64, l.monitoring_line_data.unwrap_or(0) as u64)
            };
            if entry == 0 {
                return None;
            }
            lines.wrapping_add(data).wrapping_add(unit * entry)
        } else if Some(op) == instr_op {
            mem.read_u64(monitoring.wrapping_add(per_off as u64))
                .ok()?
                .wrapping_add(unit)
        } else {
            return None;
        };
        if side < 0x1000 {
            return None;
        }
        op = mem.read_u8(side).ok()?;
    }
    table.has_static_base(op).then_some(op)
}

fn fill_owners(len: usize, instrs: impl Iterator<Item = opcodes::Instr>) -> Vec<u32> {
    let mut owners = vec![u32::MAX; len];
    for ins in instrs {
        let end = ins.end_offset.min(len);
        for o in &mut owners[ins.start_offset.min(end)..end] {
            *o = ins.offset as u32;
        }
    }
    owners
}

/// Reads strings and code objects for one layout, with a cache of decoded code objects.
pub struct CodeReader {
    layout: Layout,
    /// Sampling tick: a code object validated in this tick is not re-read in it.
    epoch: u64,
    /// Return cached objects without validating them: only for samples the kernel took
    /// of a process whose memory is gone since (it exited before they were drained).
    pub trust_cache: bool,
    validated: HashMap<u64, u64>,
    /// Bytes of code objects read this tick (header and, on 3.11+, inline bytecode).
    live: HashMap<u64, (u64, Vec<u8>)>,
    live_buf: Vec<u8>,
    /// With opcode capture: the opcode table of the target's version.
    opcodes: Option<&'static opcodes::OpcodeTable>,
    cache: HashMap<u64, Rc<CodeInfo>>,
    /// Address of `PyCode_Type` once a code object has been verified by its type name.
    code_type: Option<u64>,
    header_len: usize,
    pub hits: u64,
    pub misses: u64,
}

impl CodeReader {
    pub fn new(layout: &Layout, opcodes: Option<&'static opcodes::OpcodeTable>) -> CodeReader {
        let l = layout;
        let mut header_len = [
            l.code_filename,
            l.code_name,
            l.code_firstlineno,
            l.code_linetable,
            l.ob_type,
            l.ob_size,
        ]
        .into_iter()
        .chain(l.code_qualname)
        .chain(l.code_code)
        .chain(l.code_firsttraceable)
        .max()
        .unwrap_or(0) as usize
            + 8;
        header_len = header_len.next_multiple_of(8);
        CodeReader {
            layout: layout.clone(),
            epoch: 1,
            trust_cache: false,
            validated: HashMap::new(),
            live: HashMap::new(),
            live_buf: Vec::new(),
            opcodes,
            cache: HashMap::new(),
            code_type: None,
            header_len,
            hits: 0,
            misses: 0,
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn opcode_table(&self) -> Option<&'static opcodes::OpcodeTable> {
        self.opcodes
    }

    /// Every cached code object, by address.
    pub fn entries(&self) -> impl Iterator<Item = (u64, &Rc<CodeInfo>)> {
        self.cache.iter().map(|(a, c)| (*a, c))
    }

    /// Forget everything (e.g. between two attachments).
    pub fn clear(&mut self) {
        self.cache.clear();
        self.validated.clear();
    }

    /// Start a new sampling tick: code objects are re-validated once in it.
    pub fn begin_tick(&mut self) {
        self.epoch += 1;
        if self.validated.len() > 100_000 {
            self.validated.clear();
        }
    }

    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Decode (or fetch from cache) the code object at `addr`.
    pub fn code(&mut self, mem: &dyn Memory, addr: u64) -> Result<Rc<CodeInfo>, WalkError> {
        self.code_upto(mem, addr, 0)
    }

    /// `code`, and when the object is validated by a read this tick, extend that read up
    /// to `upto` (3.11+: the bytecode is inline after the header), so the live opcodes of
    /// its frames come with the same system call (see `live_byte`).
    pub fn code_upto(
        &mut self,
        mem: &dyn Memory,
        addr: u64,
        upto: u64,
    ) -> Result<Rc<CodeInfo>, WalkError> {
        if !plausible_ptr(addr) {
            return Err(WalkError::BadPointer("code object"));
        }
        if let Some(info) = self.cache.get(&addr) {
            if self.trust_cache || self.validated.get(&addr) == Some(&self.epoch) {
                self.hits += 1;
                return Ok(info.clone());
            }
        }
        // How far to read: the header, or through the instructions wanted (known once the
        // object has been decoded: never past its bytecode).
        let mut len = self.header_len;
        if let Some(info) = self.cache.get(&addr) {
            let end = info
                .code_start
                .saturating_add(info.code_len)
                .saturating_sub(addr);
            let want = upto.saturating_sub(addr).min(end).min(MAX_TABLE as u64) as usize;
            len = len.max(want);
        }
        let mut buf = std::mem::take(&mut self.live_buf);
        buf.clear();
        buf.resize(len, 0);
        if let Err(e) = mem.read(addr, &mut buf) {
            self.live_buf = buf;
            return Err(e.into());
        }
        let header = &buf[..self.header_len];
        let fp = self.fingerprint(header);
        if let Some(info) = self.cache.get(&addr) {
            if info.fingerprint == fp {
                self.hits += 1;
                self.validated.insert(addr, self.epoch);
                let info = info.clone();
                self.store_live(addr, &buf);
                self.live_buf = buf;
                return Ok(info);
            }
        }
        self.misses += 1;
        let decoded = self.decode(mem, addr, header, fp);
        self.live_buf = buf;
        let info = Rc::new(decoded?);
        self.validated.insert(addr, self.epoch);
        // Just decoded: its bytecode copy was read now, it is this tick's live bytecode.
        if !info.bytecode.is_empty() {
            let off = info.code_start.saturating_sub(addr) as usize;
            let mut live = vec![0u8; off];
            live.extend_from_slice(&info.bytecode);
            self.store_live(addr, &live);
        }
        if self.cache.len() > 100_000 {
            self.cache.clear();
        }
        self.cache.insert(addr, info.clone());
        Ok(info)
    }

    fn store_live(&mut self, addr: u64, bytes: &[u8]) {
        if self.live.len() > 4096 {
            self.live.clear();
        }
        let e = self.live.entry(addr).or_default();
        e.0 = self.epoch;
        e.1.clear();
        e.1.extend_from_slice(bytes);
    }

    /// The byte at `at` of the code object at `addr`, if it was read this tick.
    pub fn live_byte(&self, addr: u64, at: u64) -> Option<u8> {
        self.live_bytes(addr)?
            .get(at.checked_sub(addr)? as usize)
            .copied()
    }

    /// The bytes of the code object at `addr` read this tick (from `addr` on).
    pub fn live_bytes(&self, addr: u64) -> Option<&[u8]> {
        let (epoch, bytes) = self.live.get(&addr)?;
        (*epoch == self.epoch).then_some(bytes.as_slice())
    }

    /// Does the code object at `addr` still match `info` (not freed and reused)?
    pub fn is_current(&self, mem: &dyn Memory, addr: u64, info: &CodeInfo) -> bool {
        let mut header = vec![0u8; self.header_len];
        mem.read(addr, &mut header).is_ok() && self.fingerprint(&header) == info.fingerprint
    }

    fn fingerprint(&self, h: &[u8]) -> [u64; 4] {
        let l = &self.layout;
        [
            field(h, l.ob_type),
            field(h, l.code_filename),
            field(h, l.code_qualname.unwrap_or(l.code_name)),
            field(h, l.code_linetable) ^ (field(h, l.code_firstlineno) & 0xffff_ffff),
        ]
    }

    fn decode(
        &mut self,
        mem: &dyn Memory,
        addr: u64,
        h: &[u8],
        fingerprint: [u64; 4],
    ) -> Result<CodeInfo, WalkError> {
        let l = &self.layout;
        let ty = field(h, l.ob_type);
        match self.code_type {
            Some(t) if t == ty => {}
            Some(_) => return Err(WalkError::BadCode("not a code object")),
            None => {
                if !plausible_ptr(ty) {
                    return Err(WalkError::BadCode("type pointer"));
                }
                let name_ptr = mem.read_u64(ty + l.type_name as u64)?;
                let name = read_c_string(mem, name_ptr, 64)?;
                if name != "code" {
                    return Err(WalkError::BadCode("not a code object"));
                }
                self.code_type = Some(ty);
            }
        }
        let name_field = l.code_qualname.unwrap_or(l.code_name);
        let name = read_str(mem, l, field(h, name_field))?;
        let filename = read_str(mem, l, field(h, l.code_filename))?;
        let first_line = field(h, l.code_firstlineno) as u32 as i32;
        let line_table = read_bytes(mem, l, field(h, l.code_linetable))?;
        let (code_start, code_len) = match (l.code_adaptive, l.code_code) {
            (Some(off), _) => {
                // 3.11+: the bytecode is inline; ob_size counts its code units.
                let units = field(h, l.ob_size);
                (addr + off as u64, (units.min(MAX_TABLE as u64 / 2)) * 2)
            }
            (None, Some(off)) => {
                let bytes = field(h, off);
                if !plausible_ptr(bytes) {
                    return Err(WalkError::BadPointer("co_code"));
                }
                let len = mem.read_u64(bytes + l.ob_size as u64)?;
                (bytes + l.bytes_sval as u64, len.min(MAX_TABLE as u64))
            }
            (None, None) => (0, 0),
        };
        let (bytecode, owners) = match self.opcodes {
            Some(table) if code_len > 0 => {
                let code = mem.read_vec(code_start, code_len as usize)?;
                let instrumented = code
                    .iter()
                    .step_by(if table.is_wordcode() { 2 } else { 1 })
                    .any(|&op| !table.has_static_base(op));
                let owners = if instrumented {
                    // Instrumented instructions hide their cache sizes: ask the side tables.
                    let orig = |pos: usize| {
                        let op = *code.get(pos)?;
                        original_opcode(mem, l, table, addr, op, pos)
                    };
                    instruction_owners_with(table, &code, &orig)
                } else {
                    instruction_owners(table, &code)
                };
                (code, owners)
            }
            _ => (Vec::new(), Vec::new()),
        };
        let symbols = match self.opcodes {
            Some(_) => symbols::read_symbols(mem, l, addr),
            None => None,
        };
        let first_traceable = l
            .code_firsttraceable
            .map(|off| field(h, off) as u32)
            .unwrap_or(0);
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Ok(CodeInfo {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            name,
            filename,
            first_line,
            line_table,
            code_start,
            code_len,
            first_traceable,
            bytecode,
            owners,
            symbols,
            fingerprint,
        })
    }
}

/// Could this be the address of an object of the target (aligned, in user space)?
pub fn plausible_ptr(p: u64) -> bool {
    (0x1000..=0x0000_ffff_ffff_ffff).contains(&p) && p.is_multiple_of(8)
}

/// Read an 8-byte little-endian field at `off` of a header buffer (0 if out of range).
fn field(h: &[u8], off: u32) -> u64 {
    let off = off as usize;
    h.get(off..off + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

/// Read a NUL-terminated C string of at most `max` bytes.
pub fn read_c_string(mem: &dyn Memory, addr: u64, max: usize) -> Result<String, WalkError> {
    let mut buf = vec![0u8; max];
    // The string may end near the end of a mapping: fall back to shorter reads.
    let mut len = max;
    loop {
        if mem.read(addr, &mut buf[..len]).is_ok() {
            break;
        }
        if len <= 8 {
            return Err(WalkError::Read);
        }
        len /= 2;
    }
    let end = buf[..len].iter().position(|&b| b == 0).unwrap_or(len);
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// Read a `str` object (PEP 393 unicode, or a Python 2 `str`).
pub fn read_str(mem: &dyn Memory, l: &Layout, addr: u64) -> Result<String, WalkError> {
    if !plausible_ptr(addr) {
        return Err(WalkError::BadPointer("string"));
    }
    match l.string_kind {
        StringKind::Bytes => {
            let bytes = read_bytes_max(mem, l, addr, MAX_STRING)?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
        StringKind::Unicode => {
            let len = mem.read_u64(addr + l.unicode_length as u64)? as usize;
            let state = mem.read_u32(addr + l.unicode_state as u64)?;
            let kind = (state >> l.unicode_kind_shift) & 7;
            let compact = (state >> (l.unicode_kind_shift + 3)) & 1 == 1;
            let ascii = (state >> (l.unicode_kind_shift + 4)) & 1 == 1;
            let data = match (compact, ascii) {
                (true, true) => addr + l.unicode_ascii_size as u64,
                (true, false) => addr + l.unicode_compact_size as u64,
                // Legacy (non-compact) strings keep a pointer to their data.
                (false, _) => mem.read_u64(addr + l.unicode_compact_size as u64)?,
            };
            let n = len.min(MAX_STRING);
            match kind {
                1 => {
                    let b = mem.read_vec(data, n)?;
                    Ok(if ascii {
                        String::from_utf8_lossy(&b).into_owned()
                    } else {
                        b.iter().map(|&c| c as char).collect()
                    })
                }
                2 => {
                    let b = mem.read_vec(data, n * 2)?;
                    let units: Vec<u16> = b
                        .chunks_exact(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]))
                        .collect();
                    Ok(String::from_utf16_lossy(&units))
                }
                4 => {
                    let b = mem.read_vec(data, n * 4)?;
                    Ok(b.chunks_exact(4)
                        .map(|c| {
                            char::from_u32(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                                .unwrap_or('\u{fffd}')
                        })
                        .collect())
                }
                _ => Err(WalkError::BadCode("string kind")),
            }
        }
    }
}

/// Read a bytes object's contents (Python 2: a `str`).
pub fn read_bytes(mem: &dyn Memory, l: &Layout, addr: u64) -> Result<Vec<u8>, WalkError> {
    read_bytes_max(mem, l, addr, MAX_TABLE)
}

fn read_bytes_max(
    mem: &dyn Memory,
    l: &Layout,
    addr: u64,
    max: usize,
) -> Result<Vec<u8>, WalkError> {
    if !plausible_ptr(addr) {
        return Err(WalkError::BadPointer("bytes"));
    }
    let len = mem.read_u64(addr + l.ob_size as u64)?;
    if len > MAX_TABLE as u64 {
        return Err(WalkError::BadCode("bytes too long"));
    }
    Ok(mem.read_vec(addr + l.bytes_sval as u64, (len as usize).min(max))?)
}
