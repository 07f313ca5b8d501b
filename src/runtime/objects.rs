//! Reading a few kinds of Python objects out of the target, without running code in it:
//! dicts, ints, strings, module dicts and instance attributes. Used to name threads as
//! `threading.current_thread().name` does:
//!
//! `interp->modules` (3.12+: `interp->imports.modules`, i.e. `sys.modules`) → the
//! `threading` module → its `md_dict` → `_active` (thread ident → `Thread`) → each
//! Thread's `_name` (2.7: `_Thread__name`).
//!
//! Every offset, size and flag comes from the `Layout` (generated from each version's
//! headers); the only branches are on *shape*:
//!
//! - dicts: 2.7 open-addressing table (`ma_table`, `ma_mask`); 3.6–3.10 compact dict
//!   (`dk_size`, indices of variable width, then `PyDictKeyEntry`s); 3.11+ compact dict with
//!   `dk_log2_index_bytes` and, for str-only keys, `PyDictUnicodeEntry`s; split tables
//!   (`ma_values`) in every 3.x.
//! - instance attributes: `tp_dictoffset` (≤3.10); 3.11 managed dict and values pointers
//!   before the object; 3.12 one tagged dict-or-values slot; 3.13+ values inline at
//!   `tp_basicsize` (with a `valid` flag) or a managed dict. Values are paired with the
//!   type's shared keys (`ht_cached_keys`).
//! - ints: 2.7 `PyIntObject`; `PyLongObject` digits with a signed `ob_size` (≤3.11) or
//!   `lv_tag` (3.12+).
//!
//! Every read is bounded and failure-tolerant: what cannot be read is absent from the
//! result, never an error or a panic. An object's header and first fields are read in one
//! go, and what every instance shares (types, keys tables, interned key strings) once per
//! pass, so naming a thread costs about 3 (3.13+) to 6 (≤3.10) reads.

use crate::process::Memory;
use crate::runtime::layout::{Layout, StringKind};
use std::cell::RefCell;
use std::collections::HashMap;

/// Most entries of a dict we read (sys.modules of a large program has a few thousand).
pub const MAX_DICT_ENTRIES: u64 = 1 << 16;
/// Most threads named per call.
pub const MAX_THREADS: usize = 10_000;

/// Could this be the address of an object of the target (aligned, in user space)?
fn plausible(p: u64) -> bool {
    (0x1000..=0x0000_ffff_ffff_ffff).contains(&p) && p & 7 == 0
}

fn le_u64(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(off..off.checked_add(8)?)?.try_into().ok()?,
    ))
}

fn le_u32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// Is `b` (the first bytes of a str object) the string `want`, whose characters start at
/// `hdr`? Only a compact ASCII string (3.x) keeps its characters right after the header.
fn str_is(l: &Layout, b: &[u8], hdr: usize, len_off: u32, want: &[u8]) -> bool {
    if le_u64(b, len_off as usize) != Some(want.len() as u64) || b.get(hdr..) != Some(want) {
        return false;
    }
    if l.string_kind == StringKind::Unicode {
        let Some(state) = le_u32(b, l.unicode_state as usize) else {
            return false;
        };
        let kind = (state >> l.unicode_kind_shift) & 7;
        let compact = (state >> (l.unicode_kind_shift + 3)) & 1;
        let ascii = (state >> (l.unicode_kind_shift + 4)) & 1;
        return (kind, compact, ascii) == (1, 1, 1);
    }
    true
}

/// One live entry of a dict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DictEntry {
    /// Index in the entries table (the index into a split table's values).
    pub index: usize,
    pub key: u64,
    pub value: u64,
}

/// What we use of a type object.
#[derive(Clone, Copy, Debug)]
struct TypeInfo {
    flags: u64,
    basicsize: i64,
    dictoffset: i64,
}

