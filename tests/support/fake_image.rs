//! A believable CPython process image inside a `FakeMemory`, for any built-in `Layout`.
//!
//! Include with `#[path = "support/fake_image.rs"] mod fake_image;`.
//!
//! `ImageBuilder` lays out, with nothing but the offsets of a `Layout`:
//! * the interpreter-list head: a field of a `_PyRuntimeState` (3.7+) or the static
//!   `interp_head` variable (2.7, 3.6), pointing at the interpreter list (optional
//!   sub-interpreters first, the main interpreter last, as CPython's newest-first list);
//! * per thread a `PyThreadState` (linked by `tstate_next`, with `thread_id` and, 3.11+,
//!   `native_thread_id`), and its frame chain, leaf first:
//!   - ≤3.10 heap `PyFrameObject`s (`f_back`, `f_code`, `f_lasti`),
//!   - 3.11/3.12 a `_PyCFrame` whose `current_frame` points at `_PyInterpreterFrame`s laid
//!     out root-first on a data-stack chunk (`previous`, `f_code`, `prev_instr`, `owner`),
//!   - 3.13 `tstate.current_frame` and `f_executable`/`instr_ptr`;
//!
//!   3.12+ C-stack entry frames (`owner == owner_cstack`) can be placed anywhere in a chain;
//! * code objects whose `ob_type` is a type object named `"code"`, with `co_name`,
//!   `co_qualname` and `co_filename` as compact ASCII `str` (2.7: `PyStringObject`),
//!   `co_firstlineno`, a line table valid for the version and bytecode (`co_code` ≤3.10,
//!   inline code units 3.11+, `_co_firsttraceable = 0`).
//!
//! Every code object is `slots` "line slots" of 2 code units (4 bytes): slot `i` is on line
//! `first_line + 1 + i`, and a frame executing in slot `i` points at byte `4 i + 2` (`f_lasti`
//! in bytes ≤3.9, in code units on 3.10, a pointer into the code 3.11+). The encodings are
//! checked against `pyprof::code::linetable` when the image is built.
//!
//! Every object sits alone in its own page-aligned region with an unmapped page after it
//! (except 3.11+ interpreter frames, which share their thread's data-stack chunk as in
//! CPython), so any read past an object fails. `FakeImage` exposes the address of every
//! object and field, and can write, truncate or unmap regions to inject faults.
#![allow(dead_code)]

use pyprof::code::linetable;
use pyprof::process::{FakeMemory, Memory};
use pyprof::runtime::layout::{FrameKind, Layout, LineTableKind, StringKind};
use pyprof::runtime::{PythonRuntime, Version};
use pyprof::walker::Walker;
use std::collections::BTreeMap;

/// Where the image's regions start (a typical heap address on x86-64 Linux).
pub const BASE: u64 = 0x7f3a_0000_0000;
pub const PAGE: u64 = 0x1000;
/// An aligned address that is never mapped.
pub const HOLE: u64 = 0x5555_0000_0000;
/// Extra words of locals/stack after `f_localsplus` in every frame.
pub const FRAME_EXTRA_WORDS: u64 = 4;
/// `FRAME_OWNED_BY_THREAD`.
pub const OWNER_THREAD: u8 = 0;

#[derive(Clone, Debug)]
pub struct CodeSpec {
    pub name: String,
    /// Written as `co_qualname` on 3.11+ (and what the profiler reports there).
    pub qualname: String,
    pub file: String,
    pub first_line: i32,
    /// Number of line slots (raised to cover every frame that uses the code object).
    pub slots: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameSpec {
    /// A Python frame executing line slot `slot` of code object `code`.
    Py { code: usize, slot: u32 },
    /// 3.12+: a C-stack entry frame (`owner == layout.owner_cstack`), skipped by the walker.
    Shim,
}

#[derive(Clone, Debug)]
pub struct ThreadSpec {
    pub thread_id: u64,
    pub native_id: u64,
    /// Leaf (innermost) first.
    pub frames: Vec<FrameSpec>,
}

/// What a profiler should report for one Python frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedFrame {
    /// `co_qualname` on 3.11+, `co_name` before.
    pub function: String,
    pub file: String,
    pub first_line: i32,
    pub line: i32,
    /// Byte offset (as `dis` numbers it) of the instruction.
    pub offset: u32,
}

pub struct ImageBuilder {
    layout: Layout,
    codes: Vec<CodeSpec>,
    threads: Vec<ThreadSpec>,
    subinterpreters: usize,
}

impl ImageBuilder {
    pub fn new(layout: &Layout) -> ImageBuilder {
        ImageBuilder {
            layout: layout.clone(),
            codes: Vec::new(),
            threads: Vec::new(),
            subinterpreters: 0,
        }
    }

