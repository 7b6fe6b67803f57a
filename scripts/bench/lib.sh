# Shell helpers of the HTTP benchmarks (scripts/bench/rest.sh, scripts/bench/edge.sh): sourced,
# not run. They expect `set -euo pipefail` and the repository root as the working directory.

rounds="${ROUNDS:-3}"
duration="${DURATION:-10s}"
connections="${CONNECTIONS:-64}"
threads="${THREADS:-2}"
target="${CARGO_TARGET_DIR:-target}"
p8fs="$target/release/p8fs"
[ -x "$p8fs" ] || { echo "no $p8fs: cargo build --release --workspace --bins" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is missing: scripts/install-deps.sh" >&2; exit 1; }

work="$(mktemp -d)"
chmod 755 "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
wait_ok() { # URL LOG
  for _ in $(seq 1 300); do
    curl -sf "$1" >/dev/null && return 0
    sleep 0.1
  done
  echo "$1 did not answer; log:" >&2
  cat "$2" >&2
  exit 1
}

# The p8fs command without the caller's P8FS_* variables (p8fs refuses those it does not know).
run=(env)
for variable in $(compgen -e | grep '^P8FS_' || true); do run+=(-u "$variable"); done

# Starts `p8fs serve` with the config text CONFIG in WORK/NAME, on a free port; sets `port`.
start_node() { # NAME CONFIG [ENV...]
  local name="$1" config="$2" dir="$work/$1"
  shift 2
  mkdir -p "$dir"
  printf '%s' "$config" >"$dir/p8fs.toml"
  port="$(free_port)"
  "${run[@]}" "$@" "$p8fs" serve --config "$dir/p8fs.toml" --data-dir "$dir/data" \
    --listen "127.0.0.1:$port" --s3-listen "127.0.0.1:$(free_port)" >"$dir/log" 2>&1 &
  pids+=($!)
  wait_ok "http://127.0.0.1:$port/readyz" "$dir/log"
}

# A token of TENANT with `kv:read kv:write` from node NAME's keys.
issue_token() { # NAME TENANT [ENV...]
  local dir="$work/$1" tenant="$2"
  shift 2
  "${run[@]}" "$@" "$p8fs" token issue --config "$dir/p8fs.toml" --data-dir "$dir/data" \
    --tenant "$tenant" --sub bench --scope 'kv:read kv:write'
}

# wrk's summary as "req/s p50_ms p99_ms errors".
measure() { # URL [wrk arguments...]
  local url="$1"
  shift
  wrk -t"$threads" -c"$connections" -d"$duration" --latency "$@" "$url" | tee -a "$work/wrk.log" |
    python3 -c '
import re, sys
text = sys.stdin.read()
unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}
def latency(p):
    m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)\s*$" % p, text, re.M)
    return float(m.group(1)) * unit[m.group(2)]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
errors += int(m.group(1)) if m else 0
print(rps, latency(50), latency(99), errors)
if errors:
    print(text, file=sys.stderr)'
}
