"""Dump the opcode table of the running CPython interpreter as JSON.

Runs under every CPython from 2.7 to 3.15 (so: Python-2-compatible syntax,
stdlib only) and is normally driven by scripts/gen_opcodes.py, which feeds it
on stdin (`python -E -S -`) so it also works through a command prefix such as
`chroot /opt/sid python3.14`.

Output (one JSON object on stdout, keys sorted):

  version          {major, minor, micro, free_threaded, releaselevel, implementation}
  have_argument    opcode.HAVE_ARGUMENT
  extended_arg     opcode.EXTENDED_ARG
  specialization_enabled   ENABLE_SPECIALIZATION where the interpreter exposes it, else null
  opcodes          256 entries, one per opcode byte:
      op, name (null when unused), base (name of the deoptimized instruction),
      base_op, cache_entries (of the base instruction), has_arg,
      specialized (name != base), instrumented (INSTRUMENTED_*),
      adaptive (the generic form the specializer runs from: 3.11 *_ADAPTIVE,
      3.12+ the family head itself), no_static_base (INSTRUMENTED_LINE,
      INSTRUMENTED_INSTRUCTION, ENTER_EXECUTOR: the real instruction lives in
      a side table, so base/cache_entries are unknown here), backward_jump,
      lists (names of the opcode.has* lists the base instruction is in)
  lists            the opcode.has* lists themselves (opcodes < 256 only)
  specializations  family head -> specialized instruction names

Any internal inconsistency raises, so the driver fails instead of writing a
wrong table.
"""
from __future__ import print_function

import dis
import json
import opcode
import sys

LIST_NAMES = (
    "hasarg",
    "hasconst",
    "hasname",
    "hasjrel",
    "hasjabs",
    "hasjump",
    "haslocal",
    "hascompare",
    "hasfree",
    "hasnargs",
    "hasexc",
)

# Instructions whose original (static) instruction is kept in a side table
# rather than derivable from the opcode byte.
NO_STATIC_BASE_NAMES = ("ENTER_EXECUTOR",)


def fail(msg):
    raise SystemExit("dump_opcodes.py: " + msg)


def free_threaded():
    try:
        import sysconfig

        return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    except Exception:
        return False


def opcode_metadata():
    try:
        import _opcode_metadata  # 3.13+

        return _opcode_metadata
    except ImportError:
        return None