    /// A code object; its qualified name is `Mod.<name>`. Returns its index.
    pub fn code(&mut self, name: &str, file: &str, first_line: i32) -> usize {
        self.code_spec(CodeSpec {
            name: name.to_string(),
            qualname: format!("Mod.{name}"),
            file: file.to_string(),
            first_line,
            slots: 4,
        })
    }

    pub fn code_spec(&mut self, spec: CodeSpec) -> usize {
        self.codes.push(spec);
        self.codes.len() - 1
    }

    /// A thread running `(code, slot)` frames, leaf first; ids are chosen for it.
    pub fn thread(&mut self, frames: &[(usize, u32)]) -> usize {
        let frames = frames
            .iter()
            .map(|&(code, slot)| FrameSpec::Py { code, slot })
            .collect();
        self.thread_frames(frames)
    }

    pub fn thread_frames(&mut self, frames: Vec<FrameSpec>) -> usize {
        let i = self.threads.len() as u64;
        self.thread_spec(ThreadSpec {
            thread_id: 0x7f3b_1e00_0700 + i * 0x80_1000,
            native_id: 4242 + i,
            frames,
        })
    }

    pub fn thread_spec(&mut self, spec: ThreadSpec) -> usize {
        self.threads.push(spec);
        self.threads.len() - 1
    }

    /// Sub-interpreters placed before the main interpreter in the list (no threads).
    pub fn subinterpreters(&mut self, n: usize) -> &mut Self {
        self.subinterpreters = n;
        self
    }

    pub fn build(&self) -> FakeImage {
        let l = self.layout.clone();
        let mut img = FakeImage {
            layout: l.clone(),
            mem: FakeMemory::new(),
            regions: BTreeMap::new(),
            next: BASE,
            runtime_addr: None,
            interp_head_addr: 0,
            interps: Vec::new(),
            types: Types::default(),
            codes: Vec::new(),
            threads: Vec::new(),
            objects: Vec::new(),
            fields: Vec::new(),
        };
        img.build_types();

        // ---- code objects
        let mut slots: Vec<u32> = self.codes.iter().map(|c| c.slots.max(1)).collect();
        for t in &self.threads {
            for f in &t.frames {
                if let FrameSpec::Py { code, slot } = *f {
                    slots[code] = slots[code].max(slot + 1);
                }
            }
        }
        for (i, spec) in self.codes.iter().enumerate() {
            let mut spec = spec.clone();
            spec.slots = slots[i];
            let c = img.build_code(spec);
            img.codes.push(c);
        }

        // ---- interpreters
        let interp_size = [l.interp_next, l.interp_tstate_head]
            .into_iter()
            .chain(l.interp_gil_ptr)
            .max()
            .unwrap() as u64
            + 8
            + 64;
        let n_interps = self.subinterpreters + 1;
        for _ in 0..n_interps {
            let a = img.alloc_obj("interp", interp_size);
            img.interps.push(a);
        }
        for i in 0..n_interps {
            let next = img.interps.get(i + 1).copied().unwrap_or(0);
            let a = img.interps[i];
            img.set_ptr(a + l.interp_next as u64, next, "interp.next");
            img.set_ptr(a + l.interp_tstate_head as u64, 0, "interp.tstate_head");
        }
        let main = *img.interps.last().unwrap();

        // ---- the interpreter-list head
        match l.runtime_interp_head {
            Some(head_off) => {
                let size = [head_off]
                    .into_iter()
                    .chain(l.runtime_interp_main)
                    .chain(l.runtime_gil_last_holder)
                    .chain(l.runtime_gil_locked)
                    .max()
                    .unwrap() as u64
                    + 8;
                let rt = img.alloc_obj("runtime", size);
                img.runtime_addr = Some(rt);
                img.interp_head_addr = rt + head_off as u64;
                if let Some(m) = l.runtime_interp_main {
                    img.set_ptr(rt + m as u64, main, "runtime.interpreters.main");
                }
            }
            None => {
                img.interp_head_addr = img.alloc_obj("interp_head", 8);
            }
        }
        let head = img.interps[0];
        img.set_ptr(img.interp_head_addr, head, "interpreters.head");

        // ---- threads
        for spec in &self.threads {
            let t = img.build_thread(spec, main);
            img.threads.push(t);
        }
        let tstates: Vec<u64> = img.threads.iter().map(|t| t.tstate).collect();
        for (i, &t) in tstates.iter().enumerate() {
            let next = tstates.get(i + 1).copied().unwrap_or(0);
            img.set_ptr(t + l.tstate_next as u64, next, "tstate.next");
        }
        // (A field already listed by the loop above.)
        img.write_u64(
            main + l.interp_tstate_head as u64,
            tstates.first().copied().unwrap_or(0),
        );
        img
    }
}

