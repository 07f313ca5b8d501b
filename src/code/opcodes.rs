//! CPython opcode tables and decoding of live (quickened) bytecode.
//!
//! The per-version tables live in [`super::opcode_tables`], which is generated
//! by `scripts/gen_opcodes.py` from the real interpreters (never typed by
//! hand); `tests/opcodes.rs` fails when a table drifts from its interpreter.
//! This module defines the table type, the lookups the profiler uses, and the
//! decoding of bytecode read out of a live process:
//!
//! * The bytes we read are `co_code_adaptive` (3.11+): instructions may be
//!   *specialized* (`LOAD_ATTR_INSTANCE_VALUE`), *instrumented*
//!   (`INSTRUMENTED_CALL`, 3.12+) or, in 3.11, *adaptive* (`LOAD_ATTR_ADAPTIVE`)
//!   forms. Their inline cache layout is that of their base instruction, which
//!   the tables already account for: [`OpcodeTable::cache_entries`] of a
//!   specialized opcode is its base's count.
//! * From 3.11 an instruction is followed by `cache_entries` 2-byte inline
//!   cache units, and a frame's instruction pointer can point into them (a
//!   caller's `prev_instr` in 3.11/3.12 points at the last cache unit of its
//!   `CALL`). [`owning_instruction`] maps any offset back to the instruction
//!   that owns it.
//! * `EXTENDED_ARG` prefixes are treated as part of the instruction they
//!   prefix; offsets are numbered as `dis` numbers them (the instruction's
//!   offset is that of its own opcode unit, the prefixes sit before it).
//! * Python < 3.6 uses variable-length bytecode (1 byte, or 3 with a 16-bit
//!   argument); 3.6+ uses 2-byte code units.
//!
//! All offsets here are byte offsets into the code.

/// Bits of [`OpInfo::flags`]. Properties taken from `opcode.has*` lists are
/// those of the base instruction (a specialized `LOAD_ATTR_*` has `NAME`).
pub mod flags {
    /// Takes an argument (`HAVE_ARGUMENT` up to 3.11, `opcode.hasarg` from 3.12).
    pub const ARG: u16 = 1 << 0;
    /// A specialized (quickened) form: name differs from its base.
    pub const SPEC: u16 = 1 << 1;
    /// An `INSTRUMENTED_*` form (3.12+).
    pub const INSTR: u16 = 1 << 2;
    /// The generic form that counts and (re)specializes: 3.11 `*_ADAPTIVE`,
    /// 3.12+ the head of a specialization family that has an inline cache.
    pub const ADAPTIVE: u16 = 1 << 3;
    /// No static base: `INSTRUMENTED_LINE`, `INSTRUMENTED_INSTRUCTION`,
    /// `ENTER_EXECUTOR` stand for an instruction kept in a side table; their
    /// base and cache size are unknown from the byte alone.
    pub const NOBASE: u16 = 1 << 4;
    /// A backward jump (`dis._is_backward_jump`, 3.11+).
    pub const JBACK: u16 = 1 << 5;
    /// In `opcode.hasjrel`.
    pub const JREL: u16 = 1 << 6;
    /// In `opcode.hasjabs`.
    pub const JABS: u16 = 1 << 7;
    /// In `opcode.hasconst`.
    pub const CONST: u16 = 1 << 8;
    /// In `opcode.hasname`.
    pub const NAME: u16 = 1 << 9;
    /// In `opcode.haslocal`.
    pub const LOCAL: u16 = 1 << 10;
    /// In `opcode.hasfree`.
    pub const FREE: u16 = 1 << 11;
    /// In `opcode.hascompare`.
    pub const COMPARE: u16 = 1 << 12;
    /// In `opcode.hasnargs`.
    pub const NARGS: u16 = 1 << 13;
}

/// What one opcode byte means in one interpreter version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpInfo {
    /// `None` for an unused byte.
    pub name: Option<&'static str>,
    /// The deoptimized / deinstrumented instruction (itself when not
    /// specialized or instrumented, or unused, or [`flags::NOBASE`]).
    pub base: u8,
    /// Inline cache units (2 bytes each) that follow the instruction: those of
    /// the base instruction. 0 before 3.11.
    pub cache_entries: u8,
    /// [`flags`] bits.
    pub flags: u16,
}

