# A known asyncio task tree (tests/asyncio.rs). Four tasks burn CPU in `worker` (which
# calls `crunch`), each yielding to the loop after every call; the others wait:
#   main ──await──> gamma ──await──> alpha        (alpha burns)
#   beta                                          (burns, awaited by nobody)
#   gatherer ──gather──> g1 (burns), g2 (sleeps)
#   grouper ──TaskGroup──> t1 (burns)             (3.11+)
# So a sample of a burning task has the chain (outermost first): main, gamma, alpha;
# beta; gatherer, g1; grouper, t1. With an argument N, N more tasks wait (sleep) beside
# them; with `eager` (3.12+), every task is created by asyncio.eager_task_factory (it
# runs its first step at once, in its creator's); with `pytask`, every task but main is
# a pure-Python asyncio.tasks._PyTask. Runs until killed.
import asyncio
import sys


def crunch():
    s = 0
    for i in range(20000):  # MARK:crunch
        s += i
    return s


async def worker():
    while True:
        crunch()  # MARK:worker_call
        await asyncio.sleep(0)


async def waiter(task):
    await task  # MARK:waiter_await


def name(task, name):
    """Task.set_name (3.8+; 3.7's tasks have no names)."""
    if hasattr(task, "set_name"):
        task.set_name(name)
    return task


async def gatherer(loop):
    g1 = name(loop.create_task(worker()), "g1")
    g2 = name(loop.create_task(asyncio.sleep(3600)), "g2")
    await asyncio.gather(g1, g2)


async def grouper():
    async with asyncio.TaskGroup() as tg:
        tg.create_task(worker(), name="t1")


async def main():
    loop = asyncio.get_running_loop()
    name(asyncio.current_task(), "main")
    eager = "eager" in sys.argv[1:]
    if eager:
        loop.set_task_factory(asyncio.eager_task_factory)
    pytask = "pytask" in sys.argv[1:]
    if pytask:
        # Every task a pure-Python one (asyncio.tasks._PyTask), not the C _asyncio.Task.
        def factory(loop, coro, **kw):
            return asyncio.tasks._PyTask(coro, loop=loop, **kw)

        loop.set_task_factory(factory)

    def named(coro, n):
        return name(loop.create_task(coro), n)

    alpha = named(worker(), "alpha")
    named(worker(), "beta")
    gamma = named(waiter(alpha), "gamma")
    named(gatherer(loop), "gatherer")
    # (3.14+'s TaskGroup cannot find its parent among pure-Python tasks: it raises.)
    if sys.version_info >= (3, 11) and not (pytask and sys.version_info >= (3, 14)):
        named(grouper(), "grouper")
    n = sum(int(a) for a in sys.argv[1:] if a.isdigit())
    pending = [loop.create_task(asyncio.sleep(3600)) for _ in range(n)]
    await asyncio.sleep(0.2)
    sys.stdout.write("pending %d\nready\n" % len(pending))
    sys.stdout.flush()
    await gamma


asyncio.run(main())
