# A task cancelled while it runs (tests/asyncio.rs): `victim` and `survivor` burn CPU in
# `worker` (which calls `crunch`), taking turns. On SIGUSR1 `main` cancels `victim`,
# waits for it to end, lets it be freed, and starts `successor` (whose task object may
# take the victim's memory), which it then awaits:
#   before: victim; survivor            after: survivor; main > successor
# Prints "cancelled" once the successor runs. Runs until killed.
import asyncio
import gc
import signal
import sys


def crunch():
    s = 0
    for i in range(20000):  # MARK:crunch
        s += i
    return s


async def worker():
    while True:
        crunch()
        await asyncio.sleep(0)


async def main():
    loop = asyncio.get_running_loop()
    asyncio.current_task().set_name("main")
    victim = loop.create_task(worker())
    victim.set_name("victim")
    survivor = loop.create_task(worker())
    survivor.set_name("survivor")
    go = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, go.set)
    await asyncio.sleep(0.2)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await go.wait()
    victim.cancel()
    try:
        await victim
    except asyncio.CancelledError:
        pass
    del victim
    gc.collect()
    successor = loop.create_task(worker())
    successor.set_name("successor")
    sys.stdout.write("cancelled\n")
    sys.stdout.flush()
    await successor


asyncio.run(main())
