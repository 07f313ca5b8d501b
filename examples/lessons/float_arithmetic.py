"""Lesson: float arithmetic.

The same dot product twice: once over two lists of floats, once over a list of ints
times a list of floats. From 3.11 BINARY_OP specializes on its operands' types.

What each Python shows (names in parentheses: the function it is sampled in):
- Python 3.10: BINARY_MULTIPLY (dot_floats), BINARY_MULTIPLY (dot_mixed): one generic
  instruction per operator.
- Python 3.12: BINARY_OP_MULTIPLY_FLOAT (dot_floats), BINARY_OP_ADD_FLOAT (dot_floats),
  BINARY_OP (dot_mixed): int times float has no specialized form, so that multiplication
  stays generic.
- Python 3.14: BINARY_OP_MULTIPLY_FLOAT (dot_floats), BINARY_OP_EXTEND (dot_mixed):
  BINARY_OP_EXTEND covers mixed int and float operands.
- Python 3.15: BINARY_OP_MULTIPLY_FLOAT (dot_floats), BINARY_OP_EXTEND (dot_mixed).
"""
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
