//! `_Py_DebugOffsets`: the table of offsets CPython 3.13+ keeps at the start of
//! `_PyRuntime` for out-of-process tools (cookie `xdebugpy`).
//!
//! The table is a sequence of `uint64_t`s whose order is fixed per minor version; the
//! schema below lists the field names in order (copied from the header's struct, checked
//! by a test against the headers). A `Layout` is built from the target's values, taking
//! from our own table only what the debug offsets do not carry.

use super::debug_schemas::SCHEMAS;
use super::layout::Layout;
use crate::process::Memory;
use std::collections::HashMap;

pub const COOKIE: &[u8; 8] = b"xdebugpy";

/// The schema for a minor version: its own, or for a newer version than we know, the
/// newest one (its sections grow at the end; values are sanity-checked after reading).
pub fn schema_for(minor: u8) -> (u8, &'static [&'static str]) {
    let mut best = SCHEMAS[0];
    for s in SCHEMAS {
        if s.1 <= minor {
            best = *s;
        }
    }
    (best.1, best.2)
}

/// The target's debug offsets, by field name.
#[derive(Clone, Debug, Default)]
pub struct DebugOffsets {
    pub values: HashMap<&'static str, u64>,
}

impl DebugOffsets {
    /// Read the table at `runtime` (the address of `_PyRuntime`). None if the cookie is absent.
    pub fn read(mem: &dyn Memory, runtime: u64) -> Option<DebugOffsets> {
        let mut head = [0u8; 16];
        mem.read(runtime, &mut head).ok()?;
        if &head[..8] != COOKIE {
            return None;
        }
        let hex = u64::from_le_bytes(head[8..16].try_into().ok()?);
        let minor = (hex >> 16) as u8;
        let (_, schema) = schema_for(minor);
        let mut raw = vec![0u8; schema.len() * 8];
        mem.read(runtime + 8, &mut raw).ok()?;
        let values = schema
            .iter()
            .zip(raw.chunks_exact(8))
            .map(|(name, c)| (*name, u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))))
            .collect();
        let d = DebugOffsets { values };
        d.plausible().then_some(d)
    }

    /// Do the values look like offsets of this layout (and not a misread schema)?
    fn plausible(&self) -> bool {
        let small = |n: &str, max: u64| self.get(n).map(|v| v < max).unwrap_or(false);
        matches!(self.get("pyobject.ob_type"), Some(8) | Some(16) | Some(24))
            && small("thread_state.next", 4096)
            && small("interpreter_frame.previous", 256)
            && small("code_object.filename", 1024)
            && small("unicode_object.asciiobject_size", 256)
            && small("interpreter_state.threads_head", 1 << 20)
    }

    pub fn get(&self, name: &str) -> Option<u64> {
        self.values.get(name).copied()
    }

    pub fn version_hex(&self) -> u32 {
        self.get("version").unwrap_or(0) as u32
    }

    pub fn free_threaded(&self) -> bool {
        self.get("free_threaded").unwrap_or(0) != 0
    }

    /// Build a layout from the target's table; `base` supplies what the table lacks.
    /// Returns the layout and the fields where the target disagrees with `base`.
    pub fn to_layout(&self, base: &Layout) -> (Layout, Vec<String>) {
        let mut l = base.clone();
        let mut diffs = Vec::new();
        let mut set = |field: &mut u32, name: &str, value: Option<u64>| {
            if let Some(v) = value {
                let v = v as u32;
                if *field != v {
                    diffs.push(format!("{name}: table {} target {}", *field, v));
                    *field = v;
                }
            }
        };
        let g = |n: &str| self.get(n);
        let mut interp_head = base.runtime_interp_head.unwrap_or(0);
        set(
            &mut interp_head,
            "runtime_interp_head",
            g("runtime_state.interpreters_head"),
        );
        l.runtime_interp_head = Some(interp_head);
        set(
            &mut l.interp_next,
            "interp_next",
            g("interpreter_state.next"),
        );
        set(
            &mut l.interp_tstate_head,
            "interp_tstate_head",
            g("interpreter_state.threads_head"),
        );
        let mut gil_ptr = base.interp_gil_ptr.unwrap_or(0);
        set(
            &mut gil_ptr,
            "interp_gil_ptr",
            g("interpreter_state.ceval_gil"),
        );
        l.interp_gil_ptr = Some(gil_ptr);
        if let Some(gil) = g("interpreter_state.gil_runtime_state") {
            let mut holder = base.gil_last_holder.unwrap_or(0);
            let mut locked = base.gil_locked.unwrap_or(0);
            set(
                &mut holder,
                "gil_last_holder",
                g("interpreter_state.gil_runtime_state_holder").map(|v| v.wrapping_sub(gil)),
            );
            set(
                &mut locked,
                "gil_locked",
                g("interpreter_state.gil_runtime_state_locked").map(|v| v.wrapping_sub(gil)),
            );
            l.gil_last_holder = Some(holder);
            l.gil_locked = Some(locked);
        }
        set(&mut l.tstate_next, "tstate_next", g("thread_state.next"));
        set(
            &mut l.tstate_interp,
            "tstate_interp",
            g("thread_state.interp"),
        );
        set(
            &mut l.tstate_frame,
            "tstate_frame",
            g("thread_state.current_frame"),
        );
        set(
            &mut l.tstate_thread_id,
            "tstate_thread_id",
            g("thread_state.thread_id"),
        );
        let mut native = base.tstate_native_thread_id.unwrap_or(0);
        set(
            &mut native,
            "tstate_native_thread_id",
            g("thread_state.native_thread_id"),
        );
        l.tstate_native_thread_id = Some(native);
        set(
            &mut l.frame_back,
            "frame_back",
            g("interpreter_frame.previous"),
        );
        set(
            &mut l.frame_code,
            "frame_code",
            g("interpreter_frame.executable"),
        );
        set(
            &mut l.frame_instr,
            "frame_instr",
            g("interpreter_frame.instr_ptr"),
        );
        set(
            &mut l.frame_localsplus,
            "frame_localsplus",
            g("interpreter_frame.localsplus"),
        );
        let mut owner = base.frame_owner.unwrap_or(0);
        set(&mut owner, "frame_owner", g("interpreter_frame.owner"));
        l.frame_owner = Some(owner);
        set(
            &mut l.code_filename,
            "code_filename",
            g("code_object.filename"),
        );
        set(&mut l.code_name, "code_name", g("code_object.name"));
        let mut qual = base.code_qualname.unwrap_or(0);
        set(&mut qual, "code_qualname", g("code_object.qualname"));
        l.code_qualname = Some(qual);
        set(
            &mut l.code_linetable,
            "code_linetable",
            g("code_object.linetable"),
        );
        set(
            &mut l.code_varnames,
            "code_varnames",
            g("code_object.localsplusnames"),
        );
        set(
            &mut l.code_firstlineno,
            "code_firstlineno",
            g("code_object.firstlineno"),
        );
        let mut adaptive = base.code_adaptive.unwrap_or(0);
        set(
            &mut adaptive,
            "code_adaptive",
            g("code_object.co_code_adaptive"),
        );
        l.code_adaptive = Some(adaptive);
        set(&mut l.ob_type, "ob_type", g("pyobject.ob_type"));
        set(&mut l.type_name, "type_name", g("type_object.tp_name"));
        set(&mut l.tuple_item, "tuple_item", g("tuple_object.ob_item"));
        set(&mut l.bytes_sval, "bytes_sval", g("bytes_object.ob_sval"));
        set(
            &mut l.unicode_state,
            "unicode_state",
            g("unicode_object.state"),
        );
        set(
            &mut l.unicode_length,
            "unicode_length",
            g("unicode_object.length"),
        );
        set(
            &mut l.unicode_ascii_size,
            "unicode_ascii_size",
            g("unicode_object.asciiobject_size"),
        );
        // Objects read to name threads (`runtime::objects`).
        set(
            &mut l.interp_modules,
            "interp_modules",
            g("interpreter_state.imports_modules"),
        );
        set(&mut l.type_flags, "type_flags", g("type_object.tp_flags"));
        set(
            &mut l.type_basicsize,
            "type_basicsize",
            g("type_object.tp_basicsize"),
        );
        set(
            &mut l.type_dictoffset,
            "type_dictoffset",
            g("type_object.tp_dictoffset"),
        );
        for (field, name, value) in [
            (
                &mut l.heaptype_cached_keys,
                "heaptype_cached_keys",
                g("heap_type_object.ht_cached_keys"),
            ),
            (&mut l.dict_keys, "dict_keys", g("dict_object.ma_keys")),
            (
                &mut l.dict_values,
                "dict_values",
                g("dict_object.ma_values"),
            ),
            (&mut l.long_lv_tag, "long_lv_tag", g("long_object.lv_tag")),
            // 3.14+ free-threaded: thread-local bytecode (0 in a default build's table).
            (
                &mut l.frame_tlbc_index,
                "frame_tlbc_index",
                g("interpreter_frame.tlbc_index").filter(|&v| v != 0),
            ),
            (
                &mut l.code_tlbc,
                "code_tlbc",
                g("code_object.co_tlbc").filter(|&v| v != 0),
            ),
        ] {
            if value.is_some() {
                let mut v = field.unwrap_or(0);
                set(&mut v, name, value);
                *field = Some(v);
            }
        }
        set(&mut l.long_digits, "long_digits", g("long_object.ob_digit"));
        l.free_threaded = self.free_threaded();
        (l, diffs)
    }
}
