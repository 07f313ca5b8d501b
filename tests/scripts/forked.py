# The parent forks a child that burns CPU in child_spin for argv[1] seconds from its
# first instant, while the parent waits in parent_wait; the tests count the child's
# samples (it must be sampled from its first few milliseconds).
import os
import sys
import time


def child_spin(seconds):
    end = time.time() + seconds
    s = 0
    while time.time() < end:
        for i in range(1000):
            s += i
    return s


def parent_wait(pid):
    os.waitpid(pid, 0)


def main(seconds):
    time.sleep(0.3)
    pid = os.fork()
    if pid == 0:
        t0 = time.time()
        c0 = os.times()[0] + os.times()[1]
        child_spin(seconds)
        t = os.times()
        # The child's CPU and wall time in child_spin, for the tests.
        sys.stdout.write("child cpu %f wall %f\n" % (t[0] + t[1] - c0, time.time() - t0))
        sys.stdout.flush()
        os._exit(0)
    parent_wait(pid)


main(float(sys.argv[1]) if len(sys.argv) > 1 else 2.0)