def main():
    impl = getattr(getattr(sys, "implementation", None), "name", None)
    if impl is None:
        impl = "cpython" if "PyPy" not in sys.version else "pypy"
    if impl != "cpython":
        fail("not CPython (%s): opcode tables are CPython-specific" % impl)

    vi = sys.version_info
    meta = opcode_metadata()

    # ---- names -----------------------------------------------------------
    names = [None] * 256
    for i, n in enumerate(opcode.opname[:256]):
        if not n.startswith("<"):
            names[i] = n
    # 3.11+: specialized instructions are only in dis._all_opname.
    all_opname = getattr(dis, "_all_opname", None)
    if all_opname is not None:
        for i, n in enumerate(all_opname[:256]):
            if n.startswith("<"):
                continue
            if names[i] is not None and names[i] != n:
                fail("opcode %d: opname %r vs dis._all_opname %r" % (i, names[i], n))
            names[i] = n
    # 3.13+: explicit map of specialized instructions.
    spec_opmap = getattr(meta, "_specialized_opmap", None)
    if spec_opmap is None:
        spec_opmap = getattr(opcode, "_specialized_opmap", None)
    if spec_opmap:
        for n, i in spec_opmap.items():
            if i >= 256:
                continue
            if names[i] is not None and names[i] != n:
                fail("opcode %d: %r vs _specialized_opmap %r" % (i, names[i], n))
            names[i] = n

    by_name = {}
    for i, n in enumerate(names):
        if n is None:
            continue
        if n in by_name:
            fail("duplicate opcode name %r (%d and %d)" % (n, by_name[n], i))
        by_name[n] = i

    # ---- specialization families ----------------------------------------
    specs = getattr(meta, "_specializations", None)
    if specs is None:
        specs = getattr(opcode, "_specializations", None)
    specs = dict(specs or {})
    family_of = {}
    for head, members in specs.items():
        if head not in by_name:
            fail("specialization family head %r is not an opcode" % head)
        for m in members:
            if m not in by_name:
                fail("specialized instruction %r (of %r) is not an opcode" % (m, head))
            if m in family_of:
                fail("%r is in two families" % m)
            family_of[m] = head

    # ---- base (deoptimized / deinstrumented) instruction ------------------
    base = [None] * 256
    instrumented = [False] * 256
    no_static_base = [False] * 256
    for i, n in enumerate(names):
        if n is None:
            base[i] = i
            continue
        b = n
        if n in family_of:
            b = family_of[n]
        elif n.startswith("INSTRUMENTED_"):
            instrumented[i] = True
            stripped = n[len("INSTRUMENTED_"):]
            if stripped in by_name:
                b = stripped
            else:
                # INSTRUMENTED_LINE, INSTRUMENTED_INSTRUCTION: the original
                # opcode is in co_monitoring, not derivable from the byte.
                no_static_base[i] = True
        elif n in NO_STATIC_BASE_NAMES:
            no_static_base[i] = True
        base[i] = by_name[b]

    # Cross-check against dis's own deoptimization where it has one.
    deoptop = getattr(dis, "_deoptop", None)
    if callable(deoptop):
        for i, n in enumerate(names):
            if n is None or instrumented[i] or no_static_base[i]:
                continue
            try:
                d = deoptop(i)
            except Exception:
                continue
            if d != base[i]:
                fail("opcode %d %s: dis._deoptop gives %d, we give %d" % (i, n, d, base[i]))

    # ---- inline cache entries --------------------------------------------
    ice = getattr(opcode, "_inline_cache_entries", None)
    if ice is None:
        ice = getattr(dis, "_inline_cache_entries", None)

    def cache_of(op):
        if ice is None:
            return 0
        if hasattr(ice, "keys"):
            # 3.13+: a mapping by name (3.12 betas: by opcode); missing means
            # 0. 3.15 makes it a frozendict, which is not a dict subclass.
            v = ice.get(names[op])
            if v is None:
                v = ice.get(op, 0)
            return int(v)
        if op < len(ice):
            return int(ice[op])
        return 0

    # ---- has* lists ------------------------------------------------------
    lists = {}
    for ln in LIST_NAMES:
        v = getattr(opcode, ln, None)
        if v is None:
            continue
        lists[ln] = sorted(set(int(x) for x in v if int(x) < 256))

    hasarg = lists.get("hasarg")
    have_argument = int(opcode.HAVE_ARGUMENT)

    def has_arg_raw(op):
        if vi >= (3, 12) and hasarg is not None:
            return op in hasarg
        return op >= have_argument

    is_backward = getattr(dis, "_is_backward_jump", None)

    opcodes = []
    for i in range(256):
        n = names[i]
        b = base[i]
        entry = {
            "op": i,
            "name": n,
            "base": names[b],
            "base_op": b,
        }
        if n is None:
            entry.update(
                cache_entries=0,
                has_arg=False,
                specialized=False,
                instrumented=False,
                adaptive=False,
                no_static_base=False,
                backward_jump=False,
                lists=[],
            )
            opcodes.append(entry)
            continue
        # Properties of the instruction this byte stands for: for specialized
        # and instrumented forms that is the base instruction.
        src = i if no_static_base[i] else b
        if vi >= (3, 12):
            # The family head carries the adaptive counter in its first cache
            # entry; heads without caches (3.12 LOAD_FAST superinstructions,
            # 3.13 RESUME) are rewritten statically, not adaptively.
            adaptive = n in specs and cache_of(b) > 0
        else:
            adaptive = n in family_of and n.endswith("_ADAPTIVE")
        back = False
        if callable(is_backward) and names[src] is not None:
            try:
                back = bool(is_backward(src))
            except Exception:
                back = False
        entry.update(
            cache_entries=0 if no_static_base[i] else cache_of(b),
            has_arg=has_arg_raw(src),
            specialized=(b != i and not instrumented[i]),
            instrumented=instrumented[i],
            adaptive=adaptive,
            no_static_base=no_static_base[i],
            backward_jump=back,
            lists=sorted(ln for ln, ops in lists.items() if ln != "hasarg" and src in ops),
        )
        opcodes.append(entry)

    spec_enabled = getattr(opcode, "ENABLE_SPECIALIZATION", None)
    try:
        import _opcode

        spec_enabled = getattr(_opcode, "ENABLE_SPECIALIZATION", spec_enabled)
    except ImportError:
        pass

    out = {
        "version": {
            "major": vi[0],
            "minor": vi[1],
            "micro": vi[2],
            "releaselevel": vi[3],
            "free_threaded": free_threaded(),
            "implementation": impl,
        },
        "have_argument": have_argument,
        "extended_arg": int(opcode.EXTENDED_ARG),
        "specialization_enabled": None if spec_enabled is None else bool(spec_enabled),
        "opcodes": opcodes,
        "lists": lists,
        "specializations": dict((k, list(v)) for k, v in specs.items()),
    }
    sys.stdout.write(json.dumps(out, indent=1, sort_keys=True))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