/// One generated entry: (opcode, name, base opcode, cache entries, flags).
pub type Entry = (u8, &'static str, u8, u8, u16);

/// The opcode table of one CPython minor version (and build flavour).
#[derive(Debug)]
pub struct OpcodeTable {
    pub major: u8,
    pub minor: u8,
    /// Built with `Py_GIL_DISABLED` (3.13t and later).
    pub free_threaded: bool,
    /// `opcode.HAVE_ARGUMENT` (meaningful up to 3.11; see [`flags::ARG`]).
    pub have_argument: u8,
    /// `opcode.EXTENDED_ARG`.
    pub extended_arg: u8,
    /// Indexed by opcode byte.
    pub ops: [OpInfo; 256],
}

impl OpcodeTable {
    /// Build a table from the generated sparse entry list (used by the
    /// generated `opcode_tables.rs`; evaluated at compile time).
    pub const fn build(
        major: u8,
        minor: u8,
        free_threaded: bool,
        have_argument: u8,
        extended_arg: u8,
        entries: &[Entry],
    ) -> OpcodeTable {
        let mut ops = [OpInfo {
            name: None,
            base: 0,
            cache_entries: 0,
            flags: 0,
        }; 256];
        let mut i = 0;
        while i < 256 {
            ops[i].base = i as u8;
            i += 1;
        }
        let mut j = 0;
        while j < entries.len() {
            let (op, name, base, cache_entries, flags) = entries[j];
            if ops[op as usize].name.is_some() {
                panic!("duplicate opcode in generated table");
            }
            ops[op as usize] = OpInfo {
                name: Some(name),
                base,
                cache_entries,
                flags,
            };
            j += 1;
        }
        OpcodeTable {
            major,
            minor,
            free_threaded,
            have_argument,
            extended_arg,
            ops,
        }
    }

    /// `(major, minor)`.
    pub fn version(&self) -> (u8, u8) {
        (self.major, self.minor)
    }

    /// `"3.12"`, or `"3.13t"` for a free-threaded build.
    pub fn version_string(&self) -> String {
        format!(
            "{}.{}{}",
            self.major,
            self.minor,
            if self.free_threaded { "t" } else { "" }
        )
    }

    /// 2-byte code units (3.6+); before that, 1- or 3-byte instructions.
    pub fn is_wordcode(&self) -> bool {
        (self.major, self.minor) >= (3, 6)
    }

    /// Instructions are followed by inline caches (3.11+).
    pub fn has_inline_caches(&self) -> bool {
        (self.major, self.minor) >= (3, 11)
    }

    pub fn info(&self, op: u8) -> &OpInfo {
        &self.ops[op as usize]
    }

    /// The name as `dis` prints it, including specialized forms; `"<N>"` for
    /// an unused byte.
    pub fn name(&self, op: u8) -> &'static str {
        match self.ops[op as usize].name {
            Some(n) => n,
            None => super::opcode_tables::PLACEHOLDER_NAMES[op as usize],
        }
    }

    /// The name, or `None` for an unused byte.
    pub fn opname(&self, op: u8) -> Option<&'static str> {
        self.ops[op as usize].name
    }

    /// Whether the byte is a defined opcode in this version.
    pub fn is_defined(&self, op: u8) -> bool {
        self.ops[op as usize].name.is_some()
    }

    /// The opcode with this name (specialized names included).
    pub fn opcode(&self, name: &str) -> Option<u8> {
        self.ops
            .iter()
            .position(|o| o.name == Some(name))
            .map(|i| i as u8)
    }

    /// The deoptimized / deinstrumented instruction.
    pub fn base(&self, op: u8) -> u8 {
        self.ops[op as usize].base
    }

    /// Name of [`Self::base`].
    pub fn base_name(&self, op: u8) -> &'static str {
        self.name(self.base(op))
    }

    /// Inline cache units following the instruction (those of its base).
    pub fn cache_entries(&self, op: u8) -> u8 {
        self.ops[op as usize].cache_entries
    }

    pub fn flags(&self, op: u8) -> u16 {
        self.ops[op as usize].flags
    }

    fn flag(&self, op: u8, f: u16) -> bool {
        self.ops[op as usize].flags & f != 0
    }

    pub fn is_specialized(&self, op: u8) -> bool {
        self.flag(op, flags::SPEC)
    }

    pub fn is_instrumented(&self, op: u8) -> bool {
        self.flag(op, flags::INSTR)
    }

    pub fn is_adaptive(&self, op: u8) -> bool {
        self.flag(op, flags::ADAPTIVE)
    }

    /// False for `INSTRUMENTED_LINE`, `INSTRUMENTED_INSTRUCTION` and
    /// `ENTER_EXECUTOR`, whose real instruction lives in a side table.
    pub fn has_static_base(&self, op: u8) -> bool {
        !self.flag(op, flags::NOBASE)
    }

    pub fn has_arg(&self, op: u8) -> bool {
        self.flag(op, flags::ARG)
    }

    /// `EXTENDED_ARG` or one of its quickened forms (3.11 `EXTENDED_ARG_QUICK`).
    pub fn is_extended_arg(&self, op: u8) -> bool {
        self.is_defined(op) && self.base(op) == self.extended_arg
    }

    pub fn is_jump(&self, op: u8) -> bool {
        self.flag(op, flags::JREL | flags::JABS)
    }

    /// Number of defined opcodes having all the bits of `f` (0: all defined).
    pub fn count(&self, f: u16) -> usize {
        self.ops
            .iter()
            .filter(|o| o.name.is_some() && o.flags & f == f)
            .count()
    }
}

