# argv[1] threads (default 1000) blocked in distinct-depth Python frames, plus a busy main.
import sys
import threading
import time


def parked(ev):
    ev.wait()


def main(n):
    ev = threading.Event()
    for _ in range(n):
        t = threading.Thread(target=parked, args=(ev,))
        t.daemon = True
        t.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        s = 0
        for i in range(10000):
            s += i


main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
