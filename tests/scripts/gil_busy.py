# A thread that holds the GIL nearly all the time (busy in Python), and two that sleep.
# With --gil only the busy one may appear; with --idle all three.
import sys
import threading
import time


def sleeper():
    time.sleep(1000)  # MARK:sleeper


def busy():
    while True:
        s = 0
        for i in range(10000):  # MARK:busy
            s += i


for f, n in ((sleeper, "sleeper-1"), (sleeper, "sleeper-2"), (busy, "busy")):
    t = threading.Thread(target=f, name=n)
    t.daemon = True
    t.start()
sys.stdout.write("ready\n")
sys.stdout.flush()
while True:
    time.sleep(1000)  # MARK:main
