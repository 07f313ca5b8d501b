# A target with a trace function installed (sys.settrace: on 3.12+ this instruments the
# bytecode with INSTRUMENTED_* opcodes), running a hot loop forever.
import dis
import sys


def tracer(frame, event, arg):
    return tracer


def int_loop(n):
    t = 0
    for i in range(n):
        t = t + i * 2
    return t


def base_opcodes(code):
    # The uninstrumented instructions, as "offset:OPNAME" (the truth for the test).
    if not hasattr(dis, "get_instructions"):
        return ""
    return " ".join("%d:%s" % (i.offset, i.opname) for i in dis.get_instructions(code))


def all_opnames():
    # Every instruction name this interpreter has, from its own modules: dis.opname, and
    # the specialized forms (3.11/3.12 opcode, 3.13+ _opcode_metadata).
    import opcode
    names = set(n for n in dis.opname if not n.startswith("<"))
    names.update(getattr(opcode, "_specialized_instructions", []))
    for v in getattr(opcode, "_specializations", {}).values():
        names.update(v)
    try:
        import _opcode_metadata
        for v in _opcode_metadata._specializations.values():
            names.update(v)
        names.update(getattr(_opcode_metadata, "opmap", {}).keys())
    except ImportError:
        pass
    return " ".join(sorted(names))


def main():
    sys.stdout.write("opnames %s\n" % all_opnames())
    sys.stdout.write("truth %s\n" % base_opcodes(int_loop.__code__))
    sys.settrace(tracer)
    int_loop(10)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        int_loop(1000)


main()
