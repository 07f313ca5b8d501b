"""Python -> C -> Python -> C: `outer` calls the C function `cbext.call_back`, which calls
the Python function `leaf` back, which calls the C function `cbext.spin`. Used by
tests/native.rs (which builds cbext from cbext.c).

Usage: python callback.py DIR_HOLDING_CBEXT
"""
import sys

sys.path.insert(0, sys.argv[1])
import cbext  # noqa: E402


def leaf():
    return cbext.spin(100000)  # MARK: leaf


def outer():
    cbext.call_back(leaf, 20)  # MARK: outer


def main():
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        outer()


main()