/// Addresses of the type objects of the image.
#[derive(Clone, Debug, Default)]
pub struct Types {
    pub type_: u64,
    pub code: u64,
    pub str_: u64,
    pub bytes: u64,
    pub frame: u64,
    /// The region holding the types' `tp_name` C strings (64 bytes each).
    pub names: u64,
}

/// A built code object and the addresses of its parts.
#[derive(Clone, Debug)]
pub struct CodeObj {
    pub spec: CodeSpec,
    pub addr: u64,
    pub name: u64,
    pub qualname: Option<u64>,
    pub filename: u64,
    /// The line table bytes object.
    pub linetable: u64,
    /// ≤3.10: the `co_code` bytes object.
    pub co_code: Option<u64>,
    /// First byte of bytecode (in `co_code` ≤3.10, inline 3.11+).
    pub code_start: u64,
    pub code_len: u64,
}

impl CodeObj {
    /// The line of slot `slot`.
    pub fn line(&self, slot: u32) -> i32 {
        self.spec.first_line + 1 + slot as i32
    }
}

#[derive(Clone, Debug)]
pub struct FrameObj {
    pub addr: u64,
    pub spec: FrameSpec,
}

#[derive(Clone, Debug)]
pub struct ThreadObj {
    pub tstate: u64,
    pub thread_id: u64,
    pub native_id: u64,
    /// 3.11/3.12: the `_PyCFrame`.
    pub cframe: Option<u64>,
    /// 3.11+: the data-stack chunk holding the Python frames.
    pub datastack: Option<u64>,
    /// Leaf first, shims included.
    pub frames: Vec<FrameObj>,
    /// What the profiler should report, leaf first (shims excluded).
    pub expected: Vec<ExpectedFrame>,
}

impl ThreadObj {
    /// Addresses of the Python (non-shim) frames, leaf first.
    pub fn py_frames(&self) -> Vec<u64> {
        self.frames
            .iter()
            .filter(|f| matches!(f.spec, FrameSpec::Py { .. }))
            .map(|f| f.addr)
            .collect()
    }
}

/// One object of the image (for fault injection).
#[derive(Clone, Copy, Debug)]
pub struct ObjRef {
    pub addr: u64,
    pub size: u64,
    pub kind: &'static str,
}

/// What a field holds (for fault injection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// A pointer to another object (8 bytes).
    Ptr,
    /// An integer of `width` bytes: sizes, lengths, line numbers, ids, state bits.
    Int(u8),
}

/// A field that the walker or the code reader reads.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub addr: u64,
    pub kind: FieldKind,
    pub what: &'static str,
}

impl Field {
    pub fn width(&self) -> usize {
        match self.kind {
            FieldKind::Ptr => 8,
            FieldKind::Int(w) => w as usize,
        }
    }
}

#[derive(Clone, Debug)]
pub struct FakeImage {
    pub layout: Layout,
    /// The memory the walker reads; kept in sync with every mutation below.
    pub mem: FakeMemory,
    regions: BTreeMap<u64, Vec<u8>>,
    next: u64,
    /// `_PyRuntime` (3.7+).
    pub runtime_addr: Option<u64>,
    /// The `PyInterpreterState *` that heads the interpreter list.
    pub interp_head_addr: u64,
    /// Interpreters in list order: sub-interpreters first, the main one last.
    pub interps: Vec<u64>,
    pub types: Types,
    pub codes: Vec<CodeObj>,
    /// In list order (the first is `tstate_head`).
    pub threads: Vec<ThreadObj>,
    objects: Vec<ObjRef>,
    fields: Vec<Field>,
}

fn round8(n: u64) -> u64 {
    n.div_ceil(8) * 8
}

impl FakeImage {
    // ------------------------------------------------------------------ construction

    /// Map a new zeroed region of `size` bytes, page-aligned, with an unmapped page after.
    pub fn alloc(&mut self, size: u64) -> u64 {
        let addr = self.next;
        let size = size.max(8);
        self.next = (addr + size).next_multiple_of(PAGE) + PAGE;
        self.regions.insert(addr, vec![0u8; size as usize]);
        self.mem.map(addr, vec![0u8; size as usize]);
        addr
    }

    fn alloc_obj(&mut self, kind: &'static str, size: u64) -> u64 {
        let a = self.alloc(size);
        self.objects.push(ObjRef {
            addr: a,
            size,
            kind,
        });
        a
    }

    fn field(&mut self, addr: u64, kind: FieldKind, what: &'static str) {
        self.fields.push(Field { addr, kind, what });
    }

    fn set_ptr(&mut self, addr: u64, v: u64, what: &'static str) {
        self.write_u64(addr, v);
        self.field(addr, FieldKind::Ptr, what);
    }

    fn set_int(&mut self, addr: u64, bytes: &[u8], what: &'static str) {
        self.write(addr, bytes);
        self.field(addr, FieldKind::Int(bytes.len() as u8), what);
    }

