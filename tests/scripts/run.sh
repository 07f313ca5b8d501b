#!/bin/sh
# A launcher that is not Python: it runs the interpreter and script it is given (as a
# service's start script does), so pyprof must follow its Python descendant.
"$@"
echo "run.sh: done"
