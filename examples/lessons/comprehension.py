"""Lesson: comprehensions. Before 3.12 a list comprehension is a function of its own
(<listcomp>) called with CALL; 3.12 inlines it (PEP 709) into the enclosing function,
so the flamegraph loses a level and the opcodes show LOAD_FAST_AND_CLEAR."""
import sys
import time


def squares(n):
    return [i * i for i in range(n) if i % 3]


def squares_loop(n):
    out = []
    for i in range(n):
        if i % 3:
            out.append(i * i)
    return out


def main(seconds):
    end = time.time() + seconds
    while time.time() < end:
        squares(2000)
        squares_loop(2000)


main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)
