# Two threads run the same function at the same time on differently typed data (ints in
# one, floats in the other) for argv[1] seconds, then each writes its own view of the
# bytecode it executes to argv[2] (JSON). On a free-threaded 3.14+ build each thread
# executes its own copy of the bytecode (thread-local bytecode), so each specializes
# `t + b` for its own types.
#
# A thread's own copy: `_testinternalcapi.get_tlbc(func)` (the calling thread's copy, as
# bytes). `dis.get_instructions(code, adaptive=True)` is no use for that: it reads
# `code._co_code_adaptive`, which is always the main copy (entry 0 of co_tlbc). The bytes
# are decoded with dis's own tables; the decoder is first checked against dis on the
# main copy, so a wrong decoder fails here rather than in the comparison.
import dis
import json
import sys
import threading
import time

try:
    import _testinternalcapi
except ImportError:
    _testinternalcapi = None


def add(a, b, n):
    t = a
    for _ in range(n):
        t = t + b * b - b  # MARK:add
    return t


def names():
    import _opcode_metadata as meta
    base_of = {}
    for base, specs in meta._specializations.items():
        for s in specs:
            base_of[s] = base
    return dis._all_opname, base_of


def decode(raw):
    opname, base_of = names()
    rows, i = [], 0
    while i + 1 < len(raw):
        name = opname[raw[i]]
        base = base_of.get(name, name)
        rows.append({"offset": i, "opname": name, "base": base})
        i += 2 * (1 + dis._inline_cache_entries.get(base, 0))
    return rows


def check_decoder():
    code = add.__code__
    mine = [(r["offset"], r["opname"]) for r in decode(code._co_code_adaptive)]
    theirs = [(i.offset, i.opname) for i in dis.get_instructions(code, adaptive=True)]
    if mine != theirs:
        sys.stderr.write("decoder disagrees with dis: %r vs %r\n" % (mine, theirs))
        sys.exit(3)


def own_view():
    get_tlbc = getattr(_testinternalcapi, "get_tlbc", None)
    if get_tlbc is None:
        return None, "no _testinternalcapi.get_tlbc"
    raw = get_tlbc(add)
    if raw is None:
        return None, "this thread has no copy of its own"
    return decode(raw), "_testinternalcapi.get_tlbc"


def worker(a, b, end, views, started):
    started.release()
    while time.time() < end:
        add(a, b, 2000)
    view, source = own_view()
    views[threading.current_thread().name] = {
        "ident": threading.get_ident(),
        "source": source,
        "instructions": view,
    }


def main(seconds, path):
    check_decoder()
    views = {}
    end = time.time() + seconds
    started = threading.Semaphore(0)
    threads = [
        threading.Thread(target=worker, name="ints", args=(1, 1, end, views, started)),
        threading.Thread(target=worker, name="floats", args=(1.0, 0.5, end, views, started)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        started.acquire()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for t in threads:
        t.join()
    out = {
        "gil_disabled": not getattr(sys, "_is_gil_enabled", lambda: True)(),
        "add_first_line": add.__code__.co_firstlineno,
        "threads": views,
    }
    with open(path, "w") as f:
        json.dump(out, f)


main(float(sys.argv[1]), sys.argv[2])
