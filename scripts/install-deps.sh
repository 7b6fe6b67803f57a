#!/usr/bin/env bash
# Installs the system packages the build needs on Debian (idempotent, non-interactive):
# clang and libclang for the RocksDB bindings.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

if ! ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 || ! command -v clang >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends clang libclang-dev >/dev/null
fi
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
command -v python3 >/dev/null || { apt-get update -qq; apt-get install -y -qq python3 >/dev/null; }