/// The table for a CPython version. Falls back to the other build flavour
/// (free-threaded or not) of the same minor version when only that one was
/// generated: CPython numbers opcodes the same way in both builds (the
/// free-threaded build only disables some specialization). Prefer generating
/// the exact flavour; [`super::opcode_tables::table_for`] is the exact lookup.
pub fn table_for(major: u8, minor: u8, free_threaded: bool) -> Option<&'static OpcodeTable> {
    super::opcode_tables::table_for(major, minor, free_threaded)
        .or_else(|| super::opcode_tables::table_for(major, minor, !free_threaded))
}

/// Every generated table, oldest first.
pub fn all_tables() -> &'static [&'static OpcodeTable] {
    super::opcode_tables::TABLES
}

/// One decoded instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instr {
    /// Byte offset of the opcode unit itself (what `dis` calls `offset`).
    pub offset: usize,
    /// Byte offset of its first `EXTENDED_ARG` prefix, else `offset`
    /// (what 3.13's `dis` calls `start_offset`).
    pub start_offset: usize,
    /// Byte offset just past the instruction and its inline caches.
    pub end_offset: usize,
    /// The opcode byte as found (possibly specialized / instrumented).
    pub opcode: u8,
    /// Its base instruction (or, for a [`flags::NOBASE`] opcode resolved
    /// through a side table, the original instruction).
    pub base: u8,
    /// Argument including `EXTENDED_ARG` prefixes (raw: also set when the
    /// instruction ignores it; see [`Instr::has_arg`]).
    pub arg: u32,
    /// Inline cache units after the instruction.
    pub cache_entries: u8,
    /// `dis` name of `opcode`.
    pub name: &'static str,
    /// `dis` name of `base`.
    pub base_name: &'static str,
    /// Whether the (base) instruction uses `arg`.
    pub has_arg: bool,
}

impl Instr {
    /// Whether `byte_offset` belongs to this instruction (prefixes, opcode
    /// unit or inline caches).
    pub fn contains(&self, byte_offset: usize) -> bool {
        self.start_offset <= byte_offset && byte_offset < self.end_offset
    }

    /// Argument as `dis` reports it (`None` for instructions without one).
    pub fn dis_arg(&self) -> Option<u32> {
        if self.has_arg {
            Some(self.arg)
        } else {
            None
        }
    }
}

/// Resolves the original opcode behind a [`flags::NOBASE`] opcode at a byte
/// offset (from `co_monitoring` or the executor), when the caller can.
pub type OriginalOp<'a> = &'a dyn Fn(usize) -> Option<u8>;

