"""Benchmark target: a fixed amount of pure-Python work, timed by the target itself.

usage: python work.py ITERATIONS DEPTH
Recurses to DEPTH frames, prints "ready", waits for a line on stdin, runs the work,
prints "elapsed SECONDS" and exits. Without stdin (a terminal) it starts at once.
"""
import sys
import time


class Point(object):
    def __init__(self, x, y):
        self.x = x
        self.y = y


def step(p, k):
    p.x = (p.x * 31 + k) % 1000003
    p.y = p.y + p.x * 0.5
    return p.x & 7


def work(iterations):
    p = Point(1, 0.0)
    acc = 0
    for i in range(iterations):
        acc += step(p, i)
        if acc > 1 << 40:
            acc = 0
    return acc


def recurse(n, iterations):
    if n > 0:
        return recurse(n - 1, iterations)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    if not sys.stdin.isatty():
        sys.stdin.readline()
    t0 = time.perf_counter()
    work(iterations)
    elapsed = time.perf_counter() - t0
    sys.stdout.write("elapsed %.6f\n" % elapsed)
    sys.stdout.flush()


def main():
    iterations = int(sys.argv[1])
    depth = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    sys.setrecursionlimit(max(1000, depth + 100))
    # <module> + main + recurse chain; work() and step() add two more frames
    recurse(max(0, depth - 3), iterations)


main()
