"""Lesson: two threads, with a GIL and without one (the free-threaded build).

Two threads run the same CPU-bound loop (work, called by worker) for the same few
seconds while the main thread waits for them. On a GIL build only the thread holding
the GIL runs Python; the other waits for it, asleep, so between them the two threads
get about one CPU. pyprof samples a thread only while it is on a CPU: the two threads
share about one sample per tick of its rate. The free-threaded build of 3.13 (3.13t,
PEP 703, installed as python3.13t) has no GIL: both threads run Python at once, on two
CPUs, and the same rate takes about twice as many samples in the same time, when two
CPUs are free. (The header of each opcode report gives the samples: at 500 Hz, one CPU
for 3 s is 1,500. The gallery's runs may have shared the CPUs with other work.)

The price in 3.13t: its specializing interpreter is switched off (not yet safe with
several threads running the same code), so every instruction stays in its generic
form, and the opcode report's "Specialization problems, explained" says so. 3.14t's
headers switch the specializer back on, each thread specializing its own copy of the
bytecode; there is no 3.14t on the machines that make this gallery, so what it does
is not shown (nor checked) here.

What each Python shows (names in parentheses: the function it is sampled in):
- Python 3.13: BINARY_OP_MULTIPLY_INT (work), BINARY_OP_ADD_INT (work), FOR_ITER_RANGE
  (work): the GIL build specializes; one thread at a time.
- Python 3.13t: BINARY_OP (work), FOR_ITER (work): nothing specialized; both threads
  at once (when the machine has two CPUs free).

Try: pyprof report PROFILE.json --threads -o threads.svg, a flamegraph with a root per
thread: worker-1 and worker-2 each have their own bar.
"""
import sys
import threading
import time


def work(n):
    total = 0
    for i in range(n):
        total += i * i
    return total


def worker(seconds, rounds, k):
    end = time.time() + seconds
    while time.time() < end:
        work(10000)
        rounds[k] += 1


def main(seconds):
    rounds = [0, 0]
    threads = [
        threading.Thread(target=worker, args=(seconds, rounds, k), name="worker-%d" % (k + 1))
        for k in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print("GIL enabled: %s; rounds of work per thread: %s" % (gil, rounds))


main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)