    fn build_types(&mut self) {
        let names = ["type", "code", "str", "bytes", "frame"];
        let names_region = self.alloc_obj("cstrings", 64 * (names.len() as u64 + 1));
        for (i, n) in names.iter().enumerate() {
            let mut b = n.as_bytes().to_vec();
            b.push(0);
            self.write(names_region + 64 * i as u64, &b);
        }
        self.types.names = names_region;
        let mut addrs = Vec::new();
        for (i, _) in names.iter().enumerate() {
            let t = self.alloc_obj("type", 416);
            self.write_u64(t, 1 << 30); // ob_refcnt (immortal-ish)
            addrs.push(t);
            let name = names_region + 64 * i as u64;
            self.set_ptr(t + self.layout.type_name as u64, name, "type.tp_name");
        }
        for &t in &addrs {
            self.write_u64(t + self.layout.ob_type as u64, addrs[0]);
        }
        self.types.type_ = addrs[0];
        self.types.code = addrs[1];
        self.types.str_ = addrs[2];
        self.types.bytes = addrs[3];
        self.types.frame = addrs[4];
    }

    /// A new `str` object (2.7: `PyStringObject`) holding ASCII `s`.
    pub fn new_str(&mut self, s: &str) -> u64 {
        assert!(s.is_ascii());
        let l = self.layout.clone();
        match l.string_kind {
            StringKind::Bytes => self.new_bytes_typed(s.as_bytes(), self.types.str_, "str"),
            StringKind::Unicode => {
                let size = round8(l.unicode_ascii_size as u64 + s.len() as u64 + 1);
                let a = self.alloc_obj("str", size);
                self.write_u64(a, 1);
                self.set_ptr(a + l.ob_type as u64, self.types.str_, "str.ob_type");
                self.set_int(
                    a + l.unicode_length as u64,
                    &(s.len() as u64).to_le_bytes(),
                    "str.length",
                );
                self.write_u64(a + l.unicode_length as u64 + 8, u64::MAX); // hash = -1
                self.set_int(
                    a + l.unicode_state as u64,
                    &self.ascii_state().to_le_bytes(),
                    "str.state",
                );
                self.write(a + l.unicode_ascii_size as u64, s.as_bytes());
                a
            }
        }
    }

    /// `state` of a compact ASCII string: kind 1, compact, ascii (and `ready` ≤3.11).
    pub fn ascii_state(&self) -> u32 {
        let sh = self.layout.unicode_kind_shift;
        let ready = if (self.layout.major, self.layout.minor) <= (3, 11) {
            1 << (sh + 5)
        } else {
            0
        };
        (1 << sh) | (1 << (sh + 3)) | (1 << (sh + 4)) | ready
    }

    /// A new bytes object (2.7: a `str`).
    pub fn new_bytes(&mut self, b: &[u8]) -> u64 {
        let ty = self.types.bytes;
        self.new_bytes_typed(b, ty, "bytes")
    }

    fn new_bytes_typed(&mut self, b: &[u8], ty: u64, kind: &'static str) -> u64 {
        let l = self.layout.clone();
        let size = round8(l.bytes_sval as u64 + b.len() as u64 + 1);
        let a = self.alloc_obj(kind, size);
        self.write_u64(a, 1);
        self.set_ptr(a + l.ob_type as u64, ty, "bytes.ob_type");
        self.set_int(
            a + l.ob_size as u64,
            &(b.len() as u64).to_le_bytes(),
            "bytes.size",
        );
        self.write_u64(a + l.ob_size as u64 + 8, u64::MAX); // ob_shash = -1
        self.write(a + l.bytes_sval as u64, b);
        a
    }

    /// The line table for `slots` slots, slot `i` on line `first_line + 1 + i`.
    pub fn encode_linetable(kind: LineTableKind, slots: u32) -> Vec<u8> {
        let mut t = Vec::new();
        match kind {
            // (addr delta, line delta) pairs; each applies from its cumulative address on.
            LineTableKind::Lnotab => {
                t.extend_from_slice(&[0, 1]);
                for _ in 1..slots {
                    t.extend_from_slice(&[4, 1]);
                }
            }
            // (length in bytes, line delta) pairs, each covering its range.
            LineTableKind::Pep626 => {
                for _ in 0..slots {
                    t.extend_from_slice(&[4, 1]);
                }
            }
            // Entries `1 kkkk LLL`: kind 13 (no columns), 2 code units, svarint line delta +1.
            LineTableKind::Pep657 => {
                for _ in 0..slots {
                    t.extend_from_slice(&[0x80 | (13 << 3) | 1, 2]);
                }
            }
        }
        t
    }