fn decode(
    table: &OpcodeTable,
    code: &[u8],
    start: usize,
    original: Option<OriginalOp<'_>>,
) -> Option<Instr> {
    let mut pos = start;
    let mut arg: u32 = 0;
    loop {
        let op = *code.get(pos)?;
        // The opcode whose base / cache layout applies.
        let mut eff = op;
        if !table.has_static_base(op) {
            if let Some(orig) = original.and_then(|f| f(pos)) {
                eff = orig;
            }
        }
        let info = table.info(eff);
        let (unit_len, this_arg, shift) = if table.is_wordcode() {
            (2usize, u32::from(*code.get(pos + 1)?), 8)
        } else if eff >= table.have_argument {
            let lo = u32::from(*code.get(pos + 1)?);
            let hi = u32::from(*code.get(pos + 2)?);
            (3usize, lo | hi << 8, 16)
        } else {
            (1usize, 0, 0)
        };
        arg = if shift == 0 {
            0
        } else {
            (arg << shift) | this_arg
        };
        let base = info.base;
        let cache = if table.has_static_base(eff) {
            info.cache_entries
        } else {
            0
        };
        let end = pos + unit_len + 2 * cache as usize;
        if table.is_defined(eff) && base == table.extended_arg {
            pos = end;
            continue;
        }
        if end > code.len() {
            return None;
        }
        return Some(Instr {
            offset: pos,
            start_offset: start,
            end_offset: end,
            opcode: op,
            base,
            arg,
            cache_entries: cache,
            name: table.name(op),
            base_name: table.name(base),
            has_arg: table.has_arg(eff),
        });
    }
}

/// Decode the instruction starting at `byte_offset` (its opcode unit, or its
/// first `EXTENDED_ARG` prefix, which is followed to the instruction it
/// prefixes). Does not look backwards: an `EXTENDED_ARG` before `byte_offset`
/// is not included in `arg` (use [`owning_instr`] or [`instructions`] for
/// that). `None` if out of range, misaligned or truncated.
pub fn instruction_at(table: &OpcodeTable, code: &[u8], byte_offset: usize) -> Option<Instr> {
    if table.is_wordcode() && !byte_offset.is_multiple_of(2) {
        return None;
    }
    decode(table, code, byte_offset, None)
}

/// Iterator over the instructions of a code object, `EXTENDED_ARG` prefixes
/// folded into the instruction they prefix, inline caches skipped.
pub struct Instructions<'a> {
    table: &'a OpcodeTable,
    code: &'a [u8],
    pos: usize,
    original: Option<OriginalOp<'a>>,
}

impl Iterator for Instructions<'_> {
    type Item = Instr;

    fn next(&mut self) -> Option<Instr> {
        let ins = decode(self.table, self.code, self.pos, self.original)?;
        self.pos = ins.end_offset;
        Some(ins)
    }
}

/// All instructions of `code`, from the start.
pub fn instructions<'a>(table: &'a OpcodeTable, code: &'a [u8]) -> Instructions<'a> {
    Instructions {
        table,
        code,
        pos: 0,
        original: None,
    }
}

/// Like [`instructions`], resolving [`flags::NOBASE`] opcodes
/// (`INSTRUMENTED_LINE`, ...) through `original` to get their cache layout.
pub fn instructions_with<'a>(
    table: &'a OpcodeTable,
    code: &'a [u8],
    original: OriginalOp<'a>,
) -> Instructions<'a> {
    Instructions {
        table,
        code,
        pos: 0,
        original: Some(original),
    }
}

/// The instruction owning `byte_offset`, which may point at the opcode, at an
/// `EXTENDED_ARG` prefix or inside the inline cache. Walks from the start of
/// the code. `None` when the offset is outside the decodable code.
pub fn owning_instr(table: &OpcodeTable, code: &[u8], byte_offset: usize) -> Option<Instr> {
    instructions(table, code)
        .take_while(|i| i.start_offset <= byte_offset)
        .find(|i| i.contains(byte_offset))
}

/// [`owning_instr`] resolving [`flags::NOBASE`] opcodes through `original`.
/// Without it, such an opcode is taken to have no inline cache, so offsets
/// after an instrumented line in 3.12+ may be attributed wrongly.
pub fn owning_instr_with(
    table: &OpcodeTable,
    code: &[u8],
    byte_offset: usize,
    original: OriginalOp<'_>,
) -> Option<Instr> {
    instructions_with(table, code, original)
        .take_while(|i| i.start_offset <= byte_offset)
        .find(|i| i.contains(byte_offset))
}

/// The `dis` offset of the instruction owning `byte_offset` (see
/// [`owning_instr`]); e.g. a 3.11/3.12 caller frame's `prev_instr`, which
/// points at the last cache unit of its `CALL`, maps to the `CALL`. Returns
/// `byte_offset` unchanged when no instruction owns it.
pub fn owning_instruction(table: &OpcodeTable, code: &[u8], byte_offset: usize) -> usize {
    owning_instr(table, code, byte_offset).map_or(byte_offset, |i| i.offset)
}
