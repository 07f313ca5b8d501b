"""Lesson: attribute access.

Two classes with the same two attributes, summed in two identical loops. Plain keeps
its attributes in the instance itself (3.11+: inline values, no __dict__ is built until
someone asks for it); Slotted declares __slots__, so each attribute is a fixed slot of
the object. From 3.11 the interpreter rewrites each attribute load, once it has seen
the object's type, into a form specialized for that layout.

What each Python shows (names in parentheses: the function it is sampled in):
- Python 3.10: LOAD_ATTR (total_plain), LOAD_ATTR (total_slotted): one generic
  instruction, no specializing interpreter.
- Python 3.12: LOAD_ATTR_INSTANCE_VALUE (total_plain), LOAD_ATTR_SLOT (total_slotted).
- Python 3.14: LOAD_ATTR_INSTANCE_VALUE (total_plain), LOAD_ATTR_SLOT (total_slotted).
- Python 3.15: LOAD_ATTR_INSTANCE_VALUE (total_plain), LOAD_ATTR_SLOT (total_slotted).

Try: annotate total_plain and total_slotted side by side; then see
polymorphic_attribute.py for one loop that gets both kinds of object.
"""
import sys
import time


class Plain(object):
    def __init__(self, a, b):
        self.a = a
        self.b = b


class Slotted(object):
    __slots__ = ("a", "b")

    def __init__(self, a, b):
        self.a = a
        self.b = b


def total_plain(items):
    s = 0
    for it in items:
        s += it.a + it.b
    return s


def total_slotted(items):
    s = 0
    for it in items:
        s += it.a + it.b
    return s


def main(seconds):
    plain = [Plain(i, i + 1) for i in range(1000)]
    slotted = [Slotted(i, i + 1) for i in range(1000)]
    end = time.time() + seconds
    while time.time() < end:
        total_plain(plain)
        total_slotted(slotted)


main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)
