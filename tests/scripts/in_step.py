# A program in step with a sampler: every 1/RATE seconds of the monotonic clock (argv[1]
# is RATE) it spins in `short` for the first quarter of the cycle, then in `long` for the
# rest. A sampler that samples at exactly equal intervals of that clock lands at the same
# point of every cycle and reports one of them only; a right one reports `short` a
# quarter of the time. Runs until killed.
import sys
import time

clock = getattr(time, "perf_counter", time.time)
period = 1.0 / float(sys.argv[1])


def short(until):
    while clock() < until:  # MARK:short
        pass


def long(until):
    while clock() < until:  # MARK:long
        pass


t0 = clock()
sys.stdout.write("ready\n")
sys.stdout.flush()
while True:
    start = t0 + ((clock() - t0) // period) * period
    short(start + period / 4)
    long(start + period)