/// A reader of the target's objects for one layout. It caches what it learns (types, keys
/// tables, which key objects are which strings, the last few objects read whole), so it
/// sees a snapshot: make one per pass (as `thread_names` does), not one for the session.
pub struct Objects<'a> {
    mem: &'a dyn Memory,
    l: &'a Layout,
    types: RefCell<HashMap<u64, Option<TypeInfo>>>,
    /// (type, attribute name) → index of the name in the type's shared keys.
    cached_index: RefCell<HashMap<(u64, &'static str), Option<usize>>>,
    /// (key object, str) → whether the key is that str.
    key_matches: RefCell<HashMap<(u64, usize), bool>>,
    /// (keys table, str key) → its entry.
    key_cache: RefCell<HashMap<(u64, usize), Option<DictEntry>>>,
    /// The strs looked up, numbered (for the caches above).
    names: RefCell<Vec<String>>,
    /// Objects read whole (header and first fields in one read): the last few, newest last.
    windows: RefCell<Vec<(u64, Vec<u8>)>>,
}

/// Windows kept per `Objects`.
const MAX_WINDOWS: usize = 4;
/// How much of an object a window holds after its start: the header, the first fields, a
/// short string's characters, the first inline values.
const WINDOW: usize = 128;

/// Reads through the windows first, then the target.
impl Memory for Objects<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), crate::process::MemoryError> {
        if let Some(end) = addr.checked_add(buf.len() as u64) {
            for (start, data) in self.windows.borrow().iter().rev() {
                if *start <= addr && end <= start + data.len() as u64 {
                    let off = (addr - start) as usize;
                    buf.copy_from_slice(&data[off..off + buf.len()]);
                    return Ok(());
                }
            }
        }
        self.mem.read(addr, buf)
    }
}

