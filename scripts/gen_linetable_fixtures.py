#!/usr/bin/env python
# -*- coding: utf-8 -*-
"""Line-table fixtures: what each CPython says about its own line tables.

Compiles tests/scripts/linetable_sample.py (plus the version-gated strings in
its EXTRA_SOURCES), walks every nested code object, and emits JSON with, for
each code object:

  path         qualified path ("sample:<module>/Klass/method", duplicates get "#n")
  firstlineno  co_firstlineno
  code_len     len(co_code) in bytes
  table        the raw line table as hex (co_lnotab <= 3.9, co_linetable 3.10+)
  offsets      (<= 3.5 only, where instructions are 1 or 3 bytes) the instruction
               offsets; from 3.6 on the offsets are 0, 2, 4, ... < code_len
  lines        the line of each offset as the interpreter computes it:
                 <= 3.9  dis.findlinestarts() applied per offset
                 3.10+   co_lines() (the table PyCode_Addr2Line walks)
               null = no line
  positions    (3.11+) co_positions() for each 2-byte code unit:
               [line, end_line, col, end_col], nulls where None

On 3.11+ the sample is compiled a second time in a child interpreter started
with `-X no_debug_ranges`, whose tables use the no-column entry kind; those
code objects carry the prefix "no_debug_ranges:".

Runs under any interpreter 2.7 - 3.13, stdlib only.

Usage:
  python  scripts/gen_linetable_fixtures.py [--out FILE]   # this interpreter -> stdout/FILE
  python3 scripts/gen_linetable_fixtures.py --all          # every interpreter -> fixtures
  python3 scripts/gen_linetable_fixtures.py --all --check  # compare, exit 1 on drift

--all runs this script under every interpreter in INTERPRETERS plus the
colon-separated paths in $PYPROF_PYTHONS, and writes
tests/fixtures/linetables/pyX.Y.json. An interpreter with a tag (the Debian
/usr/bin/python3.11, and every $PYPROF_PYTHONS entry) gets its own file
pyX.Y-TAG.json only if its output differs from pyX.Y.json. Missing
interpreters are reported as "SKIP <interp>: not found" and do not fail.
"""
from __future__ import print_function

import binascii
import dis
import json
import os
import re
import subprocess
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SAMPLE = os.path.join(ROOT, "tests", "scripts", "linetable_sample.py")
SAMPLE_NAME = "tests/scripts/linetable_sample.py"
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "linetables")
FORMAT = 1

PYENV = "/root/.pyenv/versions"
# (executable, tag). tag None: the reference interpreter for its X.Y, writes pyX.Y.json.
INTERPRETERS = [
    (PYENV + "/2.7.18/bin/python", None),
    (PYENV + "/3.6.15/bin/python", None),
    (PYENV + "/3.7.16/bin/python", None),
    (PYENV + "/3.8.18/bin/python", None),
    (PYENV + "/3.9.18/bin/python", None),
    (PYENV + "/3.10.13/bin/python", None),
    (PYENV + "/3.11.7/bin/python", None),
    (PYENV + "/3.12.1/bin/python", None),
    (PYENV + "/3.13.0/bin/python", None),
    ("/usr/bin/python3.11", "debian"),
]

VARIANT_NO_DEBUG_RANGES = "no_debug_ranges"


# --------------------------------------------------------------------------- #
# Generation (runs under the interpreter being described)
# --------------------------------------------------------------------------- #

def version():
    return sys.version_info[0], sys.version_info[1]


def table_kind():
    v = version()
    if v <= (3, 9):
        return "lnotab"
    if v == (3, 10):
        return "pep626"
    return "pep657"


def byte_list(b):
    if isinstance(b, str):  # Python 2
        return [ord(c) for c in b]
    return list(bytearray(b))


def to_hex(b):
    return binascii.hexlify(b).decode("ascii")


def instruction_offsets(co):
    code = byte_list(co.co_code)
    if version() >= (3, 6):
        return list(range(0, len(code), 2))
    offsets = []
    i = 0
    while i < len(code):
        offsets.append(i)
        i += 3 if code[i] >= dis.HAVE_ARGUMENT else 1
    return offsets


