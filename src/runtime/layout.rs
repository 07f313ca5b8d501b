//! `Layout`: every offset and size the walker reads, for one CPython minor version.
//!
//! A supported version is data, not code: the tables under `layouts/` are generated from
//! each interpreter's own headers (`scripts/gen_layouts.py` compiles a C probe with
//! `offsetof`), and a test re-runs the probe and fails on any difference. For 3.13+ the
//! layout is read from the target's own `_Py_DebugOffsets`, with the table as a cross-check.
//!
//! Offsets are in bytes from the start of the named struct. `None` means the field does not
//! exist in that version.

use serde::Serialize;

/// How a version stores its frames: the one place where the walker's *shape* differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum FrameKind {
    /// ≤3.10: heap `PyFrameObject`s linked by `f_back`; `f_lasti` is an int.
    Object,
    /// 3.11+: `_PyInterpreterFrame`s on the thread's data stack linked by `previous`;
    /// the instruction is a pointer into `co_code_adaptive`.
    Interpreter,
}

/// How the interpreter stores `str` (names and file names of code objects).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum StringKind {
    /// Python 2 `PyStringObject` (bytes with `ob_size` and `ob_sval`).
    Bytes,
    /// PEP 393 compact unicode (3.3+).
    Unicode,
}

/// How the line table of a code object is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum LineTableKind {
    /// ≤3.9 `co_lnotab` (line deltas unsigned before 3.6, signed from 3.6).
    Lnotab,
    /// 3.10 `co_linetable` (PEP 626).
    Pep626,
    /// 3.11+ `co_linetable` location table (PEP 657).
    Pep657,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Layout {
    pub major: u8,
    pub minor: u8,
    pub free_threaded: bool,
    pub frame_kind: FrameKind,
    pub string_kind: StringKind,
    pub line_table: LineTableKind,

    // ---- _PyRuntimeState (3.7+; None before, where `interp_head` is a static variable)
    /// `_PyRuntime.interpreters.head`
    pub runtime_interp_head: Option<u32>,
    /// `_PyRuntime.interpreters.main`
    pub runtime_interp_main: Option<u32>,
    /// `_PyRuntime.ceval.gil.last_holder` (3.7–3.11: the GIL lives in the runtime)
    pub runtime_gil_last_holder: Option<u32>,
    /// `_PyRuntime.ceval.gil.locked`
    pub runtime_gil_locked: Option<u32>,

    // ---- PyInterpreterState
    pub interp_next: u32,
    /// `tstate_head` (≤3.10) or `threads.head` (3.11+)
    pub interp_tstate_head: u32,
    /// 3.12+: `interp->ceval.gil`, a pointer to `struct _gil_runtime_state`
    pub interp_gil_ptr: Option<u32>,
    /// 3.12+: `_gil_runtime_state.last_holder` / `.locked`
    pub gil_last_holder: Option<u32>,
    pub gil_locked: Option<u32>,

    // ---- PyThreadState
    pub tstate_next: u32,
    pub tstate_interp: u32,
    /// ≤3.10 `frame` (PyFrameObject*); 3.11/3.12 `cframe` (_PyCFrame*); 3.13+ `current_frame`
    pub tstate_frame: u32,
    /// 3.11/3.12: `_PyCFrame.current_frame`
    pub cframe_current_frame: Option<u32>,
    /// `thread_id` (pthread_t)
    pub tstate_thread_id: u32,
    /// 3.11+: `native_thread_id` (the OS thread id)
    pub tstate_native_thread_id: Option<u32>,
    /// 3.11+: `datastack_chunk`, the current `_PyStackChunk` holding the thread's frames
    pub tstate_datastack_chunk: Option<u32>,
    /// 3.11+: `datastack_top`, the end of the used part of the current chunk
    pub tstate_datastack_top: Option<u32>,
    /// 3.11+: `_PyStackChunk.previous`, `.top` (saved top of a non-current chunk), `.data`
    pub chunk_previous: Option<u32>,
    pub chunk_top: Option<u32>,
    pub chunk_data: Option<u32>,

    // ---- frames: PyFrameObject (≤3.10) or _PyInterpreterFrame (3.11+)
    /// `f_back` or `previous`
    pub frame_back: u32,
    /// `f_code` (≤3.12) or `f_executable` (3.13+)
    pub frame_code: u32,
    /// `f_lasti` (int, ≤3.10), `prev_instr` (3.11/3.12) or `instr_ptr` (3.13+)
    pub frame_instr: u32,
    /// 3.11+: `owner` (char)
    pub frame_owner: Option<u32>,
    /// 3.11: `is_entry` (bool), set on the frame a C call of the eval loop started with
    /// (3.12+ mark that boundary with a frame of its own, `owner_cstack`/`owner_interpreter`)
    pub frame_is_entry: Option<u32>,
    /// `f_localsplus` or `localsplus`
    pub frame_localsplus: u32,
    /// 3.14+ free-threaded: `tlbc_index` (int32), the index in `co_tlbc` of the bytecode
    /// copy `instr_ptr` points into
    pub frame_tlbc_index: Option<u32>,
    /// Low bits of the frame's code pointer that are tags, not address (3.14+
    /// `_PyStackRef`); 0 where it is a plain pointer
    pub frame_code_tag_mask: u8,
    /// The top of a suspended frame's value stack: `f_stacktop` (pointer, ≤3.9),
    /// `f_stackdepth` (int, 3.10: a depth in `f_valuestack`), `stacktop` (int,
    /// 3.11–3.13: an index into `localsplus`) or `stackpointer` (pointer, 3.14+)
    pub frame_stack: u32,
    /// ≤3.10: `f_valuestack` (where the value stack starts)
    pub frame_valuestack: Option<u32>,
    /// Where a generator or coroutine keeps its frame: `gi_frame` (a frame object,
    /// ≤3.10) or `gi_iframe` (the frame itself, embedded, 3.11+)
    pub gen_frame: u32,
    /// 3.11+: `gi_frame_state` (int8), and the range of its values that mean the
    /// generator is suspended (`FRAME_SUSPENDED` … the last `FRAME_SUSPENDED_*`, as the
    /// bytes they are stored as)
    pub gen_frame_state: Option<u32>,
    pub gen_suspended_first: Option<u8>,
    pub gen_suspended_last: Option<u8>,
    /// 3.10: the frame object's `f_state` (int8); 3.11+ keep the state in the generator
    pub frame_state: Option<u32>,
    /// 3.10+: `FRAME_EXECUTING`, the state of a generator running now (≤3.9: its frame's
    /// `f_stacktop` is NULL while it runs)
    pub gen_executing: Option<u8>,
    /// `owner` value of C-stack/shim frames to skip (3.12/3.13: 3, 3.14: 4)
    pub owner_cstack: Option<u8>,
    /// `owner` value of `FRAME_OWNED_BY_INTERPRETER` (3.14+: 3)
    pub owner_interpreter: Option<u8>,

    // ---- PyCodeObject
    pub code_filename: u32,
    pub code_name: u32,
    /// 3.11+: `co_qualname`
    pub code_qualname: Option<u32>,
    pub code_firstlineno: u32,
    /// `co_lnotab` (≤3.9) or `co_linetable` (3.10+): a bytes object
    pub code_linetable: u32,
    /// ≤3.10: `co_code`, a bytes object
    pub code_code: Option<u32>,
    /// 3.11+: offset of `co_code_adaptive` (the bytecode lives inline in the code object)
    pub code_adaptive: Option<u32>,
    /// 3.11+: `_co_firsttraceable`
    pub code_firsttraceable: Option<u32>,
    /// 3.14+ free-threaded: `co_tlbc`, a `_PyCodeArray *` of each thread's copy of the
    /// bytecode (entry 0 is `co_code_adaptive` itself)
    pub code_tlbc: Option<u32>,
    /// 3.14+ free-threaded: `size` and `entries` (a `char *` per thread-local copy) in
    /// `_PyCodeArray`
    pub code_array_size: Option<u32>,
    pub code_array_entries: Option<u32>,
    /// `co_nlocalsplus` (3.11+) or `co_nlocals` (≤3.10)
    pub code_nlocals: u32,
    /// `co_localsplusnames` (3.11+) or `co_varnames` (≤3.10): a tuple of the local names
    pub code_varnames: u32,
    /// `co_flags`
    pub code_flags: u32,
    /// `co_argcount` (positional parameters, positional-only ones included): the first
    /// locals are the arguments
    pub code_argcount: u32,
    /// `co_kwonlyargcount` (3.x): keyword-only parameters, after the positional ones
    pub code_kwonlyargcount: Option<u32>,
    /// 3.12/3.13: `_co_monitoring` (a `_PyCoMonitoringData *`, set while instrumented)
    pub code_monitoring: Option<u32>,
    /// `_PyCoMonitoringData.lines`: per code unit, the opcode an `INSTRUMENTED_LINE` replaced
    pub monitoring_lines: Option<u32>,
    /// `_PyCoMonitoringData.per_instruction_opcodes` (for `INSTRUMENTED_INSTRUCTION`)
    pub monitoring_per_instruction_opcodes: Option<u32>,
    /// `sizeof(_PyCoLineInstrumentationData)` per code unit (3.12/3.13); 0 on 3.14+, where
    /// the table's first byte (`bytes_per_entry`) gives it
    pub monitoring_line_entry_size: Option<u32>,
    /// Where the entries start in the line table (the original opcode is an entry's
    /// first byte): 0 on 3.12/3.13, `offsetof(data)` on 3.14+
    pub monitoring_line_data: Option<u32>,

    // ---- object headers
    /// `ob_type` in PyObject
    pub ob_type: u32,
    /// `ob_size` in PyVarObject (also the number of code units of a 3.11+ code object)
    pub ob_size: u32,
    /// `tp_name` in PyTypeObject
    pub type_name: u32,
    /// `ob_item` in PyTupleObject (3.14 put a hash cache before it)
    pub tuple_item: u32,

    // ---- bytes and strings
    /// `ob_sval` in PyBytesObject (Python 2: PyStringObject)
    pub bytes_sval: u32,
    /// `state` in PyASCIIObject
    pub unicode_state: u32,
    /// `length` in PyASCIIObject
    pub unicode_length: u32,
    /// `sizeof(PyASCIIObject)`: where the characters of a compact ASCII string start
    pub unicode_ascii_size: u32,
    /// `sizeof(PyCompactUnicodeObject)`: where the characters of other compact strings start
    pub unicode_compact_size: u32,
    /// bit position of `state.kind` (3 bits); `compact` and `ascii` follow it
    pub unicode_kind_shift: u8,

    // ---- objects read to name threads (`runtime::objects`): sys.modules → threading →
    // `_active` → Thread `_name`
    /// `sys.modules` in PyInterpreterState: `modules` (≤3.11) or `imports.modules` (3.12+)
    pub interp_modules: u32,
    /// `md_dict` in PyModuleObject
    pub module_dict: u32,
    /// `tp_flags`, `tp_basicsize`, `tp_dictoffset` in PyTypeObject
    pub type_flags: u32,
    pub type_basicsize: u32,
    pub type_dictoffset: u32,
    /// 3.x: `ht_cached_keys` in PyHeapTypeObject (the keys shared by instances' split dicts)
    pub heaptype_cached_keys: Option<u32>,
    /// `Py_TPFLAGS_*_SUBCLASS` bits: 2.7 `int`; `long`; `str` (3.x unicode, 2.7 bytes); `dict`
    pub tpflags_int_subclass: Option<u64>,
    pub tpflags_long_subclass: u64,
    pub tpflags_str_subclass: u64,
    pub tpflags_dict_subclass: u64,
    /// 3.11+: `Py_TPFLAGS_MANAGED_DICT` (the instance dict lives before the object)
    pub tpflags_managed_dict: Option<u64>,
    /// 3.13+: `Py_TPFLAGS_INLINE_VALUES` (attribute values inline at `tp_basicsize`)
    pub tpflags_inline_values: Option<u64>,
    /// 3.11+: bytes before an object where its managed dict pointer is
    /// (3.12: the slot that holds the dict or, tagged, the values pointer)
    pub managed_dict_before: Option<u32>,
    /// 3.11/3.12: bytes before an object where its values pointer is
    pub managed_values_before: Option<u32>,
    /// 3.12: a values pointer is stored minus this tag (low bit set); a dict pointer as is
    pub managed_values_tag: Option<u8>,
    /// 3.x: `ma_keys`, `ma_values` in PyDictObject
    pub dict_keys: Option<u32>,
    pub dict_values: Option<u32>,
    /// 2.7: `ma_mask`, `ma_table` in PyDictObject
    pub dict_mask: Option<u32>,
    pub dict_table: Option<u32>,
    /// 3.6–3.10: `dk_size` in PyDictKeysObject (the index width follows from it)
    pub dictkeys_size: Option<u32>,
    /// 3.11+: `dk_log2_size`, `dk_log2_index_bytes`, `dk_kind` (one byte each)
    pub dictkeys_log2_size: Option<u32>,
    pub dictkeys_log2_index_bytes: Option<u32>,
    pub dictkeys_kind: Option<u32>,
    /// 3.11+: `DICT_KEYS_GENERAL`: keys of that kind have `PyDictKeyEntry`s, the others
    /// `PyDictUnicodeEntry`s
    pub dictkeys_kind_general: Option<u8>,
    /// 3.x: `dk_nentries`, `dk_indices` (entries follow the indices)
    pub dictkeys_nentries: Option<u32>,
    pub dictkeys_indices: Option<u32>,
    /// `PyDictKeyEntry` (2.7: `PyDictEntry`): size, `me_hash`, `me_key`, `me_value`
    pub dict_entry_size: u32,
    pub dict_entry_hash: u32,
    pub dict_entry_key: u32,
    pub dict_entry_value: u32,
    /// 3.11+: `PyDictUnicodeEntry`: size, `me_key`, `me_value`
    pub dict_unicode_entry_size: Option<u32>,
    pub dict_unicode_entry_key: Option<u32>,
    pub dict_unicode_entry_value: Option<u32>,
    /// 3.x: where a split table's value pointers start in `ma_values` (≤3.10: 0, the array
    /// itself; 3.11+: `offsetof(PyDictValues, values)`)
    pub dict_values_values: Option<u32>,
    /// 3.13+: `capacity` and `valid` (one byte each) in PyDictValues
    pub dict_values_capacity: Option<u32>,
    pub dict_values_valid: Option<u32>,
    /// 2.7: `ob_ival` in PyIntObject
    pub int_ival: Option<u32>,
    /// `ob_digit` in PyLongObject (3.12+: `long_value.ob_digit`)
    pub long_digits: u32,
    /// 3.12+: `long_value.lv_tag` (≤3.11: `ob_size` is the signed digit count)
    pub long_lv_tag: Option<u32>,
    /// 3.12+: `_PyLong_NON_SIZE_BITS` (the digit count is `lv_tag >>` this)
    pub long_non_size_bits: Option<u8>,
    /// `PyLong_SHIFT` (bits per digit) and `sizeof(digit)`
    pub long_shift: u8,
    pub long_digit_size: u8,
}
