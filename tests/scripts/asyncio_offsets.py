# Prints where this interpreter keeps what `pyprof --async-aware` reads, found by its own
# introspection (ctypes over live objects), for tests/asyncio.rs to compare with the
# offsets pyprof reads from the target's _Py_AsyncioModuleDebugOffsets:
#   task_name, task_coro, task_awaited_by (a single awaiter), tstate_running_task (3.14+);
#   task_fut_waiter, fut_callback0, fut_callbacks, wakeup_task (where the callable a task
#   awaiting a future leaves in its callbacks holds that task), func_closure, and whether
#   asyncio.tasks._current_tasks maps the running loop to the task (≤3.13).
# Then prints ready and waits, so pyprof can read the same process.
import asyncio
import ctypes
import sys
import threading


def words(addr, n):
    return [ctypes.c_uint64.from_address(addr + 8 * i).value for i in range(n)]


def offsets_of(addr, size, value):
    return [8 * i for i, w in enumerate(words(addr, size // 8)) if w == value]


async def child():
    await asyncio.sleep(3600)


async def parent(c):
    await c


async def main():
    loop = asyncio.get_event_loop()
    t = asyncio.current_task() if hasattr(asyncio, "current_task") else asyncio.Task.current_task()
    name = "probe-" + str(len(sys.argv))  # a new str object, kept alive here
    if hasattr(t, "set_name"):
        t.set_name(name)
    size = type(t).__basicsize__
    out = {
        "task_size": [size],
        "task_name": offsets_of(id(t), size, id(name)),
        "task_coro": offsets_of(id(t), size, id(t.get_coro() if hasattr(t, "get_coro") else t._coro)),
    }
    get = ctypes.pythonapi.PyThreadState_Get
    get.restype = ctypes.c_void_p
    if sys.version_info >= (3, 14):
        out["tstate_running_task"] = offsets_of(get(), 4096, id(t))
    c = loop.create_task(child())
    p = loop.create_task(parent(c))
    await asyncio.sleep(0.05)
    out["task_awaited_by"] = offsets_of(id(c), size, id(p))
    out["task_fut_waiter"] = offsets_of(id(p), size, id(c))
    cb = c._callbacks[0][0]
    out["wakeup_type"] = [type(cb).__name__]
    out["wakeup_task"] = offsets_of(id(cb), 64, id(p))
    f = loop.create_future()
    fsize = type(f).__basicsize__
    out["future_size"] = [fsize]

    def cb1(_):
        pass

    def cb2(_):
        pass

    f.add_done_callback(cb1)
    out["fut_callback0"] = offsets_of(id(f), fsize, id(cb1))
    before = words(id(f), fsize // 8)
    f.add_done_callback(cb2)
    after = words(id(f), fsize // 8)
    out["fut_callbacks"] = [8 * i for i, (a, b) in enumerate(zip(before, after)) if a == 0 and b]
    x = 1

    def closure():
        return x

    out["func_closure"] = offsets_of(id(closure), type(closure).__basicsize__, id(closure.__closure__))
    current = getattr(asyncio.tasks, "_current_tasks", None)
    out["current_tasks"] = [int(type(current) is dict and current.get(loop) is t)]
    out["loop_thread_id"] = [int(getattr(loop, "_thread_id", None) == threading.get_ident())]
    for k in sorted(out):
        sys.stdout.write("%s %s\n" % (k, " ".join(str(v) for v in out[k])))
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.sleep(3600)


if hasattr(asyncio, "run"):
    asyncio.run(main())
else:
    asyncio.get_event_loop().run_until_complete(main())