def lnotab_lines(co, offsets):
    """dis.findlinestarts() semantics applied to every offset."""
    starts = list(dis.findlinestarts(co))
    lines = []
    k = -1
    for off in offsets:
        while k + 1 < len(starts) and starts[k + 1][0] <= off:
            k += 1
        lines.append(starts[k][1] if k >= 0 else None)
    return lines


def co_lines_per_unit(co, n_units):
    lines = [None] * n_units
    for start, end, line in co.co_lines():
        for off in range(start, end, 2):
            if off // 2 < n_units:
                lines[off // 2] = line
    return lines


def describe(co, path):
    code_len = len(co.co_code)
    kind = table_kind()
    rec = {"path": path, "firstlineno": co.co_firstlineno, "code_len": code_len}
    if kind == "lnotab":
        offsets = instruction_offsets(co)
        rec["table"] = to_hex(co.co_lnotab)
        if version() < (3, 6):
            rec["offsets"] = offsets
        rec["lines"] = lnotab_lines(co, offsets)
    else:
        n_units = code_len // 2
        rec["table"] = to_hex(co.co_linetable)
        rec["lines"] = co_lines_per_unit(co, n_units)
        if kind == "pep657":
            positions = [list(p) for p in co.co_positions()]
            positions = positions[:n_units]
            while len(positions) < n_units:
                positions.append([None, None, None, None])
            rec["positions"] = positions
    return rec


def walk(co, path, out):
    out.append((path, co))
    seen = {}
    for const in co.co_consts:
        if isinstance(const, types.CodeType):
            key = path + "/" + const.co_name
            n = seen.get(key, 0)
            seen[key] = n + 1
            walk(const, key if n == 0 else "%s#%d" % (key, n), out)


def read_sample():
    with open(SAMPLE, "rb") as f:
        return f.read()


def compile_all(prefix):
    """Compile the sample and every EXTRA_SOURCES entry this interpreter accepts."""
    src = read_sample()
    module = compile(src, SAMPLE_NAME, "exec", 0, True)
    namespace = {"__name__": "linetable_sample", "__file__": SAMPLE}
    exec(module, namespace)
    roots = [(prefix + "sample", module)]
    for name, minimum, text in namespace["EXTRA_SOURCES"]:
        if version() >= tuple(minimum):
            roots.append((prefix + "extra:" + name,
                          compile(text, "<extra:%s>" % name, "exec", 0, True)))
    records = []
    for root_name, code in roots:
        found = []
        walk(code, root_name + ":" + code.co_name, found)
        for path, co in found:
            records.append(describe(co, path))
    return records


def table_stats(records, kind):
    """Counts of the interesting encodings present, so coverage is visible."""
    stats = {}

    def bump(key):
        stats[key] = stats.get(key, 0) + 1

    for rec in records:
        table = byte_list(binascii.unhexlify(rec["table"].encode("ascii")))
        if kind == "lnotab":
            for i in range(0, len(table) - 1, 2):
                b, l = table[i], table[i + 1]
                if b == 255:
                    bump("addr_delta_255")
                if b == 0:
                    bump("addr_delta_0")
                if l >= 128:
                    bump("line_delta_ge_128")
                if l == 255:
                    bump("line_delta_255")
                if l == 127:
                    bump("line_delta_127")
                if l == 128:
                    bump("line_delta_minus_128")
        elif kind == "pep626":
            for i in range(0, len(table) - 1, 2):
                b, l = table[i], table[i + 1]
                if b == 254:
                    bump("addr_delta_254")
                if b == 0:
                    bump("addr_delta_0")
                if l == 128:
                    bump("no_line")
                elif l > 128:
                    bump("negative_line_delta")
                if l == 127:
                    bump("line_delta_127")
                if l == 129:
                    bump("line_delta_minus_127")
        else:
            for b in table:
                if b & 0x80:
                    bump("code_%02d" % ((b >> 3) & 15))
    return stats


def generate(variant=None):
    kind = table_kind()
    if variant == VARIANT_NO_DEBUG_RANGES:
        return {"code_objects": compile_all(VARIANT_NO_DEBUG_RANGES + ":")}
    records = compile_all("")
    if kind == "pep657":
        child = subprocess.check_output(
            [sys.executable, "-E", "-B", "-X", "no_debug_ranges",
             os.path.abspath(__file__), "--variant", VARIANT_NO_DEBUG_RANGES])
        records.extend(json.loads(child.decode("utf-8"))["code_objects"])
    major, minor = version()
    data = {
        "format": FORMAT,
        "python": "%d.%d.%d" % sys.version_info[:3],
        "major": major,
        "minor": minor,
        "kind": kind,
        "sample": SAMPLE_NAME,
        "code_objects": records,
    }
    if kind == "lnotab":
        data["signed_line_deltas"] = version() >= (3, 6)
    data["table_stats"] = table_stats(records, kind)
    data["n_code_objects"] = len(records)
    data["n_offsets"] = sum(len(r["lines"]) for r in records)
    return data


def dumps(data):
    """Stable text: header keys first, then one code object per line."""
    head = dict((k, v) for k, v in data.items() if k != "code_objects")
    lines = ["{"]
    for key in sorted(head):
        lines.append("%s: %s," % (json.dumps(key), json.dumps(head[key], sort_keys=True)))
    lines.append('"code_objects": [')
    objs = data["code_objects"]
    for i, rec in enumerate(objs):
        text = json.dumps(rec, sort_keys=True, separators=(",", ":"))
        lines.append(text + ("," if i + 1 < len(objs) else ""))
    lines.append("]")
    lines.append("}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- #
# Driver (--all): runs the generator under every interpreter
# --------------------------------------------------------------------------- #

METADATA_KEYS = ("python",)  # differences here are not drift


def comparable(data):
    return dict((k, v) for k, v in data.items() if k not in METADATA_KEYS)


def describe_drift(name, old, new, limit=25):
    out = []
    for key in sorted(set(old) | set(new)):
        if key in METADATA_KEYS or key == "code_objects":
            continue
        if old.get(key) != new.get(key):
            out.append("%s: %s: %r -> %r" % (name, key, old.get(key), new.get(key)))
    old_objs = dict((r["path"], r) for r in old.get("code_objects", []))
    new_objs = dict((r["path"], r) for r in new.get("code_objects", []))
    for path in sorted(set(old_objs) - set(new_objs)):
        out.append("%s: %s: code object gone" % (name, path))
    for path in sorted(set(new_objs) - set(old_objs)):
        out.append("%s: %s: new code object" % (name, path))
    for path in sorted(set(old_objs) & set(new_objs)):
        a, b = old_objs[path], new_objs[path]
        for key in sorted(set(a) | set(b)):
            if a.get(key) == b.get(key):
                continue
            if key in ("lines", "positions") and isinstance(a.get(key), list) \
                    and isinstance(b.get(key), list):
                xs, ys = a[key], b[key]
                if len(xs) != len(ys):
                    out.append("%s: %s: %s length %d -> %d" % (name, path, key, len(xs), len(ys)))
                diffs = [i for i in range(min(len(xs), len(ys))) if xs[i] != ys[i]]
                for i in diffs[:3]:
                    out.append("%s: %s: %s[%d]: %r -> %r" % (name, path, key, i, xs[i], ys[i]))
                if len(diffs) > 3:
                    out.append("%s: %s: %s: %d more differences" % (name, path, key, len(diffs) - 3))
            else:
                va, vb = a.get(key), b.get(key)
                if isinstance(va, str) and len(va) > 60:
                    va = va[:60] + "..."
                if isinstance(vb, str) and len(vb) > 60:
                    vb = vb[:60] + "..."
                out.append("%s: %s: %s: %r -> %r" % (name, path, key, va, vb))
    if len(out) > limit:
        out = out[:limit] + ["%s: ... %d more" % (name, len(out) - limit)]
    return out


def extra_interpreters():
    out = []
    for path in os.environ.get("PYPROF_PYTHONS", "").split(":"):
        path = path.strip()
        if path:
            tag = re.sub(r"[^A-Za-z0-9]+", "-", path).strip("-").lower() or "extra"
            out.append((path, tag))
    return out


def run_under(exe):
    out = subprocess.check_output([exe, "-E", "-B", os.path.abspath(__file__)])
    return json.loads(out.decode("utf-8"))


def load_fixture(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def driver(check):
    interpreters = INTERPRETERS + extra_interpreters()
    drift = []
    skipped = []
    produced = {}   # primary file name -> comparable data generated in this run
    handled = set()
    if not check and not os.path.isdir(FIXTURES):
        os.makedirs(FIXTURES)
    # Reference interpreters first so tagged ones compare against fresh data.
    ordered = [i for i in interpreters if i[1] is None] + [i for i in interpreters if i[1] is not None]
    for exe, tag in ordered:
        if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
            msg = "SKIP %s: not found" % exe
            print("*" * len(msg) + "\n" + msg + "\n" + "*" * len(msg))
            skipped.append(exe)
            continue
        try:
            data = run_under(exe)
        except (subprocess.CalledProcessError, OSError, ValueError) as e:
            drift.append("%s: generator failed: %s" % (exe, e))
            print("FAIL %s: generator failed: %s" % (exe, e))
            continue
        primary = "py%d.%d.json" % (data["major"], data["minor"])
        primary_path = os.path.join(FIXTURES, primary)
        summary = "%d code objects, %d offsets" % (data["n_code_objects"], data["n_offsets"])
        if tag is None:
            name = primary
        else:
            reference = produced.get(primary)
            if reference is None:
                on_disk = load_fixture(primary_path)
                reference = comparable(on_disk) if on_disk is not None else None
            if reference is None and primary not in produced:
                name = primary  # nothing to compare with: it becomes the reference
            elif reference == comparable(data):
                tagged = "py%d.%d-%s.json" % (data["major"], data["minor"], tag)
                tagged_path = os.path.join(FIXTURES, tagged)
                print("same %s (%s): identical to %s, no separate file" % (exe, data["python"], primary))
                if os.path.exists(tagged_path):
                    if check:
                        drift.append("%s: stale, %s now matches %s" % (tagged, exe, primary))
                    else:
                        os.remove(tagged_path)
                        print("removed stale %s" % tagged)
                handled.add(primary)
                continue
            else:
                name = "py%d.%d-%s.json" % (data["major"], data["minor"], tag)
        path = os.path.join(FIXTURES, name)
        handled.add(name)
        if name == primary:
            produced[primary] = comparable(data)
        if check:
            old = load_fixture(path)
            if old is None:
                drift.append("%s: missing (from %s)" % (name, exe))
                print("DRIFT %s: fixture missing for %s" % (name, exe))
            elif comparable(old) != comparable(data):
                lines = describe_drift(name, old, data)
                drift.extend(lines or ["%s: differs" % name])
                print("DRIFT %s (%s %s)" % (name, exe, data["python"]))
                for line in lines:
                    print("  " + line)
            else:
                print("ok   %s (%s %s): %s" % (name, exe, data["python"], summary))
        else:
            with open(path, "w") as f:
                f.write(dumps(data))
            print("wrote %s (%s %s): %s" % (name, exe, data["python"], summary))
    if os.path.isdir(FIXTURES):
        for fname in sorted(os.listdir(FIXTURES)):
            if fname.endswith(".json") and fname not in handled:
                msg = "SKIP %s: not checked, no interpreter produced it in this run" % fname
                print("*" * len(msg) + "\n" + msg + "\n" + "*" * len(msg))
    if skipped:
        print("%d interpreter(s) skipped: %s" % (len(skipped), ", ".join(skipped)))
    if check:
        if drift:
            print("FAILED: %d drift(s)" % len(drift))
            return 1
        print("no drift")
    return 0


def main(argv):
    args = list(argv)
    if "--variant" in args:
        variant = args[args.index("--variant") + 1]
        sys.stdout.write(json.dumps(generate(variant)))
        return 0
    if "--all" in args:
        return driver("--check" in args)
    if "--check" in args:
        print("--check needs --all", file=sys.stderr)
        return 2
    text = dumps(generate())
    if "--out" in args:
        with open(args[args.index("--out") + 1], "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
