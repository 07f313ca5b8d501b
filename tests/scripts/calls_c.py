"""A call into a library outside the interpreter (zlib: libz does the work) beside a
pure-Python loop, about half the time each. Used by tests/native.rs: the opcode report
must give the first to native code, not to the CALL instruction.

Prints "ready" once both have run; loops until killed.
"""
import random
import sys
import zlib

# Words drawn at random: text that compresses slowly at level 6.
_rng = random.Random(1)
_WORDS = [b"spam", b"eggs", b"ham", b"bacon", b"beans", b"toast", b"tea", b"jam"]
DATA = b" ".join(_rng.choice(_WORDS) + str(_rng.randrange(1000)).encode() for _ in range(20000))


def compress():
    return zlib.compress(DATA, 6)  # MARK: compress


def loop(n):
    total = 0
    for i in range(n):
        total += i * i  # MARK: loop
    return total


compress()
loop(1000)
sys.stdout.write("ready\n")
sys.stdout.flush()
while True:
    compress()
    loop(150000)