impl<'a> Objects<'a> {
    pub fn new(mem: &'a dyn Memory, l: &'a Layout) -> Objects<'a> {
        Objects {
            mem,
            l,
            types: RefCell::new(HashMap::new()),
            cached_index: RefCell::new(HashMap::new()),
            key_matches: RefCell::new(HashMap::new()),
            key_cache: RefCell::new(HashMap::new()),
            names: RefCell::new(Vec::new()),
            windows: RefCell::new(Vec::new()),
        }
    }

    fn ptr(&self, addr: u64) -> Option<u64> {
        self.read_u64(addr).ok()
    }

    /// Read `len` bytes at `start` in one go, so that the reads of an object's fields that
    /// follow cost nothing. Fails silently (a window across the end of a mapping): the
    /// fields are then read one by one.
    fn window(&self, start: u64, len: usize) {
        if !plausible(start & !7) {
            return;
        }
        if let Ok(data) = self.mem.read_vec(start, len) {
            let mut w = self.windows.borrow_mut();
            if w.len() >= MAX_WINDOWS {
                w.remove(0);
            }
            w.push((start, data));
        }
    }

    /// `ob_type` of an object.
    pub fn type_of(&self, obj: u64) -> Option<u64> {
        if !plausible(obj) {
            return None;
        }
        let t = self.ptr(obj.checked_add(self.l.ob_type as u64)?)?;
        plausible(t).then_some(t)
    }

    fn type_info(&self, tp: u64) -> Option<TypeInfo> {
        if let Some(t) = self.types.borrow().get(&tp) {
            return *t;
        }
        let l = self.l;
        let offs = [l.type_flags, l.type_basicsize, l.type_dictoffset];
        let start = *offs.iter().min()? as u64;
        let end = *offs.iter().max()? as u64 + 8;
        let info = self
            .mem
            .read_vec(tp + start, (end - start) as usize)
            .ok()
            .and_then(|b| {
                let at = |o: u32| le_u64(&b, (o as u64 - start) as usize);
                Some(TypeInfo {
                    flags: at(l.type_flags)?,
                    basicsize: at(l.type_basicsize)? as i64,
                    dictoffset: at(l.type_dictoffset)? as i64,
                })
            });
        self.types.borrow_mut().insert(tp, info);
        info
    }

    fn flags_of(&self, obj: u64) -> Option<u64> {
        Some(self.type_info(self.type_of(obj)?)?.flags)
    }

    /// `tp_name` of an object's type (at most 64 bytes of it).
    pub fn type_name(&self, obj: u64) -> Option<String> {
        let tp = self.type_of(obj)?;
        let name = self.ptr(tp.checked_add(self.l.type_name as u64)?)?;
        if !(0x1000..=0x0000_ffff_ffff_ffff).contains(&name) {
            return None;
        }
        let mut buf = [0u8; 64];
        // The name may end near the end of a mapping: read less if need be.
        let n = [64usize, 32, 16]
            .into_iter()
            .find(|&n| self.mem.read(name, &mut buf[..n]).is_ok())?;
        let end = buf[..n].iter().position(|&c| c == 0)?;
        String::from_utf8(buf[..end].to_vec()).ok()
    }

    /// Item `i` of a tuple, if it is one and has that many items.
    pub fn tuple_item(&self, tuple: u64, i: u64) -> Option<u64> {
        if !plausible(tuple) {
            return None;
        }
        let n = self.ptr(tuple.checked_add(self.l.ob_size as u64)?)?;
        if i >= n || n > 1 << 20 {
            return None;
        }
        let item = self.ptr(tuple + self.l.tuple_item as u64 + 8 * i)?;
        plausible(item).then_some(item)
    }

    /// Bytes of a `PyObject` header (`ob_type` is its last field in every build).
    pub fn header_size(&self) -> u64 {
        self.l.ob_type as u64 + 8
    }

    /// `tp_basicsize` of an object's type.
    pub fn basicsize_of(&self, obj: u64) -> Option<i64> {
        Some(self.type_info(self.type_of(obj)?)?.basicsize)
    }

    pub fn is_dict(&self, obj: u64) -> bool {
        self.flags_of(obj)
            .is_some_and(|f| f & self.l.tpflags_dict_subclass != 0)
    }

    fn is_str(&self, obj: u64) -> bool {
        self.flags_of(obj)
            .is_some_and(|f| f & self.l.tpflags_str_subclass != 0)
    }

    // ---- dicts

    /// The entries of a keys table (3.x `PyDictKeysObject`) that have a key, with their
    /// index (which pairs them with a split table's values). `value` is the combined
    /// table's value (meaningless for split keys).
    fn keys_entries(&self, keys: u64) -> Option<Vec<DictEntry>> {
        let l = self.l;
        if !plausible(keys) {
            return None;
        }
        let indices = l.dictkeys_indices? as u64;
        let head = self.mem.read_vec(keys, indices as usize).ok()?;
        let nentries = le_u64(&head, l.dictkeys_nentries? as usize)?;
        let (entries_at, unicode) = if let Some(size_off) = l.dictkeys_size {
            // 3.6–3.10: dk_size slots of 1, 2, 4 or 8 bytes each, then the entries.
            let size = le_u64(&head, size_off as usize)?;
            if !size.is_power_of_two() || size > MAX_DICT_ENTRIES * 2 || nentries > size {
                return None;
            }
            let width = match size {
                0..=0xff => 1,
                0x100..=0xffff => 2,
                0x1_0000..=0xffff_ffff => 4,
                _ => 8,
            };
            (keys + indices + size * width, false)
        } else {
            // 3.11+: 1 << dk_log2_index_bytes bytes of indices, then the entries.
            let log2_size = *head.get(l.dictkeys_log2_size? as usize)? as u32;
            let log2_index = *head.get(l.dictkeys_log2_index_bytes? as usize)? as u32;
            let kind = *head.get(l.dictkeys_kind? as usize)?;
            if log2_size > 24 || log2_index < log2_size || log2_index > log2_size + 3 {
                return None;
            }
            if nentries > (1u64 << log2_size) || kind > 2 {
                return None;
            }
            (
                keys + indices + (1u64 << log2_index),
                Some(kind) != l.dictkeys_kind_general,
            )
        };
        if nentries > MAX_DICT_ENTRIES {
            return None;
        }
        let (size, koff, voff) = if unicode {
            (
                l.dict_unicode_entry_size?,
                l.dict_unicode_entry_key?,
                l.dict_unicode_entry_value?,
            )
        } else {
            (l.dict_entry_size, l.dict_entry_key, l.dict_entry_value)
        };
        let buf = self
            .mem
            .read_vec(entries_at, nentries as usize * size as usize)
            .ok()?;
        Some(
            buf.chunks_exact(size as usize)
                .enumerate()
                .filter_map(|(index, e)| {
                    let key = le_u64(e, koff as usize)?;
                    plausible(key).then(|| DictEntry {
                        index,
                        key,
                        value: le_u64(e, voff as usize).unwrap_or(0),
                    })
                })
                .collect(),
        )
    }

    /// The value pointers of a split table (`ma_values` or inline values), `n` of them.
    fn split_values(&self, values: u64, n: usize) -> Option<Vec<u64>> {
        let l = self.l;
        if !plausible(values) || n as u64 > MAX_DICT_ENTRIES {
            return None;
        }
        let n = match l.dict_values_capacity {
            Some(off) => n.min(self.read_u8(values + off as u64).ok()? as usize),
            None => n,
        };
        let b = self
            .read_vec(values + l.dict_values_values? as u64, n * 8)
            .ok()?;
        Some(b.chunks_exact(8).filter_map(|c| le_u64(c, 0)).collect())
    }

    /// The live (key, value) entries of a dict object, in table order.
    pub fn dict_entries(&self, dict: u64) -> Option<Vec<DictEntry>> {
        let l = self.l;
        if !plausible(dict) {
            return None;
        }
        if let (Some(mask_off), Some(table_off)) = (l.dict_mask, l.dict_table) {
            // 2.7: ma_mask + 1 slots of PyDictEntry; dummies have a NULL value.
            self.window(dict, mask_off.max(table_off) as usize + 8);
            let mask = self.ptr(dict + mask_off as u64)?;
            let table = self.ptr(dict + table_off as u64)?;
            let n = mask.checked_add(1)?;
            if !n.is_power_of_two() || n > MAX_DICT_ENTRIES * 2 || !plausible(table) {
                return None;
            }
            let size = l.dict_entry_size as usize;
            let buf = self.mem.read_vec(table, n as usize * size).ok()?;
            return Some(
                buf.chunks_exact(size)
                    .enumerate()
                    .filter_map(|(index, e)| {
                        let key = le_u64(e, l.dict_entry_key as usize)?;
                        let value = le_u64(e, l.dict_entry_value as usize)?;
                        (plausible(key) && plausible(value)).then_some(DictEntry {
                            index,
                            key,
                            value,
                        })
                    })
                    .collect(),
            );
        }
        let keys = self.ptr(dict + l.dict_keys? as u64)?;
        let values = self.ptr(dict + l.dict_values? as u64)?;
        let mut entries = self.keys_entries(keys)?;
        if values != 0 {
            let n = entries.last().map(|e| e.index + 1).unwrap_or(0);
            let vals = self.split_values(values, n)?;
            for e in &mut entries {
                e.value = vals.get(e.index).copied().unwrap_or(0);
            }
        }
        entries.retain(|e| plausible(e.value));
        Some(entries)
    }

    /// Which of `entries` has the str key `name` (compared in one scatter read).
    /// A number for `name`, the same for the life of this reader.
    fn name_id(&self, name: &str) -> usize {
        let mut names = self.names.borrow_mut();
        names.iter().position(|n| n == name).unwrap_or_else(|| {
            names.push(name.to_string());
            names.len() - 1
        })
    }

    fn find_key(&self, entries: &[DictEntry], name: &str) -> Option<DictEntry> {
        let l = self.l;
        let id = self.name_id(name);
        let (hdr, len_off) = match l.string_kind {
            StringKind::Unicode => (l.unicode_ascii_size as usize, l.unicode_length),
            StringKind::Bytes => (l.bytes_sval as usize, l.ob_size),
        };
        let want = name.as_bytes();
        let n = hdr + want.len();
        // Key objects already compared (attribute names are interned: every instance's
        // dict holds the same key objects) are not read again.
        let mut known = self.key_matches.borrow_mut();
        let unknown: Vec<u64> = entries
            .iter()
            .map(|e| e.key)
            .filter(|k| !known.contains_key(&(*k, id)))
            .collect();
        if !unknown.is_empty() {
            let reqs: Vec<(u64, usize)> = unknown.iter().map(|&k| (k, n)).collect();
            let mut buf = vec![0u8; n * reqs.len()];
            let ok = self.mem.read_scatter(&reqs, &mut buf);
            for (i, &key) in unknown.iter().enumerate() {
                if ok.get(i).copied().unwrap_or(false) {
                    let b = &buf[i * n..(i + 1) * n];
                    let same = str_is(l, b, hdr, len_off, want);
                    known.insert((key, id), same);
                }
            }
        }
        entries
            .iter()
            .find(|e| known.get(&(e.key, id)) == Some(&true))
            .copied()
    }

    /// The entry of str key `name` in a 3.x keys table, cached for the life of this reader
    /// (instances' dicts of a class share one keys table).
    fn key_entry(&self, keys: u64, name: &str) -> Option<DictEntry> {
        let id = self.name_id(name);
        if let Some(e) = self.key_cache.borrow().get(&(keys, id)) {
            return *e;
        }
        let e = self
            .keys_entries(keys)
            .and_then(|entries| self.find_key(&entries, name));
        self.key_cache.borrow_mut().insert((keys, id), e);
        e
    }

    /// Value `index` of a split table (`ma_values` or inline values); None if empty.
    fn split_value(&self, values: u64, index: usize) -> Option<u64> {
        let l = self.l;
        if !plausible(values) {
            return None;
        }
        if let Some(off) = l.dict_values_capacity {
            if index >= self.read_u8(values + off as u64).ok()? as usize {
                return None;
            }
        }
        let v = self.ptr(values + l.dict_values_values? as u64 + 8 * index as u64)?;
        plausible(v).then_some(v)
    }

    /// `dict[name]` for a str key.
    pub fn dict_get_str(&self, dict: u64, name: &str) -> Option<u64> {
        let l = self.l;
        let (Some(keys_off), Some(values_off)) = (l.dict_keys, l.dict_values) else {
            // 2.7: one table of (hash, key, value).
            let entries = self.dict_entries(dict)?;
            return Some(self.find_key(&entries, name)?.value);
        };
        if !plausible(dict) {
            return None;
        }
        self.window(dict, keys_off.max(values_off) as usize + 8);
        let keys = self.ptr(dict + keys_off as u64)?;
        let values = self.ptr(dict + values_off as u64)?;
        let e = self.key_entry(keys, name)?;
        if values != 0 {
            self.split_value(values, e.index)
        } else {
            plausible(e.value).then_some(e.value)
        }
    }

    // ---- ints and strings

    /// A non-negative int (2.7 `int` or `long`, 3.x `int`) that fits in 64 bits.
    pub fn read_uint(&self, obj: u64) -> Option<u64> {
        let v = self.read_int(obj)?;
        (v >= 0).then_some(v as u64)
    }

    /// An int (2.7 `int` or `long`, 3.x `int`, bools included) that fits in an i64.
    pub fn read_int(&self, obj: u64) -> Option<i64> {
        let l = self.l;
        if !plausible(obj) {
            return None;
        }
        let digits_end = l.long_digits as usize + l.long_digit_size as usize * 3;
        self.window(obj, digits_end.max(WINDOW / 2));
        let flags = self.flags_of(obj)?;
        if let (Some(bit), Some(off)) = (l.tpflags_int_subclass, l.int_ival) {
            if flags & bit != 0 {
                return Some(self.ptr(obj + off as u64)? as i64);
            }
        }
        if flags & l.tpflags_long_subclass == 0 {
            return None;
        }
        // 3.12+: size and sign in lv_tag (sign bits: 0 positive, 1 zero, 2 negative);
        // before: the signed ob_size.
        let (ndigits, negative) = match (l.long_lv_tag, l.long_non_size_bits) {
            (Some(off), Some(bits)) => {
                let tag = self.ptr(obj + off as u64)?;
                match tag & 3 {
                    0 => (tag >> bits, false),
                    1 => return Some(0),
                    2 => (tag >> bits, true),
                    _ => return None,
                }
            }
            _ => {
                let size = self.ptr(obj + l.ob_size as u64)? as i64;
                (size.unsigned_abs(), size < 0)
            }
        };
        let shift = l.long_shift as u32;
        let dsize = l.long_digit_size as usize;
        if shift == 0 || dsize == 0 || dsize > 4 || ndigits > (64 / shift as u64) + 1 {
            return None;
        }
        let b = self
            .read_vec(obj + l.long_digits as u64, ndigits as usize * dsize)
            .ok()?;
        let mut v: u128 = 0;
        for (i, d) in b.chunks_exact(dsize).enumerate() {
            let mut digit = [0u8; 4];
            digit[..dsize].copy_from_slice(d);
            let digit = u32::from_le_bytes(digit) as u128;
            if digit >> shift != 0 {
                return None;
            }
            v |= digit << (shift as usize * i);
        }
        let v = i64::try_from(v).ok()?;
        Some(if negative { -v } else { v })
    }

    /// A `str` object's text (checked to be a str first).
    pub fn read_str(&self, obj: u64) -> Option<String> {
        if !plausible(obj) {
            return None;
        }
        self.window(obj, WINDOW);
        if !self.is_str(obj) {
            return None;
        }
        crate::code::read_str(self, self.l, obj).ok()
    }

    // ---- attributes

    /// Index of `name` in the shared keys of instances of type `tp` (`ht_cached_keys`).
    fn cached_key_index(&self, tp: u64, name: &'static str) -> Option<usize> {
        if let Some(ix) = self.cached_index.borrow().get(&(tp, name)) {
            return *ix;
        }
        let ix = (|| {
            let keys = self.ptr(tp + self.l.heaptype_cached_keys? as u64)?;
            Some(self.key_entry(keys, name)?.index)
        })();
        self.cached_index.borrow_mut().insert((tp, name), ix);
        ix
    }

    /// Attribute `name` of a split-table values block of an instance of `tp`.
    fn attr_in_values(&self, tp: u64, values: u64, name: &'static str) -> Option<u64> {
        self.split_value(values, self.cached_key_index(tp, name)?)
    }

    /// An attribute of an instance found in its own storage (`__dict__`, managed dict or
    /// inline values); None when absent or unreadable. Does not look at the type.
    pub fn instance_attr(&self, obj: u64, name: &'static str) -> Option<u64> {
        let l = self.l;
        if !plausible(obj) {
            return None;
        }
        // The pre-header (managed dict and values pointers), header and inline values.
        let before = l
            .managed_dict_before
            .max(l.managed_values_before)
            .unwrap_or(0) as u64;
        self.window(obj.saturating_sub(before), before as usize + WINDOW);
        let tp = self.type_of(obj)?;
        let info = self.type_info(tp)?;
        let has = |bit: Option<u64>| bit.is_some_and(|b| info.flags & b != 0);
        let dict = if has(l.tpflags_managed_dict) {
            if has(l.tpflags_inline_values) {
                // 3.13+: values inline after the fixed part, unless a dict took them over.
                let values = obj.checked_add(u64::try_from(info.basicsize).ok()?)?;
                if !plausible(values) {
                    return None;
                }
                let valid = match l.dict_values_valid {
                    Some(off) => self.read_u8(values + off as u64).ok()? != 0,
                    None => false,
                };
                if valid {
                    return self.attr_in_values(tp, values, name);
                }
            }
            let dict_at = obj.checked_sub(l.managed_dict_before? as u64)?;
            match l.managed_values_before {
                // 3.12: one slot; a tagged (odd) value is the values pointer.
                Some(vb) if l.managed_values_tag.is_some() => {
                    let raw = self.ptr(obj.checked_sub(vb as u64)?)?;
                    if raw & 1 == 1 {
                        let values = raw.wrapping_add(l.managed_values_tag? as u64);
                        return self.attr_in_values(tp, values, name);
                    }
                    raw
                }
                // 3.11: a values pointer, or else a dict pointer.
                Some(vb) => {
                    let values = self.ptr(obj.checked_sub(vb as u64)?)?;
                    if values != 0 {
                        return self.attr_in_values(tp, values, name);
                    }
                    self.ptr(dict_at)?
                }
                None => self.ptr(dict_at)?,
            }
        } else if info.dictoffset > 0 && info.dictoffset < 1 << 20 {
            self.ptr(obj + info.dictoffset as u64)?
        } else {
            return None;
        };
        if !self.is_dict(dict) {
            return None;
        }
        self.dict_get_str(dict, name)
    }
}

