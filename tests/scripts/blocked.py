# A known stack that stays put: <module> -> main -> Worker.run -> leaf (sleeping).
# Test programs print "ready" once in position; tests find lines by their MARK comments.
import sys
import time


class Worker(object):
    def run(self):
        return leaf()  # MARK:run_call


def leaf():
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        time.sleep(1000)  # MARK:sleep


def main():
    Worker().run()  # MARK:main_call


main()  # MARK:module_call
