# Tasks awaited through asyncio.wait_for and asyncio.shield (tests/asyncio.rs). Two tasks
# burn CPU in `worker`, each yielding to the loop after every call:
#   timer ──wait_for──> timed        (≤3.11: wait_for links them by a private future)
#   shielder ──shield──> shielded    (shield: through an outer future)
# and main awaits both waiters. Runs until killed.
import asyncio
import sys


def crunch():
    s = 0
    for i in range(20000):
        s += i
    return s


async def worker():
    while True:
        crunch()
        await asyncio.sleep(0)


async def timer(loop):
    timed = loop.create_task(worker())
    timed.set_name("timed")
    await asyncio.wait_for(timed, 3600)


async def shielder(loop):
    shielded = loop.create_task(worker())
    shielded.set_name("shielded")
    await asyncio.shield(shielded)


async def main():
    loop = asyncio.get_running_loop()
    asyncio.current_task().set_name("main")
    a = loop.create_task(timer(loop))
    a.set_name("timer")
    b = loop.create_task(shielder(loop))
    b.set_name("shielder")
    await asyncio.sleep(0.2)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.gather(a, b)


asyncio.run(main())