/// Thread ident (`threading.get_ident()`, = `PyThreadState.thread_id`) → thread name
/// (`Thread.name`), read from `threading._active` of interpreter `interp`. Threads that
/// were not started by `threading` (and never called `current_thread()`), and names that
/// cannot be read, are absent. Never fails: garbage memory gives an empty map.
///
/// Cost: about 30 reads to reach `_active` (each dict searched by key with one scatter
/// read), then 3 (3.13+), 4 (3.11/3.12) or 6 (≤3.10) per thread. Measured with 4 threads:
/// 41-51 reads, ~0.2-0.3 ms; with 1000 threads: 3,000-6,000 reads and ~5-13 ms of CPU in a
/// debug build. Meant to be called about once a second.
pub fn thread_names(mem: &dyn Memory, layout: &Layout, interp: u64) -> HashMap<u64, String> {
    let o = Objects::new(mem, layout);
    let Some(entries) = active_threads(&o, interp) else {
        return HashMap::new();
    };
    let name_attr = if layout.major == 2 {
        "_Thread__name"
    } else {
        "_name"
    };
    entries
        .iter()
        .filter_map(|e| {
            let ident = o.read_uint(e.key)?;
            let name = o.read_str(o.instance_attr(e.value, name_attr)?)?;
            Some((ident, name))
        })
        .collect()
}

/// The entries of `threading._active` (ident → Thread).
fn active_threads(o: &Objects, interp: u64) -> Option<Vec<DictEntry>> {
    let layout = o.l;
    if !plausible(interp) {
        return None;
    }
    let modules = o.ptr(interp.checked_add(layout.interp_modules as u64)?)?;
    if !o.is_dict(modules) {
        return None;
    }
    let threading = o.dict_get_str(modules, "threading")?;
    let md_dict = o.ptr(threading.checked_add(layout.module_dict as u64)?)?;
    if !o.is_dict(md_dict) {
        return None;
    }
    let active = o.dict_get_str(md_dict, "_active")?;
    if !o.is_dict(active) {
        return None;
    }
    let mut entries = o.dict_entries(active)?;
    entries.truncate(MAX_THREADS);
    Some(entries)
}
