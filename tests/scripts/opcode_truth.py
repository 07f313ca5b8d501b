# Hot loops for argv[1] seconds; then the program writes its own view of its bytecode
# (dis.get_instructions(code, adaptive=True) on 3.11+, plain dis before) to argv[2], the
# ground truth pyprof's opcode capture is checked against. Some specialized instructions
# change while the program runs (3.11's CALL of a comprehension flips between
# CALL_ADAPTIVE and CALL_PY_EXACT_ARGS): on 3.11+ the program also keeps every version of
# its live bytecode (co._co_code_adaptive, a cheap copy, taken between the loops every
# 0.1 s) and lists every name an instruction had as "opnames" (dis._all_opname of the
# byte at the offset), the last one as "opname".
import dis
import json
import sys
import time


class Point(object):
    def __init__(self, x, y):
        self.x = x
        self.y = y


def attr_loop(points):
    s = 0.0
    for p in points:
        s += p.x * p.y
    return s


def int_loop(n):
    t = 0
    for i in range(n):
        t = t + i * 2
    return t


def callee(a, b):
    return a + b


def call_loop(n):
    t = 0
    for i in range(n):
        t = callee(t, i)
    return t


def comp(n):
    return sum([i * i for i in range(n) if i % 3])


FUNCS = [attr_loop, int_loop, callee, call_loop, comp]


def code_objects(code):
    yield code
    for c in code.co_consts:
        if hasattr(c, "co_code"):
            for sub in code_objects(c):
                yield sub


def decode_py2(code):
    # dis.get_instructions does not exist in 2.7: decode co_code by hand.
    raw = bytearray(code.co_code)
    rows, i = [], 0
    while i < len(raw):
        op = raw[i]
        rows.append({"offset": i, "opname": dis.opname[op], "base": dis.opname[op]})
        i += 3 if op >= dis.HAVE_ARGUMENT else 1
    return rows


def instructions(code):
    if not hasattr(dis, "get_instructions"):
        return decode_py2(code)
    if sys.version_info >= (3, 11):
        live = list(dis.get_instructions(code, adaptive=True))
        base = dict((i.offset, i.opname) for i in dis.get_instructions(code))
    else:
        live = list(dis.get_instructions(code))
        base = dict((i.offset, i.opname) for i in live)
    return [{"offset": i.offset, "opname": i.opname, "base": base.get(i.offset, i.opname)} for i in live]


def all_codes(extra):
    out = []
    for top in [f.__code__ for f in FUNCS] + extra:
        out.extend(code_objects(top))
    return out


def truth(extra, seen):
    out = []
    for code in all_codes(extra):
        rows = instructions(code)
        for row in rows:
            names = [row["opname"]]
            for raw in seen.get(code, ()):
                off = row["offset"]
                if off < len(raw):
                    name = dis._all_opname[bytearray(raw)[off]]
                    if name not in names:
                        names.append(name)
            row["opnames"] = names
        out.append({
            "function": getattr(code, "co_qualname", code.co_name),
            "first_line": code.co_firstlineno,
            "instructions": rows,
        })
    return out


def main(seconds, path):
    # Every function that runs while pyprof samples is in the truth: main and the module
    # too, so that a sample pyprof attributes to a function that is not is a failure.
    extra = [main.__code__, sys._getframe(1).f_code]
    points = [Point(float(i), float(i % 7)) for i in range(200)]
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    codes = all_codes(extra)
    live = sys.version_info >= (3, 11)
    seen = dict((c, []) for c in codes)
    end = time.time() + seconds
    look = 0.0
    while time.time() < end:
        attr_loop(points)
        int_loop(500)
        call_loop(300)
        comp(300)
        if live and time.time() >= look:
            for c in codes:
                raw = c._co_code_adaptive
                if raw not in seen[c]:
                    seen[c].append(raw)
            look = time.time() + 0.1
    with open(path, "w") as f:
        json.dump(truth(extra, seen), f)


main(float(sys.argv[1]), sys.argv[2])
