# Recursion to argv[1] frames (default 5000), then sleep at the bottom.
import sys
import time

sys.setrecursionlimit(100000)


def down(n):
    if n > 0:
        return down(n - 1)  # MARK:recurse
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        time.sleep(1000)  # MARK:bottom


down(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
