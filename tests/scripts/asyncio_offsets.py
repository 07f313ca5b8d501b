# Prints where this interpreter keeps what `pyprof --async-aware` reads, found by its own
# introspection (ctypes over live objects), for tests/asyncio.rs to compare with the
# offsets pyprof reads from the target's _Py_AsyncioModuleDebugOffsets:
#   task_name, task_coro, task_awaited_by (a single awaiter), tstate_running_task.
# Then prints ready and waits, so pyprof can read the same process.
import asyncio
import ctypes
import sys


def words(addr, n):
    return [ctypes.c_uint64.from_address(addr + 8 * i).value for i in range(n)]


def offsets_of(addr, size, value):
    return [8 * i for i, w in enumerate(words(addr, size // 8)) if w == value]


async def child():
    await asyncio.sleep(3600)


async def parent(c):
    await c


async def main():
    loop = asyncio.get_running_loop()
    t = asyncio.current_task()
    name = "probe-" + str(len(sys.argv))  # a new str object, kept alive here
    t.set_name(name)
    size = type(t).__basicsize__
    out = {
        "task_size": [size],
        "task_name": offsets_of(id(t), size, id(name)),
        "task_coro": offsets_of(id(t), size, id(t.get_coro())),
    }
    get = ctypes.pythonapi.PyThreadState_Get
    get.restype = ctypes.c_void_p
    out["tstate_running_task"] = offsets_of(get(), 4096, id(t))
    c = loop.create_task(child())
    p = loop.create_task(parent(c))
    await asyncio.sleep(0.05)
    out["task_awaited_by"] = offsets_of(id(c), size, id(p))
    for k in sorted(out):
        sys.stdout.write("%s %s\n" % (k, " ".join(str(v) for v in out[k])))
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.sleep(3600)


asyncio.run(main())
