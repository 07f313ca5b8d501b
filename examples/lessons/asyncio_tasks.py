"""Lesson: asyncio tasks, and the await chains above them.

An event loop runs one task at a time on its thread: a task runs until it awaits
something that is not ready, then the loop runs the next task that is. Here `main`
starts two tasks, `pipeline` and `heartbeat`, and awaits `pipeline`; `pipeline`
gathers two more, `parse` and `render`, and awaits them. `parse`, `render` and
`heartbeat` burn CPU in `checksum`, each giving the loop back its turn after every call
(`await asyncio.sleep(0)`), so they take turns; `heartbeat` does half as much work a turn.

Without --async-aware, a sample is the thread's own stack: asyncio.run, the loop's
run_forever and _run_once, Handle._run, then the coroutine of whichever task was
running. The three busy tasks come out as one tower of the same frames, and nothing
says which task a sample came from, nor who waits for it. With --async-aware (this
lesson is recorded with it) a sample is the running task's stack, under a `<task NAME>`
frame for it and for each task awaiting it, outermost first: `<task main>`,
`<task pipeline>`, `<task parse>`, then parse's own frames. A task that only waits (main,
pipeline) has no samples of its own: it is exactly as wide as the tasks it awaits.

Recorded with: --async-aware
Task chains (outermost first): main > pipeline > parse; main > pipeline > render;
  heartbeat

What each Python shows (names in parentheses: the function it is sampled in):
- Python 3.10: BINARY_MULTIPLY (checksum), INPLACE_ADD (checksum), FOR_ITER
  (checksum): one generic instruction each, no specializing interpreter.
- Python 3.12: BINARY_OP_MULTIPLY_INT (checksum), BINARY_OP_ADD_INT (checksum),
  FOR_ITER_RANGE (checksum).
- Python 3.14: BINARY_OP_MULTIPLY_INT (checksum), BINARY_OP_ADD_INT (checksum),
  FOR_ITER_RANGE (checksum).
- Python 3.15: BINARY_OP_MULTIPLY_INT (checksum), BINARY_OP_ADD_INT (checksum),
  FOR_ITER_RANGE (checksum).

Try: pyprof report PROFILE.json -o tasks.svg, then record the same program without
--async-aware and compare the two flamegraphs: the tasks, and main and pipeline, are gone.
"""
import asyncio
import sys
import time


def checksum(n, k):
    total = 0
    for i in range(n):
        total += i * k
    return total


async def busy(n, k, until):
    while time.time() < until:
        checksum(n, k)
        await asyncio.sleep(0)


async def pipeline(until):
    loop = asyncio.get_running_loop()
    parse = loop.create_task(busy(20000, 3, until))
    parse.set_name("parse")
    render = loop.create_task(busy(20000, 5, until))
    render.set_name("render")
    await asyncio.gather(parse, render)


async def main(seconds):
    asyncio.current_task().set_name("main")
    loop = asyncio.get_running_loop()
    until = time.time() + seconds
    work = loop.create_task(pipeline(until))
    work.set_name("pipeline")
    beat = loop.create_task(busy(10000, 7, until))
    beat.set_name("heartbeat")
    await work
    await beat


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0))
