# Two threads each spin in a function of their own, at the same time where the build
# lets them (free-threaded: no GIL); the main thread waits. Prints "ready" once both run.
import sys
import threading
import time


def spin_a(stop):
    n = 0
    while not stop.is_set():
        n += 1  # MARK:spin_a
    return n


def spin_b(stop):
    n = 0
    while not stop.is_set():
        n += 1  # MARK:spin_b
    return n


def main():
    stop = threading.Event()
    running = threading.Semaphore(0)

    def run(fn):
        running.release()
        fn(stop)

    threads = [
        threading.Thread(target=run, args=(spin_a,), name="spin-a"),
        threading.Thread(target=run, args=(spin_b,), name="spin-b"),
    ]
    for t in threads:
        t.start()
    for t in threads:
        running.acquire()
    time.sleep(0.2)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    try:
        time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 600)
    finally:
        stop.set()


main()
