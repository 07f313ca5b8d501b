#!/usr/bin/env bash
# The main job on a bundled example: build pyprof, profile examples/demo.py with opcode
# capture, and write demo.svg (flamegraph with opcode leaves), demo-opcodes.txt (the
# opcode report) and demo.json (the profile) into OUT_DIR (default target/demo, which git
# does not track: running the demo leaves the checkout clean). scripts/gallery.sh runs it
# with flamegraphs/ to refresh the committed example outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/demo}
PY=${PYTHON:-}
if [[ -z $PY ]]; then
  for c in "${PYENV_ROOT:-/root/.pyenv}/versions/3.12.1/bin/python" python3; do
    if command -v "$c" >/dev/null 2>&1; then PY=$c; break; fi
  done
fi
# PYPROF_BIN: a pyprof already built (the tests pass theirs), else a release build.
bin=${PYPROF_BIN:-}
if [[ -z $bin ]]; then
  cargo build --release --quiet
  bin=target/release/pyprof
fi
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bin" record --opcodes -r 200 -f json -o "$tmp/demo.json" -- "$PY" examples/demo.py 3
"$bin" report "$tmp/demo.json" -f flamegraph -o "$out/demo.svg"
"$bin" report "$tmp/demo.json" -f opcodes -o "$out/demo-opcodes.txt"
"$bin" annotate "$tmp/demo.json" --top 1
if [[ $out != flamegraphs ]]; then
  cp "$tmp/demo.json" "$out/demo.json"
fi
echo "demo: wrote $out/demo.svg and $out/demo-opcodes.txt"
