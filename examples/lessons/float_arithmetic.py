"""Lesson: float arithmetic. BINARY_OP specializes to BINARY_OP_MULTIPLY_FLOAT /
BINARY_OP_ADD_FLOAT when both operands are floats; mixing ints and floats keeps the
generic BINARY_OP."""
import sys
import time


def dot_floats(xs, ys):
    s = 0.0
    for i in range(len(xs)):
        s = s + xs[i] * ys[i]
    return s


def dot_mixed(xs, ys):
    s = 0
    for i in range(len(xs)):
        s = s + xs[i] * ys[i]
    return s


def main(seconds):
    xs = [float(i) for i in range(1000)]
    ys = [float(i % 13) for i in range(1000)]
    ints = list(range(1000))
    end = time.time() + seconds
    while time.time() < end:
        dot_floats(xs, ys)
        dot_mixed(ints, ys)


main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)
