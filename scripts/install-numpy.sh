#!/usr/bin/env bash
# Install numpy (real C-extension code: a matrix product runs in its BLAS) into a venv
# for the native-code tests, idempotently (with py-spy, to compare --native with):
#
#   3.12  venv at target/native/venv-3.12 (pyenv's 3.12.1), from PyPI
#
# The last line printed is `numpy 3.12: PYTHON`. A step that cannot be done is said and
# the line is left out (exit 0 still): the tests that need numpy fail by name.
set -uo pipefail
cd "$(dirname "$0")/.."
# py-spy too: tests/native.rs compares `--native` with `py-spy record --native` (for
# comparison only; pyprof never depends on it).
VERSIONS=(numpy==2.3.5 py-spy==0.4.3)
STAMP="v2 ${VERSIONS[*]}"
say() { printf 'install-numpy: %s\n' "$*" >&2; }
root=${PYENV_ROOT:-/root/.pyenv}
mkdir -p target
exec 9>target/.numpy.lock
flock 9
py312=$root/versions/3.12.1/bin/python
venv=target/native/venv-3.12
if [[ -f $venv/.stamp && $(cat "$venv/.stamp") == "$STAMP" ]]; then
  :
elif [[ -x $py312 ]]; then
  say "3.12: creating $venv"
  rm -rf "$venv"
  if "$py312" -m venv "$venv" && "$venv/bin/pip" install -q --only-binary :all: "${VERSIONS[@]}" >&2; then
    echo "$STAMP" > "$venv/.stamp"
  else
    say "3.12: pip install failed"
  fi
else
  say "3.12: $py312 not found"
fi
[[ -f $venv/.stamp ]] && echo "numpy 3.12: $PWD/$venv/bin/python"
exit 0