    /// Bytecode of `units` code units (2.7: `units * 2` one-byte instructions) of `NOP`.
    fn nops(&self, bytes: usize) -> Vec<u8> {
        let l = &self.layout;
        let nop = pyprof::code::opcodes::table_for(l.major, l.minor, l.free_threaded)
            .and_then(|t| t.opcode("NOP"))
            .unwrap_or(9);
        if l.major == 2 {
            vec![nop; bytes]
        } else {
            (0..bytes)
                .map(|i| if i % 2 == 0 { nop } else { 0 })
                .collect()
        }
    }

    fn build_code(&mut self, spec: CodeSpec) -> CodeObj {
        let l = self.layout.clone();
        let name = self.new_str(&spec.name);
        let qualname = l.code_qualname.map(|_| ());
        let qualname = qualname.map(|()| self.new_str(&spec.qualname));
        let filename = self.new_str(&spec.file);
        let table = Self::encode_linetable(l.line_table, spec.slots);
        for i in 0..spec.slots {
            for off in [4 * i, 4 * i + 2] {
                let got = linetable::line_for_offset(
                    l.line_table,
                    &table,
                    spec.first_line,
                    off,
                    l.major,
                    l.minor,
                );
                assert_eq!(
                    got,
                    Some(spec.first_line + 1 + i as i32),
                    "line table self-check, {}.{} offset {off}",
                    l.major,
                    l.minor
                );
            }
        }
        let linetable = self.new_bytes(&table);
        let code_bytes = self.nops(4 * spec.slots as usize);
        let co_code = l.code_code.map(|_| ());
        let co_code = co_code.map(|()| self.new_bytes(&code_bytes));

        let mut size = [
            l.code_filename,
            l.code_name,
            l.code_firstlineno,
            l.code_linetable,
            l.code_nlocals,
            l.code_flags,
            l.ob_type,
            l.ob_size,
        ]
        .into_iter()
        .chain(l.code_qualname)
        .chain(l.code_code)
        .chain(l.code_firsttraceable)
        .max()
        .unwrap() as u64
            + 8;
        if let Some(off) = l.code_adaptive {
            size = size.max(off as u64 + code_bytes.len() as u64);
        }
        let a = self.alloc_obj("code", round8(size));
        self.write_u64(a, 1);
        self.set_ptr(a + l.ob_type as u64, self.types.code, "code.ob_type");
        self.write(a + l.code_nlocals as u64, &4i32.to_le_bytes());
        self.write(a + l.code_flags as u64, &3i32.to_le_bytes());
        self.set_ptr(a + l.code_filename as u64, filename, "co_filename");
        self.set_ptr(a + l.code_name as u64, name, "co_name");
        if let (Some(off), Some(q)) = (l.code_qualname, qualname) {
            self.set_ptr(a + off as u64, q, "co_qualname");
        }
        self.set_int(
            a + l.code_firstlineno as u64,
            &spec.first_line.to_le_bytes(),
            "co_firstlineno",
        );
        self.set_ptr(a + l.code_linetable as u64, linetable, "co_linetable");
        let (code_start, code_len) = match (l.code_adaptive, l.code_code, co_code) {
            (Some(off), _, _) => {
                // 3.11+: a PyVarObject whose ob_size counts the inline code units.
                let units = code_bytes.len() as u64 / 2;
                self.set_int(a + l.ob_size as u64, &units.to_le_bytes(), "code.ob_size");
                self.write(a + off as u64, &code_bytes);
                (a + off as u64, code_bytes.len() as u64)
            }
            (None, Some(off), Some(b)) => {
                self.set_ptr(a + off as u64, b, "co_code");
                (b + l.bytes_sval as u64, code_bytes.len() as u64)
            }
            _ => (0, 0),
        };
        if let Some(off) = l.code_firsttraceable {
            self.set_int(a + off as u64, &0i32.to_le_bytes(), "_co_firsttraceable");
        }
        CodeObj {
            spec,
            addr: a,
            name,
            qualname,
            filename,
            linetable,
            co_code,
            code_start,
            code_len,
        }
    }

    fn frame_size(&self) -> u64 {
        round8(self.layout.frame_localsplus as u64 + 8 * FRAME_EXTRA_WORDS)
    }

