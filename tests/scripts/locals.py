# A frame with simple local values, blocked so they can be read.
import sys
import time


def inspect_me(count, ratio, label, flag, nothing, items, big):
    negative = -7
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        time.sleep(1000)  # MARK:sleep


inspect_me(42, 1.5, "hello", True, None, [1, 2, 3], 2 ** 40)
