#!/usr/bin/env bash
# The main job on a bundled example: build pyprof, profile examples/demo.py, and write
# flamegraphs/demo.svg (plus the same profile as JSON).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [[ -z $PY ]]; then
  for c in "${PYENV_ROOT:-/root/.pyenv}/versions/3.12.1/bin/python" python3; do
    if command -v "$c" >/dev/null 2>&1; then PY=$c; break; fi
  done
fi
cargo build --release --quiet
target/release/pyprof record -r 200 -o flamegraphs/demo.json -f json -- "$PY" examples/demo.py 3
target/release/pyprof report flamegraphs/demo.json -f flamegraph -o flamegraphs/demo.svg 2>/dev/null ||
  target/release/pyprof record -r 200 -o flamegraphs/demo.svg -- "$PY" examples/demo.py 3
echo "demo: wrote flamegraphs/demo.svg"
