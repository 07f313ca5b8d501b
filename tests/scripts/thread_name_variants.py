# -*- coding: utf-8 -*-
# Threads whose names are stored in every way CPython keeps instance attributes: a plain
# Thread, a subclass (its own shared keys), a subclass with __slots__ (a larger basic size),
# a Thread whose __dict__ was materialised, one with too many attributes for shared keys,
# one renamed after start, a non-ASCII name, a long name, and a thread not started by
# threading (a _DummyThread). Prints name=ident of every thread, then `ready`.
import sys
import threading
import time

try:
    import _thread
except ImportError:  # Python 2
    import thread as _thread

PY2 = sys.version_info[0] == 2


def sleeper():
    while True:
        time.sleep(1000)


class Sub(threading.Thread):
    def __init__(self, name):
        self.before = 1  # an attribute set before Thread.__init__: a different key order
        threading.Thread.__init__(self, target=sleeper, name=name)


class Slotted(threading.Thread):
    __slots__ = ("extra",)


threads = []

plain = threading.Thread(target=sleeper, name="plain")
threads.append(plain)
threads.append(Sub("subclass"))
threads.append(Slotted(target=sleeper, name="slotted"))

materialised = threading.Thread(target=sleeper, name="materialised")
vars(materialised)["seen"] = True
threads.append(materialised)

many = threading.Thread(target=sleeper, name="many-attrs")
for i in range(40):
    setattr(many, "attr%d" % i, i)
threads.append(many)

renamed = threading.Thread(target=sleeper, name="before-rename")
threads.append(renamed)

if PY2:
    threads.append(threading.Thread(target=sleeper, name="w\xc3\xb6rker-\xe7\xba\xbf\xe7\xa8\x8b"))
else:
    threads.append(threading.Thread(target=sleeper, name="w\u00f6rker-\u7ebf\u7a0b"))
threads.append(threading.Thread(target=sleeper, name="long-" + "x" * 300))

for t in threads:
    t.daemon = True
    t.start()
renamed.name = "renamed-after-start"


def dummy():
    threading.current_thread()  # registers a _DummyThread in threading._active
    sleeper()


_thread.start_new_thread(dummy, ())
time.sleep(0.3)
out = []
for t in threading.enumerate():
    out.append("%s=%d\n" % (t.name, t.ident))
text = "".join(out) + "ready\n"
if PY2:
    sys.stdout.write(text)
else:
    sys.stdout.buffer.write(text.encode("utf-8"))
sys.stdout.flush()
while True:
    time.sleep(1000)
