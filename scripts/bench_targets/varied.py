"""Benchmark target with many distinct stacks: root() picks one of four functions, each
of which picks one of four on the next level, five levels (4^5 = 1,024 root-to-leaf call
paths, each call on its own line, thousands of distinct stacks with line numbers); a
random path per call, a little work in each leaf. Runs until killed (or for argv[1]
seconds if given).

usage: python varied.py [SECONDS]
"""
import random
import sys
import time

LEVELS = 5
FANOUT = 4

src = []
for level in range(LEVELS):
    for i in range(FANOUT):
        src.append("def f%d_%d(r):" % (level, i))
        if level == LEVELS - 1:
            src.append("    x = 0")
            src.append("    for j in range(200 + 50 * (r & 3)):")
            src.append("        x += j * %d" % (i + 1))
            src.append("    return x")
        else:
            src.append("    k = r & 3")
            src.append("    r >>= 2")
            for k in range(FANOUT):
                kw = "if" if k == 0 else "elif"
                src.append("    %s k == %d:" % (kw, k))
                src.append("        return f%d_%d(r)" % (level + 1, k))
        src.append("")
code = compile("\n".join(src), "varied_tree.py", "exec")
exec(code, globals())


def root(r):
    k = r & 3
    r >>= 2
    if k == 0:
        return f0_0(r)
    elif k == 1:
        return f0_1(r)
    elif k == 2:
        return f0_2(r)
    else:
        return f0_3(r)


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else None
    rng = random.Random(1)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    t_end = time.time() + seconds if seconds else None
    n = 0
    while True:
        root(rng.getrandbits(16))
        n += 1
        if t_end is not None and n % 256 == 0 and time.time() > t_end:
            break


main()
