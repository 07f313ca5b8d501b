#!/usr/bin/env bash
# Install what building pyprof with its bpf sampler needs: clang (the BPF C program in
# src/sampler/bpf/ is compiled by build.rs with clang's BPF target; it needs no kernel
# or libbpf headers). Idempotent: a quick no-op when clang is there. Without clang the
# build still succeeds and pyprof says the bpf sampler is unavailable.
set -euo pipefail
say() { printf 'install-build-deps: %s\n' "$*"; }
for c in clang clang-19 clang-18 clang-17 clang-16 clang-15 clang-14; do
  if command -v "$c" >/dev/null 2>&1; then
    say "$c present"
    exit 0
  fi
done
if [[ $(id -u) != 0 ]]; then
  say "no clang, and not root to install it: pyprof will be built without the bpf sampler"
  exit 0
fi
say "installing clang-14 (for the bpf sampler)"
log=$(mktemp)
if ! DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends clang-14 >"$log" 2>&1; then
  apt-get -o DPkg::Lock::Timeout=600 update >>"$log" 2>&1 || true
  if ! DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends clang-14 >>"$log" 2>&1; then
    tail -n 20 "$log" | sed 's/^/install-build-deps: | /'
    say "could not install clang-14"
    exit 1
  fi
fi
rm -f "$log"
say "clang-14 installed"