    fn build_thread(&mut self, spec: &ThreadSpec, interp: u64) -> ThreadObj {
        let l = self.layout.clone();
        let size = [
            l.tstate_next,
            l.tstate_interp,
            l.tstate_frame,
            l.tstate_thread_id,
        ]
        .into_iter()
        .chain(l.tstate_native_thread_id)
        .chain(l.tstate_datastack_chunk)
        .chain(l.tstate_datastack_top)
        .max()
        .unwrap() as u64
            + 8
            + 64;
        let ts = self.alloc_obj("tstate", size);
        self.set_ptr(ts + l.tstate_interp as u64, interp, "tstate.interp");
        self.set_int(
            ts + l.tstate_thread_id as u64,
            &spec.thread_id.to_le_bytes(),
            "thread_id",
        );
        if let Some(off) = l.tstate_native_thread_id {
            self.set_int(
                ts + off as u64,
                &spec.native_id.to_le_bytes(),
                "native_thread_id",
            );
        }

        // Frame addresses, leaf first.
        let fsize = self.frame_size();
        let n_py = spec
            .frames
            .iter()
            .filter(|f| matches!(f, FrameSpec::Py { .. }))
            .count() as u64;
        let datastack = match l.frame_kind {
            FrameKind::Interpreter if n_py > 0 => {
                // _PyStackChunk { previous, size, top } then the frames, root first.
                let chunk = self.alloc_obj("datastack", 24 + n_py * fsize);
                self.write_u64(chunk + 8, 24 + n_py * fsize);
                self.write_u64(chunk + 16, 24 + n_py * fsize);
                // The current chunk and the end of its used part, as CPython keeps them.
                if let (Some(c), Some(t)) = (l.tstate_datastack_chunk, l.tstate_datastack_top) {
                    self.write_u64(ts + c as u64, chunk);
                    self.write_u64(ts + t as u64, chunk + 24 + n_py * fsize);
                }
                Some(chunk)
            }
            _ => None,
        };
        let mut frames = Vec::new();
        let mut py_index = 0u64; // from the leaf
        for f in &spec.frames {
            let addr = match (*f, l.frame_kind) {
                (FrameSpec::Shim, FrameKind::Object) => {
                    panic!("shim frames exist only with interpreter frames")
                }
                (FrameSpec::Shim, FrameKind::Interpreter) => {
                    assert!(
                        l.owner_cstack.is_some(),
                        "no C-stack frames in {}.{}",
                        l.major,
                        l.minor
                    );
                    // Entry frames live on the C stack.
                    self.alloc_obj("shim frame", fsize)
                }
                (FrameSpec::Py { .. }, FrameKind::Object) => self.alloc_obj("frame", fsize),
                (FrameSpec::Py { .. }, FrameKind::Interpreter) => {
                    let chunk = datastack.unwrap();
                    let root_index = n_py - 1 - py_index;
                    py_index += 1;
                    chunk + 24 + root_index * fsize
                }
            };
            frames.push(FrameObj { addr, spec: *f });
        }

        let mut expected = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            let back = frames.get(i + 1).map(|b| b.addr).unwrap_or(0);
            let a = f.addr;
            self.set_ptr(a + l.frame_back as u64, back, "frame.back");
            match (f.spec, l.frame_kind) {
                (FrameSpec::Shim, _) => {
                    self.write_u64(a + l.frame_code as u64, 0);
                    self.write_u64(a + l.frame_instr as u64, 0);
                    self.set_int(
                        a + l.frame_owner.unwrap() as u64,
                        &[l.owner_cstack.unwrap()],
                        "frame.owner",
                    );
                }
                (FrameSpec::Py { code, slot }, kind) => {
                    let c = self.codes[code].clone();
                    self.set_ptr(a + l.frame_code as u64, c.addr, "frame.code");
                    let offset = 4 * slot + 2;
                    match kind {
                        FrameKind::Object => {
                            self.write_u64(a, 1);
                            self.write_u64(a + l.ob_type as u64, self.types.frame);
                            let lasti = if (l.major, l.minor) >= (3, 10) {
                                (offset / 2) as i32
                            } else {
                                offset as i32
                            };
                            self.set_int(a + l.frame_instr as u64, &lasti.to_le_bytes(), "f_lasti");
                        }
                        FrameKind::Interpreter => {
                            self.set_ptr(
                                a + l.frame_instr as u64,
                                c.code_start + offset as u64,
                                "frame.instr_ptr",
                            );
                            self.set_int(
                                a + l.frame_owner.unwrap() as u64,
                                &[OWNER_THREAD],
                                "frame.owner",
                            );
                        }
                    }
                    expected.push(ExpectedFrame {
                        function: if l.code_qualname.is_some() {
                            c.spec.qualname.clone()
                        } else {
                            c.spec.name.clone()
                        },
                        file: c.spec.file.clone(),
                        first_line: c.spec.first_line,
                        line: c.line(slot),
                        offset,
                    });
                }
            }
        }

