# Recursion to argv[1] frames (default 5000), then sleep at the bottom (with argv[2] ==
# "spin": a C call that runs forever on the CPU, at the same line).
import itertools
import sys
import time

SPIN = sys.argv[2:] == ["spin"]

sys.setrecursionlimit(100000)


def down(n):
    if n > 0:
        return down(n - 1)  # MARK:recurse
    block, arg = (sum, itertools.repeat(1, 10 ** 15)) if SPIN else (time.sleep, 1000)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        block(arg)  # MARK:bottom


down(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
