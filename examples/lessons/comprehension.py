"""Lesson: comprehensions.

The same list built by a comprehension and by a loop. Before 3.12 a list comprehension
is a function of its own (<listcomp>), called once per use; 3.12 inlines it into the
function that contains it (PEP 709): the flamegraph loses a level, and the bytecode
saves and restores the loop variable with LOAD_FAST_AND_CLEAR.

What each Python shows (names in parentheses: the function it is sampled in):
- Python 3.10: BINARY_MULTIPLY (<listcomp>), LIST_APPEND (<listcomp>), BINARY_MODULO
  (<listcomp>).
- Python 3.12: BINARY_OP_MULTIPLY_INT (squares), LIST_APPEND (squares), BINARY_OP
  (squares): `i % 3` has no specialized form in 3.12, so it stays generic.
- Python 3.14: BINARY_OP_MULTIPLY_INT (squares), LIST_APPEND (squares), BINARY_OP
  (squares), TO_BOOL_INT (squares): from 3.13 the test of `if i % 3` is an instruction
  of its own, specialized for ints.
- Python 3.15: BINARY_OP_MULTIPLY_INT (squares), LIST_APPEND (squares), BINARY_OP
  (squares), TO_BOOL_INT (squares).

Also visible: main's POP_TOP, where the list each call returns is thrown away
(freeing 1,333 ints and a list is real work).
"""
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
