#!/usr/bin/env bash
# Install pyperformance (its benchmarks are the real code the accuracy tests and the
# bench profile) for the interpreters they use, idempotently:
#
#   3.12  venv at target/pyperf/venv-3.12 (pyenv's 3.12.1), from PyPI
#   3.15  venv inside the sid chroot at /opt/sid/opt/pyprof-pyperf-3.15 (python3.15, with
#         Debian's python3.15-venv), from wheels the host's pip downloads into
#         /opt/sid/opt/pyprof-wheels (pure Python and abi3: they run on 3.15)
#
# The last lines printed are `pyperformance 3.12: PYTHON` and `pyperformance 3.15:
# COMMAND` (the benchmarks are under pyperformance/data-files/benchmarks/ of each).
# A step that cannot be done is said, and that version is left out (exit 0 still):
# the tests that need it fail by name.
set -uo pipefail
cd "$(dirname "$0")/.."
VERSIONS=(pyperformance==1.14.0 pyperf==2.11.0)
STAMP="v1 ${VERSIONS[*]}"
say() { printf 'install-pyperformance: %s\n' "$*" >&2; }
root=${PYENV_ROOT:-/root/.pyenv}
exec 9>target/.pyperformance.lock 2>/dev/null || { mkdir -p target; exec 9>target/.pyperformance.lock; }
flock 9

# --- 3.12 -----------------------------------------------------------------------------
py312=$root/versions/3.12.1/bin/python
venv=target/pyperf/venv-3.12
if [[ -f $venv/.stamp && $(cat "$venv/.stamp") == "$STAMP" ]]; then
  :
elif [[ -x $py312 ]]; then
  say "3.12: creating $venv"
  rm -rf "$venv"
  if "$py312" -m venv "$venv" && "$venv/bin/pip" install -q "${VERSIONS[@]}" >&2; then
    echo "$STAMP" > "$venv/.stamp"
  else
    say "3.12: pip install failed"
  fi
else
  say "3.12: $py312 not found"
fi
[[ -f $venv/.stamp ]] && echo "pyperformance 3.12: $PWD/$venv/bin/python"

# --- 3.15 in the sid chroot -----------------------------------------------------------
sid=/opt/sid
cvenv=/opt/pyprof-pyperf-3.15
wheels=/opt/pyprof-wheels
if [[ -f $sid$cvenv/.stamp && $(cat "$sid$cvenv/.stamp") == "$STAMP" ]]; then
  :
elif [[ -x $sid/usr/bin/python3.15 && $(id -u) == 0 ]]; then
  if ! chroot "$sid" python3.15 -c 'import ensurepip' 2>/dev/null; then
    say "3.15: installing python3.15-venv in the chroot"
    chroot "$sid" apt-get install -y -q --no-install-recommends python3.15-venv >&2 ||
      say "3.15: apt-get install python3.15-venv failed"
  fi
  mkdir -p "$sid$wheels"
  host_py=$py312
  [[ -x $host_py ]] || host_py=python3
  say "3.15: downloading wheels into $sid$wheels"
  if "$host_py" -m pip download -q -d "$sid$wheels" "${VERSIONS[@]}" >&2 &&
     rm -rf "$sid$cvenv" &&
     chroot "$sid" python3.15 -m venv "$cvenv" &&
     chroot "$sid" "$cvenv/bin/pip" install -q --no-index --find-links "$wheels" "${VERSIONS[@]}" >&2; then
    echo "$STAMP" > "$sid$cvenv/.stamp"
  else
    say "3.15: installing pyperformance in the chroot failed"
  fi
else
  say "3.15: no python3.15 in $sid (or not root)"
fi
[[ -f $sid$cvenv/.stamp ]] && echo "pyperformance 3.15: chroot $sid $cvenv/bin/python"
exit 0
