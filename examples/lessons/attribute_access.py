"""Lesson: attribute access. On 3.11+ LOAD_ATTR specializes to LOAD_ATTR_INSTANCE_VALUE
for plain instances and LOAD_ATTR_SLOT for __slots__ classes; a class whose instances
change shape keeps the generic form."""
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
