"""Lesson: calls. CALL specializes by callee: CALL_PY_EXACT_ARGS for a plain Python
function, CALL_BUILTIN_O / CALL_BUILTIN_FAST for builtins, CALL_BOUND_METHOD_EXACT_ARGS
for methods; keyword arguments stay generic longer."""
import sys
import time


def add(a, b):
    return a + b


class Acc(object):
    def __init__(self):
        self.n = 0

    def add(self, k):
        self.n += k


def calls_function(n):
    t = 0
    for i in range(n):
        t = add(t, i)
    return t


def calls_method(n):
    acc = Acc()
    for i in range(n):
        acc.add(i)
    return acc.n


def calls_builtin(n):
    t = 0
    for i in range(n):
        t += abs(-i)
    return t


def calls_keywords(n):
    t = 0
    for i in range(n):
        t = add(a=t, b=i)
    return t


def main(seconds):
    end = time.time() + seconds
    while time.time() < end:
        calls_function(1000)
        calls_method(1000)
        calls_builtin(1000)
        calls_keywords(1000)


main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)
