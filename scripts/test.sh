#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: installs what the tests need (idempotent),
# then runs every test against every interpreter found, and prints at the end what was
# skipped or waived (libtest hides what passing tests print).
#
#   PYPROF_WAIVE_PYTHONS=3.9.18,3.14.10   run without these interpreters (each waiver is
#                                         printed at the end)
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-build-deps.sh || exit 1
if [[ -x scripts/install-pythons.sh ]]; then
  bash scripts/install-pythons.sh || exit 1
fi
if [[ -f /opt/pythons/pythons.env ]]; then
  # shellcheck disable=SC1091
  . /opt/pythons/pythons.env
fi
export PYPROF_PYTHONS=${PYPROF_PYTHONS:-}
# The independent format readers (speedscope, pprof, Chrome trace) are required here.
export PYPROF_REQUIRE_TEST_TOOLS=1
# The bpf sampler must run where the test command runs (root, CAP_BPF, CAP_PERFMON).
export PYPROF_REQUIRE_BPF=${PYPROF_REQUIRE_BPF:-1}
echo "test: PYPROF_PYTHONS=$PYPROF_PYTHONS"
notices=target/tmp/test-notices.txt
mkdir -p target/tmp
: > "$notices"
log=target/tmp/test-output.txt
cargo test --no-fail-fast 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
echo
echo "==== test notices (skips, waivers) ===="
if [[ -s $notices ]]; then sort -u "$notices"; else echo "none: nothing skipped or waived"; fi
if [[ $rc -ne 0 ]]; then
  # What each failing test said, last, where a truncated log still shows it.
  echo "==== why tests failed (the panic messages) ===="
  grep -A12 -E "^thread '.*' .*panicked at" "$log" | grep -v -E "^(stack backtrace:|   [0-9]+: |             at )" | cut -c1-600
fi
echo "==== cargo test exit status: $rc ===="
exit $rc
