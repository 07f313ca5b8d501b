/*
 * layout_probe.c: print every field of pyprof's `Layout` (src/runtime/layout.rs) for the
 * CPython version whose headers this file is compiled against.
 *
 * Built and run by scripts/gen_layouts.py; not part of the Rust build. Compile with
 *
 *     gcc -std=gnu11 -I <include/pythonX.Y> [-I <include/pythonX.Y/internal>] layout_probe.c
 *
 * (the internal directory only from 3.8 on; 3.7's internal headers are reached as
 * "internal/pystate.h" and must not be on the include path, since their names shadow the
 * public headers). Nothing is linked from libpython: everything printed is an `offsetof`,
 * a `sizeof` or an enum constant.
 *
 * Output: one `name=value` line per Layout field, in no particular order. `value` is a
 * decimal number, `true`/`false`, an enum variant name, or `none` when the field does not
 * exist in this version. A `version=X.Y.Z` line (PY_VERSION) is printed first.
 */

#include <patchlevel.h> /* PY_VERSION_HEX, before choosing what else to include */

#if PY_VERSION_HEX >= 0x03070000
#  ifndef Py_BUILD_CORE
#    define Py_BUILD_CORE 1
#  endif
#endif

#include <Python.h>
#include <frameobject.h>
#if PY_VERSION_HEX < 0x030B0000
#  include <code.h> /* 3.11+: cpython/code.h, included by Python.h */
#endif

#if PY_VERSION_HEX >= 0x03080000
/* _PyRuntimeState, PyInterpreterState (3.8+: internal), the GIL, _PyInterpreterFrame. */
#  include "pycore_pystate.h"
#  if PY_VERSION_HEX >= 0x03090000
#    include "pycore_runtime.h"
#    include "pycore_interp.h"
#  endif
#  include "pycore_gil.h"
#  if PY_VERSION_HEX >= 0x030B0000
#    include "pycore_frame.h"
#    include "pycore_code.h"
#  endif
#  if PY_VERSION_HEX >= 0x030C0000
#    include "pycore_ceval_state.h"
#  endif
#  if PY_VERSION_HEX >= 0x030D0000
#    include "pycore_genobject.h" /* PyGenObject (3.13+: internal) */
#  endif
#  if PY_VERSION_HEX >= 0x030E0000
#    include "pycore_stackref.h" /* Py_TAG_BITS */
#    include "pycore_instruments.h" /* _PyCoMonitoringData */
#  endif
#elif PY_VERSION_HEX >= 0x03070000
#  include "internal/pystate.h"
#endif

/* Objects read to name threads (src/runtime/objects.rs): modules, dicts, ints, instance
 * attributes. */
#if PY_VERSION_HEX < 0x030B0000
#  include <longintrepr.h> /* PyLongObject (3.11+: cpython/longintrepr.h, from Python.h) */
#endif
#if PY_VERSION_HEX >= 0x030A0000
#  include "pycore_moduleobject.h" /* PyModuleObject */
#endif
#if PY_VERSION_HEX >= 0x030B0000
#  include "pycore_dict.h"   /* PyDictKeysObject, PyDictKeyEntry, PyDictUnicodeEntry, PyDictValues */
#  include "pycore_object.h" /* managed dicts, inline values */
#endif

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#if PY_VERSION_HEX < 0x030A0000
/* PyModuleObject is private to Objects/moduleobject.c before 3.10 (pycore_moduleobject.h
 * from 3.10). Only its first field is read: `md_dict`, right after the object header. */
typedef struct {
    PyObject_HEAD
    PyObject *md_dict;
} pyprof_PyModuleObject;
#  define PYPROF_MODULE_T pyprof_PyModuleObject
#else
#  define PYPROF_MODULE_T PyModuleObject
#endif

