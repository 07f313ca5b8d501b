# -*- coding: utf-8 -*-
# A frame with arguments (positional, *args, **kwargs) and locals of simple values and
# containers, blocked so they can be read.
import sys
import time


def inspect_me(count, ratio, label, flag, nothing, items, big, *rest, **opts):
    negative = -7
    nested = {"a": 1, "b": [1, (2,), {"c": None}], "u": u"h\u00e9llo"}
    many = list(range(20))
    uni = u"caf\u00e9"
    empty = ()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        time.sleep(1000)  # MARK:sleep


inspect_me(42, 1.5, "hello", True, None, [1, 2, 3], 2 ** 40, "extra", key="v")
