# CPU time split 70/30 between two identical functions; runs for argv[1] seconds
# (forever without it). One call takes a millisecond or more, so a 7+3 cycle lasts many
# sampling periods: a cycle as long as the 1 ms period would alias with it.
import sys
import time


def hot70():
    s = 0
    for i in range(30000):
        s += i
    return s


def hot30():
    s = 0
    for i in range(30000):
        s += i
    return s


def main(seconds):
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    end = time.time() + seconds
    while time.time() < end:
        for _ in range(7):
            hot70()
        for _ in range(3):
            hot30()


main(float(sys.argv[1]) if len(sys.argv) > 1 else 1e9)
