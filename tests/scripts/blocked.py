# A known stack that stays put: <module> -> main -> Worker.run -> leaf, blocked in a call
# on leaf's MARK:sleep line: time.sleep (off the CPU), or with argv[1] == "spin" a C call
# that runs forever on the CPU (sum over itertools.repeat).
# Test programs print "ready" once in position; tests find lines by their MARK comments.
# Before "ready" it prints, for each function of the stack, the byte offset `dis` gives
# for the call instruction on its MARK line (the one it is blocked in):
#   truth FUNCTION OFFSET LINE
import dis
import itertools
import sys
import time

SPIN = sys.argv[1:] == ["spin"]


class Worker(object):
    def run(self):
        return leaf()  # MARK:run_call


def leaf():  # MARK:leaf_def
    truth()
    block, arg = (sum, itertools.repeat(1, 10 ** 15)) if SPIN else (time.sleep, 1000)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        block(arg)  # MARK:sleep


def main():
    Worker().run()  # MARK:main_call


def marks():
    out = {}
    with open(__file__) as f:
        for i, line in enumerate(f, 1):
            if "# MARK:" in line and "MARK:" not in line.split("#")[0]:
                out[line.rsplit("# MARK:", 1)[1].strip()] = i
    return out


def instructions(code):
    """(offset, opname, line) of every instruction, from dis."""
    if hasattr(dis, "get_instructions"):
        line = None
        for ins in dis.get_instructions(code):
            ln = getattr(ins, "line_number", None)
            if ln is None and not isinstance(ins.starts_line, bool):
                ln = ins.starts_line if ins.starts_line is not None else line
            line = ln if ln is not None else line
            yield ins.offset, ins.opname, line
        return
    # 2.7: decode co_code by hand.
    starts = dict(dis.findlinestarts(code))
    raw, i, line = bytearray(code.co_code), 0, None
    while i < len(raw):
        line = starts.get(i, line)
        op = raw[i]
        yield i, dis.opname[op], line
        i += 3 if op >= dis.HAVE_ARGUMENT else 1


def call_offset(code, line):
    calls = [o for o, name, ln in instructions(code)
             if ln == line and name.startswith("CALL") and not name.startswith("CALL_INTRINSIC")]
    return calls[-1] if calls else -1


def truth():
    m = marks()
    module_code = sys._getframe(4).f_code  # truth <- leaf <- run <- main <- module
    for name, code, mark in [
        ("<module>", module_code, "module_call"),
        ("main", main.__code__, "main_call"),
        ("Worker.run" if sys.version_info >= (3, 11) else "run", Worker.run.__code__, "run_call"),
        ("leaf", leaf.__code__, "sleep"),
    ]:
        sys.stdout.write("truth %s %d %d\n" % (name, call_offset(code, m[mark]), m[mark]))


main()  # MARK:module_call
