# Three named threads blocked in distinct functions, and the main thread joining them.
import sys
import threading
import time


def thread_a():
    time.sleep(1000)  # MARK:a


def thread_b():
    time.sleep(1000)  # MARK:b


def thread_c():
    while True:
        time.sleep(0.001)  # MARK:c


threads = [
    threading.Thread(target=f, name=n)
    for f, n in ((thread_a, "worker-a"), (thread_b, "worker-b"), (thread_c, "worker-c"))
]
for t in threads:
    t.daemon = True
    t.start()
time.sleep(0.2)
# name=ident of every thread (tests/thread_names.rs compares them with what pyprof reads).
for t in [threading.current_thread()] + threads:
    sys.stdout.write("%s=%d\n" % (t.name, t.ident))
sys.stdout.write("ready\n")
sys.stdout.flush()
while True:
    time.sleep(1000)  # MARK:main
