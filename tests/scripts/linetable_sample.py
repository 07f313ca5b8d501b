# -*- coding: utf-8 -*-
"""Sample module whose code objects feed the line-table fixtures.

scripts/gen_linetable_fixtures.py compiles this file (and the sources in
EXTRA_SOURCES) under every interpreter from 2.7 to 3.13 and records, for each
code object, the raw line table and the line/column of every instruction as
the interpreter itself computes it. tests/linetables.rs decodes the tables
with pyprof::code::linetable and compares.

DO NOT REFORMAT: line numbers, blank-line gaps and column positions are the
point of this file. Changing it changes every fixture (rerun
`python3 scripts/gen_linetable_fixtures.py --all`).

The top level must stay Python 2.7 syntax so that it compiles everywhere;
syntax that needs a newer interpreter lives in EXTRA_SOURCES as strings, each
compiled only by interpreters at or above its minimum version.
"""
from __future__ import print_function

import sys


def simple(a, b):
    c = a + b
    return c * 2


def empty():
    pass


def loops(n):
    total = 0
    for i in range(n):
        if i % 3 == 0:
            continue
        elif i > 100:
            break
        total += i
    else:
        total -= 1
    while total > 10:
        total -= 7
        if total == 13:
            break
    else:
        total += 1
    return total


def comprehensions(xs):
    sq = [x * x for x in xs if x]
    st = set(x for x in xs)
    d = dict((k, v) for k, v in enumerate(xs))
    nested = [[a + b for a in range(b)]
              for b in xs
              if b]

    def inner(y):
        def deeper(z):
            return lambda w: w + y + z
        return deeper
    return sq, st, d, nested, inner


def try_except(f):
    try:
        r = f()
    except (ValueError, TypeError) as e:
        r = str(e)
    except Exception:
        raise
    else:
        r = r + 1
    finally:
        f = None
    try:
        try:
            r = r / 0
        finally:
            r = -1
    except ZeroDivisionError:
        pass
    return r


def with_statement(path):
    with open(path) as fh:
        data = fh.read()
        with open(path) as fh2, open(path) as fh3:
            data += fh2.read() + fh3.read()
    return data


class Klass(object):
    attr = [i for i in range(3)]
    other = dict(a=1,
                 b=2)

    def method(self, x):
        return (x +
                self.attr[0] *
                2)

    @staticmethod
    def smethod():
        return Klass

    @property
    def prop(self):
        return 1

    class Inner(object):
        def deep_method(self):
            return [self for _ in range(2)]


def generator(n):
    for i in range(n):
        yield i
    x = yield
    yield x


def multi_line_expression(a, b, c):
    result = (a
              + b
              - c)
    call = dict(
        a=a,
        b=b,
    )
    if (a and
            b or
            c):
        result = [
            1,
            2,
        ]
    return result, call


def lambdas_and_defaults(a=1, b=(lambda: 2), *args, **kwargs):
    f = lambda x: (x,
                   a)
    g = lambda: lambda: b
    return f, g, args, kwargs


def long_lines(a, b):
    value = a + b + a + b + a + b + a + b + a + b + a + b + a + b + a + b + a + b + a + b + a + b + a + b + a + b + a + b + a + b + a + b + (a * b) + simple(a, b)
    other = [a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b] + [simple(a, b), (a * b)]
    text = u"ünïcödé ☃ ünïcödé ☃ ünïcödé ☃ ünïcödé ☃ ünïcödé ☃ ünïcödé ☃ ünïcödé ☃ ünïcödé ☃ ünïcödé ☃ ünïcödé" + str(a) + str(b)
    spanning = simple(a, b) + simple(a,
                                                                                                                                                             b) + simple(b, a)
    return value, other, text, spanning


def huge_single_line(f):
    x = f(1) + f(2) + f(3) + f(4) + f(5) + f(6) + f(7) + f(8) + f(9) + f(10) + f(11) + f(12) + f(13) + f(14) + f(15) + f(16) + f(17) + f(18) + f(19) + f(20) + f(21) + f(22) + f(23) + f(24) + f(25) + f(26) + f(27) + f(28) + f(29) + f(30) + f(31) + f(32) + f(33) + f(34) + f(35) + f(36) + f(37) + f(38) + f(39) + f(40) + f(41) + f(42) + f(43) + f(44) + f(45) + f(46) + f(47) + f(48) + f(49) + f(50) + f(51) + f(52) + f(53) + f(54) + f(55) + f(56) + f(57) + f(58) + f(59) + f(60) + f(61) + f(62) + f(63) + f(64) + f(65) + f(66) + f(67) + f(68) + f(69) + f(70) + f(71) + f(72) + f(73) + f(74) + f(75) + f(76) + f(77) + f(78) + f(79) + f(80)
    return x


