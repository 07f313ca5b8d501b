"""A program that spends its time importing the standard library (module and class
bodies that run once, whose code objects are freed as soon as they have run), then
burns CPU in `settle` for a moment and exits.

usage: python imports.py [SETTLE_SECONDS]
"""
import importlib
import sys
import time

MODULES = """argparse asyncio calendar csv decimal difflib email.mime.multipart email.parser
fractions ftplib gettext gzip http.client http.server imaplib ipaddress json
logging.handlers mailbox multiprocessing optparse pdb pickletools plistlib poplib pprint
pydoc shlex smtplib sqlite3 statistics tarfile textwrap tomllib typing unittest
urllib.request uuid xml.dom.minidom xml.etree.ElementTree zipfile""".split()


def import_all():
    n = 0
    for name in MODULES:
        try:
            importlib.import_module(name)
            n += 1
        except ImportError:
            pass
    return n


def settle(seconds):
    end = time.time() + seconds
    x = 0
    while time.time() < end:
        x += 1
    return x


def main():
    n = import_all()
    sys.stdout.write("imported %d\n" % n)
    settle(float(sys.argv[1]) if len(sys.argv) > 1 else 0.3)


main()
