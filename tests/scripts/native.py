"""Native code called from bytecode: a numpy matrix product (its BLAS), a ufunc, and a
pure-Python loop of about the same share. Used by tests/native.rs.

Usage: python native.py SECONDS
"""
import sys
import time

import numpy as np


def matmul_heavy(a, b):
    return a @ b  # MARK: matmul


def ufunc_heavy(x):
    return np.sin(x)  # MARK: ufunc


def python_loop(n):
    total = 0
    for i in range(n):
        total += i * i  # MARK: loop
    return total


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    rng = np.random.default_rng(1)
    a = rng.random((300, 300))
    b = rng.random((300, 300))
    x = rng.random(200_000)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        matmul_heavy(a, b)
        ufunc_heavy(x)
        python_loop(20_000)


if __name__ == "__main__":
    main()
