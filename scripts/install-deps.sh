#!/usr/bin/env bash
# Installs what the build and the tests need on Debian (idempotent, non-interactive): clang and
# libclang for the RocksDB bindings; for the OAuth browser and interop tests
# (gateway/tests/oauth_flows.rs) Debian's Chromium, playwright-core from npm (pinned by
# gateway/tests/interop/package-lock.json; it uses /usr/bin/chromium and downloads no browser) and
# the Python clients pinned in gateway/tests/interop/requirements.txt.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
root="$(cd "$(dirname "$0")/.." && pwd)"

if ! ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 || ! command -v clang >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends clang libclang-dev >/dev/null
fi
# pingora (`p8fs edge`) builds zlib-ng with cmake and zstd with the C compiler.
if ! command -v cmake >/dev/null || ! command -v cc >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 cmake gcc libc6-dev >/dev/null
fi
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
command -v python3 >/dev/null || { apt-get update -qq; apt-get install -y -qq python3 >/dev/null; }

# The OAuth flow tests: a real browser and clients no one here wrote; the S3 client tests
# (gateway/tests/s3_clients.rs): rclone from Debian, the AWS CLI and boto3 from PyPI (below).
missing=()
command -v rclone >/dev/null || missing+=(rclone)
command -v chromium >/dev/null || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
# wrk for the HTTP benchmarks of README's Performance section (scripts/bench/rest.sh, edge.sh).
command -v wrk >/dev/null || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  # Waits for the dpkg lock if another installation is running.
  apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
fi
interop="$root/gateway/tests/interop"
# npm ci only when node_modules does not hold exactly the locked version of every package.
if ! (cd "$interop" && node -e '
  const locked = require("./package-lock.json").packages;
  for (const [path, entry] of Object.entries(locked)) {
    if (!path.startsWith("node_modules/")) continue;
    const have = require("./" + path + "/package.json").version;
    if (have !== entry.version) process.exit(1);
  }' 2>/dev/null); then
  (cd "$interop" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
  -r "$interop/requirements.txt"

# schemathesis (CI's OpenAPI conformance run, scripts/schemathesis.sh), pinned in
# scripts/requirements-ci.txt, in a virtual environment of its own outside the clone. Its
# interpreter is the newest CPython found that has the fix for CPython gh-106905: before 3.11.8
# and 3.12.2 the AST constructor kept its recursion counter per interpreter, not per call, so two
# threads parsing at once (hypothesis describes filter lambdas by parsing their module, and
# schemathesis runs two workers) fail with "SystemError: AST constructor recursion depth
# mismatch". scripts/schemathesis.sh runs one worker if only an affected interpreter exists.
tools_dir="${P8FS_TOOLS_DIR:-/var/tmp/p8fs-tools}"
st_venv="$tools_dir/schemathesis"
requirements="$(cd "$(dirname "$0")" && pwd)/requirements-ci.txt"
python_is_fixed='import sys; v = sys.version_info[:3]; sys.exit(0 if v >= (3, 12, 2) or (3, 11, 8) <= v < (3, 12) else 1)'
python_is_usable='import sys, venv, ensurepip; sys.exit(0 if sys.version_info[:2] >= (3, 11) else 1)'
pick_python() {
  local candidates=() candidate
  for candidate in python3.14 python3.13 python3.12 python3.11 python3; do
    command -v "$candidate" >/dev/null && candidates+=("$candidate")
  done
  if command -v pyenv >/dev/null; then
    for candidate in $(ls -d "$(pyenv root)"/versions/3.*/bin/python3 2>/dev/null | sort -V -r); do
      candidates+=("$candidate")
    done
  fi
  for candidate in "${candidates[@]}"; do
    if "$candidate" -c "$python_is_usable" 2>/dev/null && "$candidate" -c "$python_is_fixed" 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
  for candidate in "${candidates[@]}"; do
    if "$candidate" -c "$python_is_usable" 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
  echo "no CPython >= 3.11 with venv and ensurepip found for schemathesis" >&2
  return 1
}
if ! python="$(pick_python)"; then
  # Debian's own python3 makes environments only with python3-venv.
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 python3-venv >/dev/null
  python="$(pick_python)"
fi
venv_python="$st_venv/bin/python"
if ! "$venv_python" -c "$python_is_usable" 2>/dev/null \
  || { ! "$venv_python" -c "$python_is_fixed" 2>/dev/null && "$python" -c "$python_is_fixed"; }; then
  # Missing or broken, or a fixed interpreter has appeared since it was made.
  rm -rf "$st_venv"
  mkdir -p "$tools_dir"
  "$python" -m venv "$st_venv"
fi
"$st_venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements"
