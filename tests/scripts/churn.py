# Threads created and destroyed at a high rate, each doing a little Python work.
import sys
import threading


def short_life():
    s = 0
    for i in range(200):
        s += i
    return s


def main():
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        ts = [threading.Thread(target=short_life) for _ in range(20)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()


main()
