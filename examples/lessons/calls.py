"""Lesson: calls.

Four loops that call: a plain Python function, a method, a builtin, and the plain
function again with keyword arguments. From 3.11 CALL specializes on what it calls.
The samples of a call instruction itself are the cost of the call: setting up the
frame of a Python callee (which then has its own frame above), or the whole time in a
C function.

What each Python shows (names in parentheses: the function it is sampled in):
- Python 3.10: CALL_FUNCTION (calls_function), CALL_METHOD (calls_method),
  CALL_FUNCTION_KW (calls_keywords): one generic instruction per kind of call.
- Python 3.12: CALL_PY_EXACT_ARGS (calls_function), CALL_PY_EXACT_ARGS (calls_method),
  CALL_NO_KW_BUILTIN_O (calls_builtin), CALL (calls_keywords): a method call is a plain
  function call once LOAD_ATTR_METHOD_WITH_VALUES has put the method and self on the
  stack; keyword calls to Python functions stay generic.
- Python 3.14: CALL_PY_EXACT_ARGS (calls_function), CALL_PY_EXACT_ARGS (calls_method),
  CALL_BUILTIN_O (calls_builtin), CALL_KW_PY (calls_keywords): keyword calls have their
  own instruction and specialize too.
- Python 3.15: CALL_PY_EXACT_ARGS (calls_function), CALL_PY_EXACT_ARGS (calls_method),
  CALL_BUILTIN_O (calls_builtin), CALL_KW_PY (calls_keywords).
"""
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
