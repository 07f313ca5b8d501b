# A service as a container runs it: a busy thread, a sleeping one, and the main thread
# waiting. Run under `unshare --pid --fork --mount-proc`: the ids it prints are its
# namespace's.
import sys
import threading
import time


def busy():
    while True:
        s = 0
        for i in range(10000):  # MARK:busy
            s += i


def sleeper():
    while True:
        time.sleep(1000)  # MARK:sleeper


for f, name in ((busy, "busy"), (sleeper, "sleeper")):
    t = threading.Thread(target=f, name=name)
    t.daemon = True
    t.start()
time.sleep(0.2)
native = getattr(threading, "get_native_id", None)
for t in threading.enumerate():
    sys.stdout.write("thread %s %s\n" % (t.name, getattr(t, "native_id", "?")))
sys.stdout.write("ready\n")
sys.stdout.flush()
while True:
    time.sleep(1000)  # MARK:main