def dead_code(a):
    if 0:
        a += 1
    while 1:
        if a:
            return a
        a += 1
    a -= 1
    return a
    a = 2
    for i in range(3):
        a += i
    return a


def big_forward_jump():
    a = 1
# ---- 300-line gap (keeps a line jump > 255 / > 127) ----
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
# ---- end of gap ----
    b = 2
# ---- 300-line gap (keeps a line jump > 255 / > 127) ----
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
# ---- end of gap ----
    return a + b


def backward_jumps(items):
    total = 0
    for item in items:
        total += item
# ---- 300-line gap (keeps a line jump > 255 / > 127) ----
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
# ---- end of gap ----
        total -= 1
    with open(__file__) as fh:
        fh.read()
# ---- 300-line gap (keeps a line jump > 255 / > 127) ----
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
# ---- end of gap ----
        total += 2
    while total:
        total -= 1
# ---- 150-line gap (keeps a line jump > 255 / > 127) ----
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
# ---- end of gap ----
        total = 0
    return total


def long_call_arguments(f):
    return f(
        1,
# ---- 260-line gap (keeps a line jump > 255 / > 127) ----
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
# ---- end of gap ----
        2,
    )


def many_statements(x):
    x += 1; x += 2; x += 3; x += 4
    x += 5
    x += 6

    x += 7


    x += 8
    if x:
        x += 9
    return x


def _decorator(f):
    return f


# ---- 200-line gap (keeps a line jump > 255 / > 127) ----
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
#
# ---- end of gap ----
@_decorator
@_decorator
def far_down(a,
             b):
    return a + b


def last_function():
    return [(i, j)
            for i in range(3)
            for j in range(i)]


# Sources that need a newer interpreter (or are too big to keep as text).
# Each entry: (name, minimum (major, minor), source). The generator compiles
# every entry whose minimum is <= the running interpreter.
EXTRA_SOURCES = [
    ("huge_line_jumps", (2, 7),
     "def huge_jump():\n"
     "    a = 1\n" + "\n" * 100000 +
     "    b = 2\n" + "\n" * 70000 +
     "    return a + b\n"),
    ("far_first_line", (2, 7),
     "x = 1\n" + "\n" * 200000 +
     "def far():\n"
     "    return x\n"),
    ("huge_backward_jump", (2, 7),
     "def huge_back(items):\n"
     "    for item in items:\n"
     "        item += 1\n" + "\n" * 70000 +
     "        item -= 1\n"
     "    with open(__file__) as fh:\n" + "\n" * 40000 +
     "        fh.read()\n"
     "    return items\n"),
    ("py3_misc", (3, 3),
     "def kwonly(a, *, b=1, **kw):\n"
     "    def inner():\n"
     "        nonlocal a\n"
     "        a += 1\n"
     "        return a\n"
     "    yield from range(b)\n"
     "    return inner\n"
     "class Child(dict):\n"
     "    def m(self):\n"
     "        return super().keys()\n"
     "def comprehensions3(xs):\n"
     "    return {x: y for x, y in xs}, {x for x in xs}, (x for x in xs)\n"),
    ("async", (3, 7),
     "async def coro(aiter, actx, aw):\n"
     "    async with actx as v:\n"
     "        async for x in aiter:\n"
     "            await aw\n"
     "    r = [y async for y in aiter]\n"
     "    return v, r, await aw\n"),
    ("fstrings", (3, 6),
     "def fstr(x, y):\n"
     "    a = f'{x!r:>{y}} and {x + y}'\n"
     "    b = f'''{x}\n"
     "{y}\n"
     "{x +\n"
     "  y}'''\n"
     "    return a, b\n"),
    ("walrus_posonly", (3, 8),
     "def walrus(a, /, b):\n"
     "    if (n := len(a)) > 10:\n"
     "        return n\n"
     "    return [y for x in b if (y := x * 2)]\n"),
    ("match", (3, 10),
     "def matcher(cmd):\n"
     "    match cmd:\n"
     "        case [\"go\", direction]:\n"
     "            return direction\n"
     "        case {\"x\": x, **rest} if x > 0:\n"
     "            return rest\n"
     "        case Point(x=0, y=yy) | Point(x=yy, y=0):\n"
     "            return yy\n"
     "        case str() | bytes():\n"
     "            return cmd\n"
     "        case _:\n"
     "            return None\n"),
    ("except_star", (3, 11),
     "def estar(f):\n"
     "    try:\n"
     "        f()\n"
     "    except* ValueError as eg:\n"
     "        r = eg\n"
     "    except* TypeError:\n"
     "        pass\n"
     "    return r\n"),
    ("type_params", (3, 12),
     "type Alias[T] = list[T]\n"
     "def generic[T: int, *Ts, **P](x: T) -> T:\n"
     "    return x\n"
     "class Box[T]:\n"
     "    def get(self) -> T:\n"
     "        return self.v\n"),
]
