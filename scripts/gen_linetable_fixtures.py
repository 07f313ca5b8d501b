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

Runs under any interpreter 2.7 - 3.15, stdlib only. A free-threaded build
adds "free_threaded": true to the header (metadata, like "python").

Usage:
  python  scripts/gen_linetable_fixtures.py [--out FILE]   # this interpreter -> stdout/FILE
  python3 scripts/gen_linetable_fixtures.py --all          # every interpreter -> fixtures
  python3 scripts/gen_linetable_fixtures.py --all --check  # compare, exit 1 on drift

--all runs this script under every interpreter in INTERPRETERS plus the
entries of $PYPROF_PYTHONS, and writes tests/fixtures/linetables/pyX.Y.json.
$PYPROF_PYTHONS is colon-separated; each entry is a plain interpreter path or
LABEL=COMMAND ARGS (e.g. "3.14=chroot /opt/sid python3.14"), the format
tests/common/mod.rs reads. LABEL is free text: the version comes from the
interpreter's own output.

Every interpreter gets this script and the sample on stdin (`CMD -E -B -`,
see bootstrap()), so one behind a command prefix such as a chroot, which
cannot see this checkout, works like any other; so does its -X
no_debug_ranges child.

An interpreter with a tag (the Debian /usr/bin/python3.11, and every
$PYPROF_PYTHONS entry) gets its own file only if its output differs from
every file of its X.Y produced in this run (or from the committed pyX.Y.json
when that one's interpreter is absent; pyX.Y.json itself when there is
none yet). Its own file is pyX.Y-TAG.json, TAG being the label without a
leading version ("3.14-dbg" -> py3.14-dbg.json) or, for a label that is just
the version, the full version ("3.13" = 3.13.15 -> py3.13-3.13.15.json); a
free-threaded build's is pyX.Yt.json. Default builds are placed before
free-threaded ones, so 3.13t is compared with 3.13. Missing interpreters
(for `chroot DIR PROG`: DIR, or PROG inside it) are reported as
"SKIP <interp>: not found" and do not fail; fixture files no interpreter
produced are reported as SKIP, not checked.
"""
from __future__ import print_function

import binascii
import dis
import json
import os
import re
import shlex
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


def free_threaded():
    try:
        import sysconfig
        return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    except Exception:
        return False


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


def embedded():
    """(generator hex, sample hex) when this script was fed on stdin through
    bootstrap(), else None (run from its file)."""
    return globals().get("_PYPROF_EMBEDDED")


def read_sample():
    emb = embedded()
    if emb is not None:
        return binascii.unhexlify(emb[1].encode("ascii"))
    with open(SAMPLE, "rb") as f:
        return f.read()


def bootstrap(generator_src, sample_src):
    """A self-contained program (for `python -`) that runs this generator on
    the given sample: how interpreters behind a command prefix such as
    `chroot /opt/sid python3.14` get both files without seeing the checkout."""
    gen_hex = to_hex(generator_src)
    return ("import binascii, sys\n"
            "_emb = (%r, %r)\n"
            "_ns = {'__name__': '__main__', '__file__': %r,\n"
            "       '__builtins__': __builtins__, '_PYPROF_EMBEDDED': _emb}\n"
            "exec(compile(binascii.unhexlify(_emb[0].encode('ascii')), %r, 'exec', 0, True), _ns)\n"
            % (str(gen_hex), str(to_hex(sample_src)),
               "/pyprof-stdin/scripts/gen_linetable_fixtures.py",
               "scripts/gen_linetable_fixtures.py")).encode("ascii")


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
        emb = embedded()
        if emb is None:
            child = subprocess.check_output(
                [sys.executable, "-E", "-B", "-X", "no_debug_ranges",
                 os.path.abspath(__file__), "--variant", VARIANT_NO_DEBUG_RANGES])
        else:
            # Fed on stdin (e.g. inside a chroot): feed the child the same way.
            p = subprocess.Popen(
                [sys.executable, "-E", "-B", "-X", "no_debug_ranges", "-",
                 "--variant", VARIANT_NO_DEBUG_RANGES],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            child, _ = p.communicate(bootstrap(binascii.unhexlify(emb[0].encode("ascii")),
                                               read_sample()))
            if p.returncode != 0:
                raise SystemExit("no_debug_ranges child failed (exit %d)" % p.returncode)
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
    if free_threaded():
        data["free_threaded"] = True
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

# Differences here are not drift (and do not make a tagged interpreter's output
# differ from its reference: 3.13t is compared with 3.13 on the tables alone).
METADATA_KEYS = ("python", "free_threaded")


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


VERSION_LABEL_RE = re.compile(r"^(\d+)\.(\d+)(t?)$")


def parse_pythons_env(value):
    """PYPROF_PYTHONS: colon-separated entries, each a plain interpreter path or
    `LABEL=COMMAND ARGS...` (e.g. `3.14=chroot /opt/sid python3.14`); the
    format tests/common/mod.rs reads. Returns [(label or None, argv)]."""
    out = []
    for item in (value or "").split(":"):
        item = item.strip()
        if not item:
            continue
        label, cmd = None, item
        if "=" in item:
            label, cmd = item.split("=", 1)
            label = label.strip() or None
        argv = shlex.split(cmd)
        if argv:
            out.append((label, argv))
    return out


def which(prog, root=None):
    """Whether `prog` is an executable (on PATH, or on the usual PATH inside `root`)."""
    if root is None and "/" in prog:
        return os.path.isfile(prog) and os.access(prog, os.X_OK)
    if root is None:
        dirs = os.environ.get("PATH", os.defpath).split(os.pathsep)
        cands = [os.path.join(d, prog) for d in dirs]
    elif "/" in prog:
        cands = [root.rstrip("/") + "/" + prog.lstrip("/")]
    else:
        cands = [os.path.join(root, d, prog) for d in
                 ("usr/local/sbin", "usr/local/bin", "usr/sbin", "usr/bin", "sbin", "bin")]
    return any(os.path.isfile(c) and os.access(c, os.X_OK) for c in cands)


def present(argv):
    """Whether a command can be expected to run; `chroot DIR PROG` is looked into."""
    if not which(argv[0]):
        return False
    if os.path.basename(argv[0]) == "chroot":
        rest = [a for a in argv[1:] if not a.startswith("-")]
        return len(rest) >= 2 and os.path.isdir(rest[0]) and which(rest[1], rest[0])
    return True


def label_tag(label, argv):
    """File-name tag of an extra interpreter: its label without a leading
    version ("3.14-dbg" -> "dbg", "3.13" -> ""), or, unlabelled, its command."""
    text = label if label is not None else " ".join(argv)
    if label is not None:
        text = re.sub(r"^\d+\.\d+t?", "", text)
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


class Interp(object):
    """argv: the command. tag: None for a reference interpreter (writes pyX.Y.json),
    else a file-name tag (possibly empty) for an own file if its output differs."""

    def __init__(self, argv, tag, label=None, explicit=False):
        self.argv = argv
        self.tag = tag
        self.label = label
        self.explicit = explicit

    def __str__(self):
        cmd = " ".join(self.argv)
        return "%s=%s" % (self.label, cmd) if self.label else cmd


def interpreters():
    """(present interpreters, [description] of absent ones). References first,
    then extras whose label is a plain version ("3.14"), then the rest, so that
    "3.14" rather than "3.14-dbg" writes py3.14.json when both are new."""
    out, missing, seen = [], [], set()

    def add(it):
        key = os.path.realpath(it.argv[0]) if len(it.argv) == 1 else tuple(it.argv)
        if key in seen:
            return
        seen.add(key)
        out.append(it)

    for exe, tag in INTERPRETERS:
        if which(exe):
            add(Interp([exe], tag))
        else:
            missing.append(exe)
    for label, argv in parse_pythons_env(os.environ.get("PYPROF_PYTHONS", "")):
        it = Interp(argv, label_tag(label, argv), label=label, explicit=True)
        if present(argv):
            add(it)
        else:
            missing.append(str(it))

    def rank(it):
        if it.tag is None:
            return 0
        return 1 if it.label and VERSION_LABEL_RE.match(it.label) else 2
    return sorted(out, key=rank), missing


def run_under(argv):
    """Run the generator under an interpreter, fed (with the sample) on stdin."""
    with open(os.path.abspath(__file__), "rb") as f:
        gen_src = f.read()
    with open(SAMPLE, "rb") as f:
        sample_src = f.read()
    p = subprocess.Popen(argv + ["-E", "-B", "-"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(bootstrap(gen_src, sample_src))
    if p.returncode != 0:
        raise RuntimeError("exit %d: %s" % (p.returncode, err.decode("utf-8", "replace").strip()))
    return json.loads(out.decode("utf-8"))


def loud(msg):
    print("*" * len(msg) + "\n" + msg + "\n" + "*" * len(msg))


def load_fixture(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def driver(check):
    interps, missing = interpreters()
    drift = []
    skipped = []
    produced = {}   # primary file name -> comparable data generated in this run
    handled = set()
    if not check and not os.path.isdir(FIXTURES):
        os.makedirs(FIXTURES)
    for desc in missing:
        loud("SKIP %s: not found" % desc)
        skipped.append(desc)
    runs = []
    for i, it in enumerate(interps):
        try:
            data = run_under(it.argv)
        except (RuntimeError, OSError, ValueError) as e:
            drift.append("%s: generator failed: %s" % (it, e))
            print("FAIL %s: generator failed: %s" % (it, e))
            continue
        runs.append((i, it, data))
    # Default builds before free-threaded ones, so 3.13t is compared with 3.13.
    runs.sort(key=lambda r: (r[1].tag is not None, bool(r[2].get("free_threaded")), r[0]))
    for _, it, data in runs:
        base = "py%d.%d" % (data["major"], data["minor"])
        primary = base + ".json"
        primary_path = os.path.join(FIXTURES, primary)
        summary = "%d code objects, %d offsets" % (data["n_code_objects"], data["n_offsets"])
        if it.tag is None:
            name = primary
        else:
            # Own file name if the output differs from the reference: a
            # free-threaded build is pyX.Yt[-TAG].json, anything else
            # pyX.Y-TAG.json (TAG the full version when the label is just X.Y).
            ft = data.get("free_threaded", False)
            tag = it.tag
            if ft:
                tag = re.sub(r"^t(-|$)", "", tag)
                own = base + "t" + ("-" + tag if tag else "") + ".json"
            else:
                own = "%s-%s.json" % (base, tag or data["python"])
            # References: every file of this X.Y produced in this run (or the
            # committed pyX.Y.json when its interpreter is absent).
            refs = list(produced.get(base, []))
            if not any(n == primary for n, _ in refs):
                on_disk = load_fixture(primary_path)
                if on_disk is not None:
                    refs.insert(0, (primary, comparable(on_disk)))
            match = [n for n, d in refs if d == comparable(data)]
            reference = refs[0][1] if refs else None
            if reference is None:
                name = primary  # nothing to compare with: it becomes the reference
            elif match:
                own_path = os.path.join(FIXTURES, own)
                print("same %s (%s): identical to %s, no separate file" % (it, data["python"], match[0]))
                if os.path.exists(own_path):
                    if check:
                        drift.append("%s: stale, %s now matches %s" % (own, it, match[0]))
                        print("DRIFT %s: stale, %s now matches %s" % (own, it, match[0]))
                    else:
                        os.remove(own_path)
                        print("removed stale %s" % own)
                handled.add(match[0])
                continue
            else:
                name = own
                print("note %s (%s): differs from %s, own file %s:"
                      % (it, data["python"], " and ".join(n for n, _ in refs), name))
                for line in describe_drift(refs[0][0], reference, data, limit=8):
                    print("  " + line)
        path = os.path.join(FIXTURES, name)
        handled.add(name)
        produced.setdefault(base, []).append((name, comparable(data)))
        if check:
            old = load_fixture(path)
            if old is None:
                drift.append("%s: missing (from %s)" % (name, it))
                print("DRIFT %s: fixture missing for %s" % (name, it))
            elif comparable(old) != comparable(data):
                lines = describe_drift(name, old, data)
                drift.extend(lines or ["%s: differs" % name])
                print("DRIFT %s (%s %s)" % (name, it, data["python"]))
                for line in lines:
                    print("  " + line)
            else:
                print("ok   %s (%s %s): %s" % (name, it, data["python"], summary))
        else:
            with open(path, "w") as f:
                f.write(dumps(data))
            print("wrote %s (%s %s): %s" % (name, it, data["python"], summary))
    if os.path.isdir(FIXTURES):
        for fname in sorted(os.listdir(FIXTURES)):
            if fname.endswith(".json") and fname not in handled:
                loud("SKIP %s: not checked, no interpreter produced it in this run" % fname)
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
