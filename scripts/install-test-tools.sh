#!/usr/bin/env bash
# Install the independent readers that tests/formats.rs checks pyprof's export formats
# with (speedscope, Chrome trace, pprof):
#
#   venv/        a Python venv with jsonschema (validates speedscope files against the
#                real schema), grpcio-tools (protoc, with the protobuf runtime it pins, to compile
#                tests/fixtures/profile.proto and decode pprof output)
#   speedscope/  the `speedscope` npm package, unpacked (not installed: nothing of it
#                runs at install time). Its dist/release/file-format-schema.json is the
#                speedscope schema, and its bundled importer reads speedscope JSON,
#                Chrome traces and pprof (tests/scripts/check_speedscope_import.mjs).
#   chromium     Debian's `chromium` package (apt-get, when missing), run headless by
#                tests/teaching.rs to check that rendered flamegraphs and annotate pages
#                show function names (tests/scripts/check_rendered.mjs drives it).
#   go           Debian's `golang-go` (apt-get, when missing): tests/formats.rs reads
#                pprof output with `go tool pprof`, the reader pprof users have.
#
# Idempotent: a stamp records what was installed, so a second run is a quick no-op.
# Tools go to $PYPROF_TEST_TOOLS, else /opt/pyprof-tools when writable, else
# target/test-tools in the repository. The last line printed is `tools: DIR`, and
# DIR/tools.env holds PYTHON=, SPEEDSCOPE_DIR=, NODE=, CHROMIUM= (empty when it could
# not be installed: the tests that need it say SKIP).
set -euo pipefail
cd "$(dirname "$0")/.."

SPEEDSCOPE_VERSION=1.25.0
PY_PKGS=(jsonschema==4.26.0 grpcio-tools==1.85.1)
STAMP_TEXT="v3 speedscope@$SPEEDSCOPE_VERSION ${PY_PKGS[*]} chromium golang-go"

log() { echo "install-test-tools: $*" >&2; }

pick_dir() {
  if [[ -n ${PYPROF_TEST_TOOLS:-} ]]; then
    echo "$PYPROF_TEST_TOOLS"
  elif mkdir -p /opt/pyprof-tools 2>/dev/null && [[ -w /opt/pyprof-tools ]]; then
    echo /opt/pyprof-tools
  else
    echo "$PWD/target/test-tools"
  fi
}

DIR=$(pick_dir)
mkdir -p "$DIR"
# One installer at a time (test binaries and people may run this concurrently).
exec 9>"$DIR/.lock"
flock 9

if [[ -f $DIR/.stamp && $(cat "$DIR/.stamp") == "$STAMP_TEXT" && -f $DIR/tools.env ]]; then
  echo "tools: $DIR"
  exit 0
fi
rm -f "$DIR/.stamp"

# --- Python venv ---------------------------------------------------------------------
find_python() {
  local c
  for c in ${PYPROF_TOOLS_PYTHON:-} python3 /usr/bin/python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import venv, sys; assert sys.version_info >= (3, 9)' 2>/dev/null; then
      command -v "$c"
      return 0
    fi
  done
  return 1
}
PY=$(find_python) || { log "no python3 (>= 3.9) with venv found"; exit 1; }
VENV=$DIR/venv
if [[ ! -x $VENV/bin/python ]]; then
  log "creating venv with $PY"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
fi
log "pip install ${PY_PKGS[*]}"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_PKGS[@]}" >&2
"$VENV/bin/python" - <<'EOF' >&2
from importlib.metadata import version
import jsonschema, google.protobuf, grpc_tools.protoc
print("install-test-tools: python ok:", *(f"{p} {version(p)}" for p in ("jsonschema", "protobuf", "grpcio-tools")))
EOF

# --- speedscope (npm package, unpacked) ----------------------------------------------
NODE=$(command -v node || true)
command -v npm >/dev/null 2>&1 || { log "npm not found (needed to fetch the speedscope package)"; exit 1; }
[[ -n $NODE ]] || { log "node not found"; exit 1; }
SS=$DIR/speedscope
if [[ ! -f $SS/package.json ]] || ! grep -q "\"version\": \"$SPEEDSCOPE_VERSION\"" "$SS/package.json"; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  log "npm pack speedscope@$SPEEDSCOPE_VERSION"
  (cd "$tmp" && npm pack --silent "speedscope@$SPEEDSCOPE_VERSION" >/dev/null)
  tar -xzf "$tmp"/speedscope-*.tgz -C "$tmp"
  rm -rf "$SS"
  mv "$tmp/package" "$SS"
fi
[[ -f $SS/dist/release/file-format-schema.json ]] || { log "speedscope package has no schema"; exit 1; }
ls "$SS"/dist/release/speedscope-*.js >/dev/null 2>&1 || { log "speedscope package has no bundle"; exit 1; }

# --- chromium (Debian package) --------------------------------------------------------
find_chromium() {
  local c
  for c in ${PYPROF_CHROMIUM:-} chromium chromium-browser; do
    if command -v "$c" >/dev/null 2>&1; then
      command -v "$c"
      return 0
    fi
  done
  return 1
}
CHROMIUM=$(find_chromium || true)
if [[ -z $CHROMIUM ]]; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "apt-get install chromium"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >&2; then
      apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >&2 || true
    fi
    CHROMIUM=$(find_chromium || true)
  fi
  [[ -n $CHROMIUM ]] || log "chromium not installed (needs root and apt-get): rendering tests will SKIP"
fi

# --- go (Debian's golang-go, for `go tool pprof`) ------------------------------------
find_go() {
  local c
  for c in ${PYPROF_GO:-} go /usr/lib/go/bin/go; do
    if command -v "$c" >/dev/null 2>&1; then
      command -v "$c"
      return 0
    fi
  done
  return 1
}
GO=$(find_go || true)
if [[ -z $GO ]]; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "apt-get install golang-go"
    if ! DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends golang-go >&2; then
      apt-get -o DPkg::Lock::Timeout=600 update >&2 && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends golang-go >&2 || true
    fi
    GO=$(find_go || true)
  fi
  [[ -n $GO ]] || log "golang-go not installed (needs root and apt-get): the go tool pprof check will SKIP"
fi

cat >"$DIR/tools.env" <<EOF
PYTHON=$VENV/bin/python
SPEEDSCOPE_DIR=$SS
NODE=$NODE
CHROMIUM=$CHROMIUM
GO=$GO
EOF
echo "$STAMP_TEXT" >"$DIR/.stamp"
log "done in $DIR"
echo "tools: $DIR"
