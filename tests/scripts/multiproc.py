# A parent with two worker processes (multiprocessing), each burning CPU in worker_task
# for argv[1] seconds.
import multiprocessing
import sys
import time


def worker_task(seconds):
    end = time.time() + seconds
    s = 0
    while time.time() < end:
        for i in range(10000):
            s += i
    return s


def main(seconds):
    procs = [multiprocessing.Process(target=worker_task, args=(seconds,)) for _ in range(2)]
    for p in procs:
        p.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for p in procs:
        p.join()


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)
