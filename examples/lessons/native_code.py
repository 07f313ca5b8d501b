"""Lesson: native code.

Two ways to digest the same bytes: zlib.compress, a C library outside the interpreter,
and a checksum computed in Python. A call's samples include the callee's time: while
zlib works, the thread runs libz, and the instruction at the top of the Python stack is
the call. With --opcodes pyprof looks at where the thread was executing: such samples
are native code the instruction called, drawn as <native FILE> below it and counted
apart in the opcode report (the "native" column, "Native code called from
instructions") and in annotate. The checksum's instructions are their own time.

What each Python shows (names in parentheses: the function it is sampled in):
- Python 3.10: CALL_METHOD (compress), in native libz; BINARY_ADD (checksum),
  BINARY_MODULO (checksum): one generic instruction per operator.
- Python 3.12: CALL_BUILTIN_FAST_WITH_KEYWORDS (compress), in native libz: the call is
  specialized for a C function, and its time is the C library's; BINARY_OP_ADD_INT
  (checksum), BINARY_OP (checksum): `%` has no specialized form.
- Python 3.14: CALL_BUILTIN_FAST_WITH_KEYWORDS (compress), in native libz;
  BINARY_OP_ADD_INT (checksum), BINARY_OP (checksum).
- Python 3.15: CALL_BUILTIN_FAST_WITH_KEYWORDS (compress), in native libz;
  BINARY_OP_ADD_INT (checksum), BINARY_OP (checksum).

The bpf and ptrace samplers see the thread's registers; plain reads (--sampler read)
cannot, and then count the library's time as the call's (the report says so).
"""
import random
import sys
import time
import zlib

# Words drawn at random: text that takes zlib a while.
_rng = random.Random(7)
_WORDS = [b"spam", b"eggs", b"ham", b"bacon", b"beans", b"toast", b"tea", b"jam"]
DATA = b" ".join(
    _rng.choice(_WORDS) + str(_rng.randrange(1000)).encode() for _ in range(10000)
)


def compress(data):
    return zlib.compress(data, 6)


def checksum(data):
    a, b = 1, 0
    for byte in bytearray(data[:20000]):
        a = (a + byte) % 65521
        b = (b + a) % 65521
    return (b << 16) | a


def main(seconds):
    end = time.time() + seconds
    while time.time() < end:
        compress(DATA)
        checksum(DATA)


main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)
