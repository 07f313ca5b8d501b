#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: installs what the tests need (idempotent),
# then runs every test against every interpreter found.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -x scripts/install-pythons.sh ]]; then
  bash scripts/install-pythons.sh
fi
if [[ -f /opt/pythons/pythons.env ]]; then
  # shellcheck disable=SC1091
  . /opt/pythons/pythons.env
fi
export PYPROF_PYTHONS=${PYPROF_PYTHONS:-}
echo "test: PYPROF_PYTHONS=$PYPROF_PYTHONS"
cargo test --no-fail-fast 2>&1
