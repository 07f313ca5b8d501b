# Prints a growing counter every 50 ms: shows that the program keeps running.
import sys
import time


def beat():
    n = 0
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        n += 1
        s = 0
        for i in range(20000):
            s += i
        sys.stdout.write("beat %d\n" % n)
        sys.stdout.flush()
        time.sleep(0.05)


beat()
