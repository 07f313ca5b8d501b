#!/usr/bin/env bash
# The main job on a bundled example: build pyprof, profile examples/demo.py with opcode
# capture, and write flamegraphs/demo.svg (flamegraph with opcode leaves) and
# flamegraphs/demo-opcodes.txt (the opcode report).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [[ -z $PY ]]; then
  for c in "${PYENV_ROOT:-/root/.pyenv}/versions/3.12.1/bin/python" python3; do
    if command -v "$c" >/dev/null 2>&1; then PY=$c; break; fi
  done
fi
cargo build --release --quiet
bin=target/release/pyprof
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bin" record --opcodes -r 200 -f json -o "$tmp/demo.json" -- "$PY" examples/demo.py 3
"$bin" report "$tmp/demo.json" -f flamegraph -o flamegraphs/demo.svg
"$bin" report "$tmp/demo.json" -f opcodes -o flamegraphs/demo-opcodes.txt
"$bin" annotate "$tmp/demo.json" --top 1
echo "demo: wrote flamegraphs/demo.svg and flamegraphs/demo-opcodes.txt"
