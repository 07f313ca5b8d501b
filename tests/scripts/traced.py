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


def main():
    sys.stdout.write("truth %s\n" % base_opcodes(int_loop.__code__))
    sys.settrace(tracer)
    int_loop(10)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        int_loop(1000)


main()
