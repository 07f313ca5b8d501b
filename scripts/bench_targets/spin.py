"""Benchmark target: recurse until the Python stack holds DEPTH frames (counting
<module>), print "ready", then spin in a pure-Python loop at the bottom forever.

usage: python spin.py DEPTH
"""
import sys


def recurse(n):
    if n > 0:
        return recurse(n - 1)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    x = 0
    while True:
        x += 1
        if x > 1000000:
            x = 0


def main():
    depth = int(sys.argv[1])
    sys.setrecursionlimit(max(1000, depth + 100))
    # <module> + main + recurse(depth - 3) ... recurse(0) = depth frames
    recurse(max(0, depth - 3))


main()
