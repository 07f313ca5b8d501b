"""Lesson: one attribute load, two object layouts (a polymorphic site).

norm2 and norm2_same are the same code. norm2 gets a list that alternates two kinds of
point: Point keeps its attributes in the instance (inline values), SlotPoint declares
__slots__. norm2_same gets only Points. A specialized attribute load remembers one
type: when another type arrives it misses, and after enough misses the interpreter
rewrites it for the type it sees now, back and forth. The profile shows each of norm2's
four loads sampled in two forms, and norm2 spends more time loading attributes than
norm2_same does for the same work.

What each Python shows (names in parentheses: the function it is sampled in):
- Python 3.10: LOAD_ATTR (norm2), LOAD_ATTR (norm2_same): no specializing interpreter,
  both loops run the same generic instruction.
- Python 3.12: LOAD_ATTR_INSTANCE_VALUE (norm2), LOAD_ATTR_SLOT (norm2),
  LOAD_ATTR_INSTANCE_VALUE (norm2_same).
- Python 3.14: LOAD_ATTR_INSTANCE_VALUE (norm2), LOAD_ATTR_SLOT (norm2),
  LOAD_ATTR_INSTANCE_VALUE (norm2_same).
- Python 3.15: LOAD_ATTR_INSTANCE_VALUE (norm2), LOAD_ATTR_SLOT (norm2),
  LOAD_ATTR_INSTANCE_VALUE (norm2_same).

The opcode report lists each of norm2's loads under "Specialization problems,
explained" as polymorphic; norm2_same's loads are not there.
"""
import sys
import time


class Point(object):
    def __init__(self, x, y):
        self.x = x
        self.y = y


class SlotPoint(object):
    __slots__ = ("x", "y")

    def __init__(self, x, y):
        self.x = x
        self.y = y


def norm2(points):
    s = 0
    for p in points:
        s += p.x * p.x + p.y * p.y  # one site per load, two layouts
    return s


def norm2_same(points):
    s = 0
    for p in points:
        s += p.x * p.x + p.y * p.y
    return s


def main(seconds):
    mixed = [Point(i, 1) if i % 2 else SlotPoint(i, 1) for i in range(1000)]
    same = [Point(i, 1) for i in range(1000)]
    end = time.time() + seconds
    while time.time() < end:
        norm2(mixed)
        norm2_same(same)


main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)