#if PY_MAJOR_VERSION >= 3 && PY_VERSION_HEX < 0x030B0000
/* 3.6-3.10: the compact dict's keys object is private to Objects/ (dict-common.h, not
 * installed). Mirrored from that file (identical in 3.6-3.10 but for the type of
 * `dk_indices`: a union of arrays in 3.6, `char[]` from 3.7; both start at the same
 * offset). The types of the fields come from the installed headers. */
typedef struct {
    Py_hash_t me_hash;
    PyObject *me_key;
    PyObject *me_value;
} pyprof_PyDictKeyEntry;
typedef struct {
    Py_ssize_t dk_refcnt;
    Py_ssize_t dk_size;
    void *dk_lookup; /* dict_lookup_func */
    Py_ssize_t dk_usable;
    Py_ssize_t dk_nentries;
    char dk_indices[8];
} pyprof_PyDictKeysObject;
#endif

#define P(name, value) printf("%s=%lu\n", name, (unsigned long)(value))
#define NONE(name) printf("%s=none\n", name)
#define S(name, text) printf("%s=%s\n", name, text)

int main(void)
{
    printf("version=%s\n", PY_VERSION);
    P("major", PY_MAJOR_VERSION);
    P("minor", PY_MINOR_VERSION);
#ifdef Py_GIL_DISABLED
    S("free_threaded", "true");
#else
    S("free_threaded", "false");
#endif

    /* ---- kinds */
#if PY_VERSION_HEX >= 0x030B0000
    S("frame_kind", "Interpreter");
#else
    S("frame_kind", "Object");
#endif
#if PY_MAJOR_VERSION >= 3
    S("string_kind", "Unicode");
#else
    S("string_kind", "Bytes");
#endif
#if PY_VERSION_HEX >= 0x030B0000
    S("line_table", "Pep657");
#elif PY_VERSION_HEX >= 0x030A0000
    S("line_table", "Pep626");
#else
    S("line_table", "Lnotab");
#endif

    /* ---- _PyRuntimeState */
#if PY_VERSION_HEX >= 0x03070000
    P("runtime_interp_head", offsetof(_PyRuntimeState, interpreters.head));
    P("runtime_interp_main", offsetof(_PyRuntimeState, interpreters.main));
#else
    NONE("runtime_interp_head");
    NONE("runtime_interp_main");
#endif
#if PY_VERSION_HEX >= 0x03070000 && PY_VERSION_HEX < 0x030C0000
    P("runtime_gil_last_holder", offsetof(_PyRuntimeState, ceval.gil.last_holder));
    P("runtime_gil_locked", offsetof(_PyRuntimeState, ceval.gil.locked));
#else
    NONE("runtime_gil_last_holder");
    NONE("runtime_gil_locked");
#endif

    /* ---- PyInterpreterState */
    P("interp_next", offsetof(PyInterpreterState, next));
#if PY_VERSION_HEX >= 0x030B0000
    P("interp_tstate_head", offsetof(PyInterpreterState, threads.head));
#else
    P("interp_tstate_head", offsetof(PyInterpreterState, tstate_head));
#endif
#if PY_VERSION_HEX >= 0x030C0000
    P("interp_gil_ptr", offsetof(PyInterpreterState, ceval.gil));
    P("gil_last_holder", offsetof(struct _gil_runtime_state, last_holder));
    P("gil_locked", offsetof(struct _gil_runtime_state, locked));
#else
    NONE("interp_gil_ptr");
    NONE("gil_last_holder");
    NONE("gil_locked");
#endif

    /* ---- PyThreadState */
    P("tstate_next", offsetof(PyThreadState, next));
    P("tstate_interp", offsetof(PyThreadState, interp));
#if PY_VERSION_HEX >= 0x030D0000
    P("tstate_frame", offsetof(PyThreadState, current_frame));
    NONE("cframe_current_frame");
#elif PY_VERSION_HEX >= 0x030B0000
    P("tstate_frame", offsetof(PyThreadState, cframe));
    P("cframe_current_frame", offsetof(_PyCFrame, current_frame));
#else
    P("tstate_frame", offsetof(PyThreadState, frame));
    NONE("cframe_current_frame");
#endif
    P("tstate_thread_id", offsetof(PyThreadState, thread_id));
#if PY_VERSION_HEX >= 0x030B0000
    P("tstate_native_thread_id", offsetof(PyThreadState, native_thread_id));
    P("tstate_datastack_chunk", offsetof(PyThreadState, datastack_chunk));
    P("tstate_datastack_top", offsetof(PyThreadState, datastack_top));
    P("chunk_previous", offsetof(_PyStackChunk, previous));
    P("chunk_top", offsetof(_PyStackChunk, top));
    P("chunk_data", offsetof(_PyStackChunk, data));
#else
    NONE("tstate_native_thread_id");
    NONE("tstate_datastack_chunk");
    NONE("tstate_datastack_top");
    NONE("chunk_previous");
    NONE("chunk_top");
    NONE("chunk_data");
#endif

    /* ---- frames */
#if PY_VERSION_HEX >= 0x030B0000
    P("frame_back", offsetof(_PyInterpreterFrame, previous));
#  if PY_VERSION_HEX >= 0x030D0000
    P("frame_code", offsetof(_PyInterpreterFrame, f_executable));
    P("frame_instr", offsetof(_PyInterpreterFrame, instr_ptr));
#  else
    P("frame_code", offsetof(_PyInterpreterFrame, f_code));
    P("frame_instr", offsetof(_PyInterpreterFrame, prev_instr));
#  endif
    P("frame_owner", offsetof(_PyInterpreterFrame, owner));
#  if PY_VERSION_HEX < 0x030C0000
    P("frame_is_entry", offsetof(_PyInterpreterFrame, is_entry));
#  else
    NONE("frame_is_entry");
#  endif
    P("frame_localsplus", offsetof(_PyInterpreterFrame, localsplus));
#  if PY_VERSION_HEX >= 0x030E0000 && defined(Py_GIL_DISABLED)
    P("frame_tlbc_index", offsetof(_PyInterpreterFrame, tlbc_index));
#  else
    NONE("frame_tlbc_index");
#  endif
    /* 3.14+: f_executable is a _PyStackRef whose low bits are tags (Py_TAG_BITS is 0, 1
     * or 3 depending on the build; every variant fits in the two low bits). */
#  if PY_VERSION_HEX >= 0x030E0000 && defined(Py_TAG_BITS)
    P("frame_code_tag_mask", 3);
#  else
    P("frame_code_tag_mask", 0);
#  endif
    /* The top of a suspended frame's value stack (what an `await` waits on). */
#  if PY_VERSION_HEX >= 0x030E0000
    P("frame_stack", offsetof(_PyInterpreterFrame, stackpointer));
#  else
    P("frame_stack", offsetof(_PyInterpreterFrame, stacktop));
#  endif
    NONE("frame_valuestack");
    P("gen_frame", offsetof(PyGenObject, gi_iframe));
    /* gi_frame_state (int8) and the values that mean "suspended" (as unsigned bytes). */
    P("gen_frame_state", offsetof(PyGenObject, gi_frame_state));
    NONE("frame_state");
    P("gen_executing", (uint8_t)(int8_t)FRAME_EXECUTING);
    P("gen_suspended_first", (uint8_t)(int8_t)FRAME_SUSPENDED);
#  if PY_VERSION_HEX >= 0x030F0000
    P("gen_suspended_last", (uint8_t)(int8_t)FRAME_SUSPENDED_YIELD_FROM_LOCKED);
#  elif PY_VERSION_HEX >= 0x030D0000
    P("gen_suspended_last", (uint8_t)(int8_t)FRAME_SUSPENDED_YIELD_FROM);
#  else
    P("gen_suspended_last", (uint8_t)(int8_t)FRAME_SUSPENDED);
#  endif
#else
    P("frame_back", offsetof(PyFrameObject, f_back));
    P("frame_code", offsetof(PyFrameObject, f_code));
    P("frame_instr", offsetof(PyFrameObject, f_lasti));
    NONE("frame_owner");
    NONE("frame_is_entry");
    P("frame_localsplus", offsetof(PyFrameObject, f_localsplus));
    NONE("frame_tlbc_index");
    P("frame_code_tag_mask", 0);
#  if PY_VERSION_HEX >= 0x030A0000
    P("frame_stack", offsetof(PyFrameObject, f_stackdepth));
#  else
    P("frame_stack", offsetof(PyFrameObject, f_stacktop));
#  endif
    P("frame_valuestack", offsetof(PyFrameObject, f_valuestack));
    P("gen_frame", offsetof(PyGenObject, gi_frame));
    NONE("gen_frame_state");
#  if PY_VERSION_HEX >= 0x030A0000
    P("frame_state", offsetof(PyFrameObject, f_state));
    P("gen_executing", (uint8_t)(int8_t)FRAME_EXECUTING);
#  else
    NONE("frame_state");
    NONE("gen_executing");
#  endif
    NONE("gen_suspended_first");
    NONE("gen_suspended_last");
#endif
    /* FRAME_OWNED_BY_CSTACK: 3.12 and 3.13 (= 3), 3.14 (= 4); gone in 3.15. */
#if PY_VERSION_HEX >= 0x030C0000 && PY_VERSION_HEX < 0x030F0000
    P("owner_cstack", FRAME_OWNED_BY_CSTACK);
#else
    NONE("owner_cstack");
#endif
#if PY_VERSION_HEX >= 0x030E0000
    P("owner_interpreter", FRAME_OWNED_BY_INTERPRETER);
#else
    NONE("owner_interpreter");
#endif

    /* ---- PyCodeObject */
    P("code_filename", offsetof(PyCodeObject, co_filename));
    P("code_name", offsetof(PyCodeObject, co_name));
#if PY_VERSION_HEX >= 0x030B0000
    P("code_qualname", offsetof(PyCodeObject, co_qualname));
#else
    NONE("code_qualname");
#endif
    P("code_firstlineno", offsetof(PyCodeObject, co_firstlineno));
#if PY_VERSION_HEX >= 0x030A0000
    P("code_linetable", offsetof(PyCodeObject, co_linetable));
#else
    P("code_linetable", offsetof(PyCodeObject, co_lnotab));
#endif
#if PY_VERSION_HEX >= 0x030B0000
    NONE("code_code");
    P("code_adaptive", offsetof(PyCodeObject, co_code_adaptive));
    P("code_firsttraceable", offsetof(PyCodeObject, _co_firsttraceable));
    P("code_nlocals", offsetof(PyCodeObject, co_nlocalsplus));
    P("code_varnames", offsetof(PyCodeObject, co_localsplusnames));
#else
    P("code_code", offsetof(PyCodeObject, co_code));
    NONE("code_adaptive");
    NONE("code_firsttraceable");
    P("code_nlocals", offsetof(PyCodeObject, co_nlocals));
    P("code_varnames", offsetof(PyCodeObject, co_varnames));
#endif
#if PY_VERSION_HEX >= 0x030E0000 && defined(Py_GIL_DISABLED)
    /* Thread-local bytecode: frame->instr_ptr points into co_tlbc->entries[tlbc_index]. */
    P("code_tlbc", offsetof(PyCodeObject, co_tlbc));
    P("code_array_size", offsetof(_PyCodeArray, size));
    P("code_array_entries", offsetof(_PyCodeArray, entries));
#else
    NONE("code_tlbc");
    NONE("code_array_size");
    NONE("code_array_entries");
#endif
    P("code_flags", offsetof(PyCodeObject, co_flags));
    P("code_argcount", offsetof(PyCodeObject, co_argcount));
#if PY_MAJOR_VERSION >= 3
    P("code_kwonlyargcount", offsetof(PyCodeObject, co_kwonlyargcount));
#else
    NONE("code_kwonlyargcount");
#endif
#if PY_VERSION_HEX >= 0x030C0000
    P("code_monitoring", offsetof(PyCodeObject, _co_monitoring));
    P("monitoring_lines", offsetof(_PyCoMonitoringData, lines));
    P("monitoring_per_instruction_opcodes", offsetof(_PyCoMonitoringData, per_instruction_opcodes));
#  if PY_VERSION_HEX >= 0x030E0000 || defined(PYPROF_LINE_DATA_VARIABLE)
    /* 3.14+ (and late 3.13.x): { uint8_t bytes_per_entry; uint8_t data[]; }: entries of a
     * size given by the first byte; 0 here means "read it from the table". The generator
     * defines PYPROF_LINE_DATA_VARIABLE when the headers have that form. */
    P("monitoring_line_entry_size", 0);
    P("monitoring_line_data", offsetof(_PyCoLineInstrumentationData, data));
#  else
    P("monitoring_line_entry_size", sizeof(_PyCoLineInstrumentationData));
    P("monitoring_line_data", offsetof(_PyCoLineInstrumentationData, original_opcode));
#  endif
#else
    NONE("code_monitoring");
    NONE("monitoring_lines");
    NONE("monitoring_per_instruction_opcodes");
    NONE("monitoring_line_entry_size");
    NONE("monitoring_line_data");
#endif

    /* ---- object headers */
    P("ob_type", offsetof(PyObject, ob_type));
    P("ob_size", offsetof(PyVarObject, ob_size));
    P("type_name", offsetof(PyTypeObject, tp_name));
    P("tuple_item", offsetof(PyTupleObject, ob_item));

    /* ---- bytes and strings */
#if PY_MAJOR_VERSION >= 3
    P("bytes_sval", offsetof(PyBytesObject, ob_sval));
    P("unicode_state", offsetof(PyASCIIObject, state));
    P("unicode_length", offsetof(PyASCIIObject, length));
    P("unicode_ascii_size", sizeof(PyASCIIObject));
    P("unicode_compact_size", sizeof(PyCompactUnicodeObject));
    {
        /* Where does the 3-bit `state.kind` bitfield start? Set it to all ones in an
         * otherwise zeroed object and look for the lowest set bit of the state word. */
        PyASCIIObject a;
        unsigned char raw[sizeof(a.state)];
        unsigned int bit;
        int shift = -1;
        memset(&a, 0, sizeof(a));
        a.state.kind = 7;
        memcpy(raw, &a.state, sizeof(raw));
        for (bit = 0; bit < 8 * sizeof(raw); bit++) {
            if (raw[bit / 8] & (1u << (bit % 8))) { /* little-endian byte order */
                shift = (int)bit;
                break;
            }
        }
        if (shift < 0) {
            fprintf(stderr, "layout_probe: state.kind not found in PyASCIIObject.state\n");
            return 1;
        }
        P("unicode_kind_shift", shift);
    }
#else
    P("bytes_sval", offsetof(PyStringObject, ob_sval));
    P("unicode_state", 0);
    P("unicode_length", 0);
    P("unicode_ascii_size", 0);
    P("unicode_compact_size", 0);
    P("unicode_kind_shift", 0);
#endif

    /* ---- objects: sys.modules, module dicts, dicts, ints, instance attributes */
#if PY_VERSION_HEX >= 0x030C0000
    P("interp_modules", offsetof(PyInterpreterState, imports.modules));
#else
    P("interp_modules", offsetof(PyInterpreterState, modules));
#endif
    P("module_dict", offsetof(PYPROF_MODULE_T, md_dict));
    P("type_flags", offsetof(PyTypeObject, tp_flags));
    P("type_basicsize", offsetof(PyTypeObject, tp_basicsize));
    P("type_dictoffset", offsetof(PyTypeObject, tp_dictoffset));
#if PY_MAJOR_VERSION >= 3
    P("heaptype_cached_keys", offsetof(PyHeapTypeObject, ht_cached_keys));
    NONE("tpflags_int_subclass");
    P("tpflags_str_subclass", Py_TPFLAGS_UNICODE_SUBCLASS);
#else
    NONE("heaptype_cached_keys");
    P("tpflags_int_subclass", Py_TPFLAGS_INT_SUBCLASS);
    P("tpflags_str_subclass", Py_TPFLAGS_STRING_SUBCLASS);
#endif
    P("tpflags_long_subclass", Py_TPFLAGS_LONG_SUBCLASS);
    P("tpflags_dict_subclass", Py_TPFLAGS_DICT_SUBCLASS);
#ifdef Py_TPFLAGS_MANAGED_DICT
    P("tpflags_managed_dict", Py_TPFLAGS_MANAGED_DICT);
#else
    NONE("tpflags_managed_dict");
#endif
#ifdef Py_TPFLAGS_INLINE_VALUES
    P("tpflags_inline_values", Py_TPFLAGS_INLINE_VALUES);
#else
    NONE("tpflags_inline_values");
#endif
    {
        /* Where the pre-header slots of managed dicts sit, asked of the headers' own
         * accessors on a fake object whose type has the flag set. */
#if PY_VERSION_HEX >= 0x030B0000
        static PyTypeObject fake_type;
        PyObject *obj;
        static char storage[256];
        memset(storage, 0, sizeof(storage));
        obj = (PyObject *)(storage + 128);
        fake_type.tp_flags = Py_TPFLAGS_MANAGED_DICT;
        fake_type.tp_basicsize = sizeof(PyObject);
        Py_SET_TYPE(obj, &fake_type);
#endif
#if PY_VERSION_HEX >= 0x030D0000
        /* 3.13+: the dict pointer; the values are inline at tp_basicsize (INLINE_VALUES). */
        P("managed_dict_before", (char *)obj - (char *)_PyObject_ManagedDictPointer(obj));
        NONE("managed_values_before");
        NONE("managed_values_tag");
#elif PY_VERSION_HEX >= 0x030C0000
        /* 3.12: one slot holding either the dict or the values pointer, tagged. */
        {
            PyDictOrValues *dorv = _PyObject_DictOrValuesPointer(obj);
            PyDictOrValues probe;
            P("managed_dict_before", (char *)obj - (char *)dorv);
            P("managed_values_before", (char *)obj - (char *)dorv);
            _PyDictOrValues_SetValues(&probe, (PyDictValues *)storage);
            if (!_PyDictOrValues_IsValues(probe)) {
                fprintf(stderr, "layout_probe: tagged values pointer not recognised\n");
                return 1;
            }
            P("managed_values_tag", (char *)_PyDictOrValues_GetValues(probe) - probe.values);
        }
#elif PY_VERSION_HEX >= 0x030B0000
        /* 3.11: separate dict and values pointers. */
        P("managed_dict_before", (char *)obj - (char *)_PyObject_ManagedDictPointer(obj));
        P("managed_values_before", (char *)obj - (char *)_PyObject_ValuesPointer(obj));
        NONE("managed_values_tag");
#else
        NONE("managed_dict_before");
        NONE("managed_values_before");
        NONE("managed_values_tag");
#endif
    }

    /* dicts */
#if PY_MAJOR_VERSION >= 3
    P("dict_keys", offsetof(PyDictObject, ma_keys));
    P("dict_values", offsetof(PyDictObject, ma_values));
    NONE("dict_mask");
    NONE("dict_table");
#else
    NONE("dict_keys");
    NONE("dict_values");
    P("dict_mask", offsetof(PyDictObject, ma_mask));
    P("dict_table", offsetof(PyDictObject, ma_table));
#endif
#if PY_VERSION_HEX >= 0x030B0000
    NONE("dictkeys_size");
    P("dictkeys_log2_size", offsetof(PyDictKeysObject, dk_log2_size));
    P("dictkeys_log2_index_bytes", offsetof(PyDictKeysObject, dk_log2_index_bytes));
    P("dictkeys_kind", offsetof(PyDictKeysObject, dk_kind));
    P("dictkeys_kind_general", DICT_KEYS_GENERAL);
    P("dictkeys_nentries", offsetof(PyDictKeysObject, dk_nentries));
    P("dictkeys_indices", offsetof(PyDictKeysObject, dk_indices));
    P("dict_entry_size", sizeof(PyDictKeyEntry));
    P("dict_entry_hash", offsetof(PyDictKeyEntry, me_hash));
    P("dict_entry_key", offsetof(PyDictKeyEntry, me_key));
    P("dict_entry_value", offsetof(PyDictKeyEntry, me_value));
    P("dict_unicode_entry_size", sizeof(PyDictUnicodeEntry));
    P("dict_unicode_entry_key", offsetof(PyDictUnicodeEntry, me_key));
    P("dict_unicode_entry_value", offsetof(PyDictUnicodeEntry, me_value));
    P("dict_values_values", offsetof(PyDictValues, values));
#elif PY_MAJOR_VERSION >= 3
    P("dictkeys_size", offsetof(pyprof_PyDictKeysObject, dk_size));
    NONE("dictkeys_log2_size");
    NONE("dictkeys_log2_index_bytes");
    NONE("dictkeys_kind");
    NONE("dictkeys_kind_general");
    P("dictkeys_nentries", offsetof(pyprof_PyDictKeysObject, dk_nentries));
    P("dictkeys_indices", offsetof(pyprof_PyDictKeysObject, dk_indices));
    P("dict_entry_size", sizeof(pyprof_PyDictKeyEntry));
    P("dict_entry_hash", offsetof(pyprof_PyDictKeyEntry, me_hash));
    P("dict_entry_key", offsetof(pyprof_PyDictKeyEntry, me_key));
    P("dict_entry_value", offsetof(pyprof_PyDictKeyEntry, me_value));
    NONE("dict_unicode_entry_size");
    NONE("dict_unicode_entry_key");
    NONE("dict_unicode_entry_value");
    P("dict_values_values", 0); /* ma_values is the PyObject *[] itself */
#else
    NONE("dictkeys_size");
    NONE("dictkeys_log2_size");
    NONE("dictkeys_log2_index_bytes");
    NONE("dictkeys_kind");
    NONE("dictkeys_kind_general");
    NONE("dictkeys_nentries");
    NONE("dictkeys_indices");
    P("dict_entry_size", sizeof(PyDictEntry));
    P("dict_entry_hash", offsetof(PyDictEntry, me_hash));
    P("dict_entry_key", offsetof(PyDictEntry, me_key));
    P("dict_entry_value", offsetof(PyDictEntry, me_value));
    NONE("dict_unicode_entry_size");
    NONE("dict_unicode_entry_key");
    NONE("dict_unicode_entry_value");
    NONE("dict_values_values");
#endif
#if PY_VERSION_HEX >= 0x030D0000
    P("dict_values_capacity", offsetof(PyDictValues, capacity));
    P("dict_values_valid", offsetof(PyDictValues, valid));
#else
    NONE("dict_values_capacity");
    NONE("dict_values_valid");
#endif

    /* ints */
#if PY_MAJOR_VERSION >= 3
    NONE("int_ival");
#else
    P("int_ival", offsetof(PyIntObject, ob_ival));
#endif
#if PY_VERSION_HEX >= 0x030C0000
    P("long_digits", offsetof(PyLongObject, long_value.ob_digit));
    P("long_lv_tag", offsetof(PyLongObject, long_value.lv_tag));
    P("long_non_size_bits", _PyLong_NON_SIZE_BITS);
#else
    P("long_digits", offsetof(PyLongObject, ob_digit));
    NONE("long_lv_tag");
    NONE("long_non_size_bits");
#endif
    P("long_shift", PyLong_SHIFT);
    P("long_digit_size", sizeof(digit));
    return 0;
}