        let top = frames.first().map(|f| f.addr).unwrap_or(0);
        let cframe = match l.cframe_current_frame {
            Some(off) => {
                let cf = self.alloc_obj("cframe", off as u64 + 16);
                self.set_ptr(cf + off as u64, top, "cframe.current_frame");
                self.set_ptr(ts + l.tstate_frame as u64, cf, "tstate.cframe");
                Some(cf)
            }
            None => {
                self.set_ptr(ts + l.tstate_frame as u64, top, "tstate.frame");
                None
            }
        };
        ThreadObj {
            tstate: ts,
            thread_id: spec.thread_id,
            native_id: spec.native_id,
            cframe,
            datastack,
            frames,
            expected,
        }
    }

    // ------------------------------------------------------------------ using the image

    /// A `PythonRuntime` for this image (as discovery would build it).
    pub fn runtime(&self) -> PythonRuntime {
        PythonRuntime {
            version: Version::new(self.layout.major, self.layout.minor, 0),
            layout: self.layout.clone(),
            runtime_addr: self.runtime_addr,
            interp_head_addr: self.interp_head_addr,
            binary: "fake".into(),
            layout_source: "built-in table",
            layout_mismatches: Vec::new(),
            thread_state_current: None,
        }
    }

    pub fn walker(&self, max_depth: usize) -> Walker {
        Walker::new(&self.runtime(), max_depth)
    }

    pub fn main_interp(&self) -> u64 {
        *self.interps.last().unwrap()
    }

    /// Expected stacks per thread, in list order, leaf first.
    pub fn expected(&self) -> Vec<Vec<ExpectedFrame>> {
        self.threads.iter().map(|t| t.expected.clone()).collect()
    }

    /// Every object of the image (regions and, 3.11+, the data-stack chunks).
    pub fn objects(&self) -> &[ObjRef] {
        &self.objects
    }

    /// Every field the walker or the code reader reads.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// Every pointer-holding field.
    pub fn pointer_fields(&self) -> Vec<u64> {
        self.fields
            .iter()
            .filter(|f| f.kind == FieldKind::Ptr)
            .map(|f| f.addr)
            .collect()
    }

    /// Mapped regions as (start, length).
    pub fn regions(&self) -> Vec<(u64, usize)> {
        self.regions.iter().map(|(a, r)| (*a, r.len())).collect()
    }

    /// The region holding `addr`, as (start, length).
    pub fn region_of(&self, addr: u64) -> Option<(u64, usize)> {
        let (start, r) = self.regions.range(..=addr).next_back()?;
        ((addr - start) < r.len() as u64).then_some((*start, r.len()))
    }

    /// An aligned address that no region covers.
    pub fn unmapped(&self) -> u64 {
        HOLE
    }

    // ---- field addresses

    pub fn interp_next_addr(&self, interp: u64) -> u64 {
        interp + self.layout.interp_next as u64
    }
    pub fn interp_tstate_head_addr(&self, interp: u64) -> u64 {
        interp + self.layout.interp_tstate_head as u64
    }
    pub fn tstate_next_addr(&self, ts: u64) -> u64 {
        ts + self.layout.tstate_next as u64
    }
    /// The field holding thread `t`'s top frame (`tstate.frame`, `cframe.current_frame`
    /// or `tstate.current_frame`).
    pub fn top_frame_slot(&self, t: usize) -> u64 {
        let th = &self.threads[t];
        match (th.cframe, self.layout.cframe_current_frame) {
            (Some(cf), Some(off)) => cf + off as u64,
            _ => th.tstate + self.layout.tstate_frame as u64,
        }
    }
    pub fn frame_back_addr(&self, frame: u64) -> u64 {
        frame + self.layout.frame_back as u64
    }
    pub fn frame_code_addr(&self, frame: u64) -> u64 {
        frame + self.layout.frame_code as u64
    }
    pub fn frame_instr_addr(&self, frame: u64) -> u64 {
        frame + self.layout.frame_instr as u64
    }
    pub fn frame_owner_addr(&self, frame: u64) -> Option<u64> {
        self.layout.frame_owner.map(|o| frame + o as u64)
    }
    pub fn ob_type_addr(&self, obj: u64) -> u64 {
        obj + self.layout.ob_type as u64
    }
    pub fn type_name_addr(&self, ty: u64) -> u64 {
        ty + self.layout.type_name as u64
    }
    /// The length field of a `str` (2.7: `ob_size` of the `PyStringObject`).
    pub fn str_length_addr(&self, s: u64) -> u64 {
        match self.layout.string_kind {
            StringKind::Bytes => s + self.layout.ob_size as u64,
            StringKind::Unicode => s + self.layout.unicode_length as u64,
        }
    }
    pub fn str_state_addr(&self, s: u64) -> u64 {
        s + self.layout.unicode_state as u64
    }
    pub fn bytes_size_addr(&self, b: u64) -> u64 {
        b + self.layout.ob_size as u64
    }

    // ---- mutation (the memory is kept in sync)

    pub fn write(&mut self, addr: u64, bytes: &[u8]) {
        let (start, r) = self
            .regions
            .range_mut(..=addr)
            .next_back()
            .unwrap_or_else(|| panic!("write at {addr:#x}: not mapped"));
        let off = (addr - start) as usize;
        assert!(
            off + bytes.len() <= r.len(),
            "write at {addr:#x}: past its region"
        );
        r[off..off + bytes.len()].copy_from_slice(bytes);
        assert!(self.mem.patch(addr, bytes));
    }

    pub fn write_u64(&mut self, addr: u64, v: u64) {
        self.write(addr, &v.to_le_bytes());
    }
    pub fn write_u32(&mut self, addr: u64, v: u32) {
        self.write(addr, &v.to_le_bytes());
    }
    pub fn write_u8(&mut self, addr: u64, v: u8) {
        self.write(addr, &[v]);
    }
    pub fn read_u64(&self, addr: u64) -> u64 {
        self.mem.read_u64(addr).expect("read_u64 of the image")
    }

    /// Write `bytes` where mapped; bytes that fall outside any region are dropped.
    pub fn write_lossy(&mut self, addr: u64, bytes: &[u8]) {
        for (i, b) in bytes.iter().enumerate() {
            let a = addr + i as u64;
            if self.region_of(a).is_some() {
                self.write(a, &[*b]);
            }
        }
    }

    /// Unmap the whole region holding `addr`.
    pub fn unmap(&mut self, addr: u64) {
        let (start, _) = self.region_of(addr).expect("unmap: not mapped");
        self.regions.remove(&start);
        // FakeMemory has no unmap: an empty region makes every read from `start` up to the
        // next region fail, exactly like a hole.
        self.mem.map(start, Vec::new());
    }

    /// Cut the region holding `addr` to `len` bytes (0: unmap it).
    pub fn truncate(&mut self, addr: u64, len: usize) {
        let (start, _) = self.region_of(addr).expect("truncate: not mapped");
        if len == 0 {
            return self.unmap(start);
        }
        let r = self.regions.get_mut(&start).unwrap();
        r.truncate(len);
        self.mem.map(start, r.clone());
    }

    /// Map a new region holding `data`; returns its address.
    pub fn map_new(&mut self, data: Vec<u8>) -> u64 {
        let a = self.alloc(data.len() as u64);
        self.write(a, &data);
        a
    }

    /// 3.12+: instrument code object `code` for line events, as `sys.monitoring` /
    /// `sys.settrace` do: every instruction becomes `INSTRUMENTED_LINE`, and the code's
    /// `_co_monitoring` data gets a `lines` table holding each one's original opcode
    /// (`original`). Returns (the monitoring data, the lines table).
    pub fn instrument_lines(&mut self, code: usize, original: u8) -> (u64, u64) {
        let l = self.layout.clone();
        let (mon_off, lines_off, per_off, entry) = (
            l.code_monitoring.expect("no _co_monitoring in this layout"),
            l.monitoring_lines.unwrap(),
            l.monitoring_per_instruction_opcodes.unwrap(),
            l.monitoring_line_entry_size.unwrap() as u64,
        );
        let table = pyprof::code::opcodes::table_for(l.major, l.minor, l.free_threaded)
            .expect("an opcode table");
        let line_op = table.opcode("INSTRUMENTED_LINE").unwrap();
        let c = self.codes[code].clone();
        let units = c.code_len / 2;
        for u in 0..units {
            self.write_u8(c.code_start + 2 * u, line_op);
        }
        // Fixed entries (3.12, early 3.13): { uint8 original_opcode; int8 line_delta; } per
        // code unit. Variable entries (late 3.13, 3.14+; entry size 0 in the layout):
        // { uint8 bytes_per_entry; uint8 data[] }, each entry's first byte the opcode.
        let (entry, data) = if entry == 0 {
            (2, l.monitoring_line_data.unwrap_or(1) as u64)
        } else {
            (entry, l.monitoring_line_data.unwrap_or(0) as u64)
        };
        let lines = self.alloc_obj("monitoring lines", data + units * entry);
        if l.monitoring_line_entry_size == Some(0) {
            self.set_int(lines, &[entry as u8], "lines.bytes_per_entry");
        }
        for u in 0..units {
            self.set_int(
                lines + data + u * entry,
                &[original],
                "lines.original_opcode",
            );
        }
        let mon = self.alloc_obj("monitoring", lines_off.max(per_off) as u64 + 8);
        self.set_ptr(mon + lines_off as u64, lines, "monitoring.lines");
        self.set_ptr(
            mon + per_off as u64,
            0,
            "monitoring.per_instruction_opcodes",
        );
        self.set_ptr(c.addr + mon_off as u64, mon, "co_monitoring");
        (mon, lines)
    }

    /// A new type object named `name`.
    pub fn new_type(&mut self, name: &str) -> u64 {
        let mut s = name.as_bytes().to_vec();
        s.resize(64, 0);
        let cstr = self.map_new(s);
        let t = self.alloc_obj("type", 416);
        self.write_u64(t, 1);
        let tt = self.types.type_;
        self.write_u64(t + self.layout.ob_type as u64, tt);
        self.write_u64(t + self.layout.type_name as u64, cstr);
        t
    }
}
