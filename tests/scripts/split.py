# CPU time split 70/30 between two identical functions; runs for argv[1] seconds
# (forever without it). One call takes a millisecond or more, so a 7+3 cycle lasts many
# sampling periods: a cycle as long as the 1 ms period would alias with it. argv[2], the
# iterations of a call (30000), makes the calls shorter: the stack changes more often.
# The possible stacks (tests check every sample against them): <module> at its call of
# main; main at one of its loop lines, or at its call of hot70 / hot30 with that
# function at one of its lines on top.
import sys
import time

ITERATIONS = int(sys.argv[2]) if len(sys.argv) > 2 else 30000


def hot70():  # MARK:hot70_def
    s = 0
    for i in range(ITERATIONS):
        s += i
    return s  # MARK:hot70_end


def hot30():  # MARK:hot30_def
    s = 0
    for i in range(ITERATIONS):
        s += i
    return s  # MARK:hot30_end


def cpu():
    return time.process_time() if hasattr(time, "process_time") else time.clock()


def main(seconds):
    # With a duration: the CPU time at the start of the loop, for tests of launch mode.
    if seconds < 1e9:
        sys.stdout.write("cpu0 %f\n" % cpu())
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    end = time.time() + seconds
    while time.time() < end:  # MARK:main_loop
        for _ in range(7):
            hot70()  # MARK:call70
        for _ in range(3):
            hot30()  # MARK:call30


main(float(sys.argv[1]) if len(sys.argv) > 1 else 1e9)  # MARK:module_call
# With a duration: the CPU time at the end, for tests of launch mode.
sys.stdout.write("cpu %f\n" % cpu())
