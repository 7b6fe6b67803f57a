#!/usr/bin/env bash
# Throughput and latency of `p8fs edge` beside nginx as the same reverse proxy (a keepalive pool
# of HTTP/1.1 connections, round robin) and beside direct access to a node, in one run against
# the same two `p8fs serve` nodes; and the cost of the edge's token verification (the edge with
# `verify_tokens = true` and `false`). Each target is loaded in turn, alternating, for ROUNDS
# rounds, on GET /healthz and on an authenticated GET /v1/kv/{key}, twice:
# - at saturation, with wrk (closed loop: CONNECTIONS requests always in flight): the best
#   round's req/s, p50 and p99, req/s relative to nginx and p99 added over direct;
# - at a fixed rate below every target's saturation, RATE req/s, with oha (open loop, latency
#   counted from when each request was due, so a stall is not hidden by the requests it held
#   back): the median round's p50, p99 and p99.9 and the p99 added over direct. This is the
#   latency a proxy adds to a request, apart from how much it can carry.
#
#   scripts/bench/edge.sh     (env: ROUNDS=3 DURATION=10s CONNECTIONS=64 THREADS=2 RATE=10000)
#
# The nodes use RocksDB, one data directory each (the key is written to both), or one
# PostgreSQL database when P8FS_TEST_POSTGRES_URL is set. Needs the release binary
# (cargo build --release --workspace --bins), wrk (scripts/install-deps.sh), nginx
# (`apt-get install nginx-light`) and oha (`cargo install oha --locked`).
# Client, proxies and nodes share this machine's cores: the numbers compare the proxies with
# each other under that contention, not with a deployment where each has its own machine.
set -euo pipefail
cd "$(dirname "$0")/../.."

source scripts/bench/lib.sh
nginx="$(command -v nginx || echo /usr/sbin/nginx)"
[ -x "$nginx" ] || { echo "nginx is missing: apt-get install nginx-light" >&2; exit 1; }
command -v oha >/dev/null || { echo "oha is missing: cargo install oha --locked" >&2; exit 1; }
rate="${RATE:-10000}"

storage="rocksdb"
storage_env=()
if [ -n "${P8FS_TEST_POSTGRES_URL:-}" ]; then
  storage="postgres"
  storage_env=(P8FS_STORAGE_PROVIDER=postgres "P8FS_STORAGE_URL=$P8FS_TEST_POSTGRES_URL")
fi

# Two nodes sharing an issuer and node 1's signing keys, so one token is valid on both.
ports=()
for node in 1 2; do
  if [ "$node" = 2 ]; then
    mkdir -p -m 700 "$work/node2/data"
    cp -a "$work/node1/data/keys" "$work/node2/data/keys"
  fi
  # The proxies, wrk and the nodes all use loopback: trusting it as a proxy lifts the
  # per-address connection cap that nginx's and the edge's pools would otherwise share.
  start_node "node$node" $'[log]\nlevel = "warn"\n\n[auth]\nissuer = "http://p8fs-bench.test"\n\n[limits]\ntrusted_proxies = ["127.0.0.1/32"]\n' "${storage_env[@]}"
  ports+=("$port")
done

tenant="bench$$"
token="$(issue_token node1 "$tenant" "${storage_env[@]}")"
for port in "${ports[@]}"; do
  curl -sf -X PUT "http://127.0.0.1:$port/v1/kv/bench" -H "authorization: Bearer $token" \
    -H 'content-type: application/json' --data '{"hello":"world","n":42}' >/dev/null
  curl -sf "http://127.0.0.1:$port/v1/kv/bench" -H "authorization: Bearer $token" >/dev/null
done

# The edge twice (token verification on and off), and nginx.
declare -A url
url[direct]="http://127.0.0.1:${ports[0]}"
for verify in true false; do
  name="edge-verify-$([ "$verify" = true ] && echo on || echo off)"
  port="$(free_port)"
  printf '[log]\nlevel = "warn"\n\n[edge]\nverify_tokens = %s\n' "$verify" >"$work/$name.toml"
  "${run[@]}" "$p8fs" edge --config "$work/$name.toml" --listen "127.0.0.1:$port" \
    --upstream "127.0.0.1:${ports[0]}" --upstream "127.0.0.1:${ports[1]}" >"$work/$name.log" 2>&1 &
  pids+=($!)
  url[$name]="http://127.0.0.1:$port"
  wait_ok "${url[$name]}/readyz" "$work/$name.log"
  # Ready when the keys are fetched: the authenticated request passes.
  for _ in $(seq 1 100); do
    curl -sf "${url[$name]}/v1/kv/bench" -H "authorization: Bearer $token" >/dev/null && break
    sleep 0.1
  done
done
port="$(free_port)"
upstreams="$(printf '    server 127.0.0.1:%s;\n' "${ports[@]}")"
python3 -c '
import sys
work, listen, upstreams = sys.argv[1:4]
sys.stdout.write(sys.stdin.read().replace("@WORK@", work).replace("@LISTEN@", listen)
                 .replace("@UPSTREAMS@", upstreams))' "$work" "127.0.0.1:$port" "$upstreams" \
  <scripts/bench/edge-nginx.conf >"$work/nginx.conf"
"$nginx" -p "$work" -c "$work/nginx.conf" -g 'daemon off;' >"$work/nginx.log" 2>&1 &
pids+=($!)
url[nginx]="http://127.0.0.1:$port"
wait_ok "${url[nginx]}/healthz" "$work/nginx.log"

targets=(direct nginx edge-verify-on edge-verify-off)
for name in "${targets[@]}"; do
  code="$(curl -s -o /dev/null -w '%{http_code}' "${url[$name]}/v1/kv/bench" -H "authorization: Bearer $token")"
  [ "$code" = 200 ] || { echo "$name: GET /v1/kv/bench answered $code" >&2; exit 1; }
done

# Loads every target on both paths with TOOL (measure or paced), alternating, ROUNDS times;
# writes "path target summary" lines to FILE.
load_rounds() { # TOOL FILE LABEL
  local tool="$1" file="$2" label="$3" round path name line
  : >"$file"
  for round in $(seq 1 "$rounds"); do
    for path in /healthz /v1/kv/bench; do
      for name in "${targets[@]}"; do
        if [ "$path" = /healthz ]; then
          line="$("$tool" "${url[$name]}$path")"
        else
          line="$("$tool" "${url[$name]}$path" -H "Authorization: Bearer $token")"
        fi
        echo "round $round $path $name$label: $line" >&2
        echo "$path $name $line" >>"$file"
      done
    done
  done
}
echo "p8fs edge vs nginx vs direct: 2 nodes ($storage), wrk -t$threads -c$connections -d$duration," \
  "$rounds rounds alternating targets; $(nproc) cores shared by wrk, proxy and both nodes" >&2
results="$work/results"
load_rounds measure "$results" ""

# The same targets at a fixed rate: oha's summary as "req/s p50_ms p99_ms p99.9_ms errors".
paced() { # URL [oha arguments...]
  local url="$1"
  shift
  oha -z "$duration" -c "$connections" -q "$rate" --latency-correction --no-tui \
    --output-format json "$@" "$url" | python3 -c '
import json, sys
d = json.load(sys.stdin)
p = d["latencyPercentiles"]
ok = d["statusCodeDistribution"].get("200", 0)
# Requests still in flight when the run ends are cut off by oha, not failed.
errors = sum(d["statusCodeDistribution"].values()) - ok + sum(
    n for what, n in d["errorDistribution"].items() if what != "aborted due to deadline")
print(d["summary"]["requestsPerSec"], p["p50"] * 1e3, p["p99"] * 1e3, p["p99.9"] * 1e3, errors)'
}
echo "the same at $rate req/s, oha -c$connections -z$duration --latency-correction" >&2
paced_results="$work/paced"
load_rounds paced "$paced_results" " at $rate req/s"

python3 - "$results" "$(nproc)" "$paced_results" "$rate" <<'PY'
import sys
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    path, name, rps, p50, p99, errors = line.split()
    rows[(path, name)].append((float(rps), float(p50), float(p99), int(errors)))
def best(path, name):
    runs = rows[(path, name)]
    # The round with the most req/s; its p99 is the run's, not the minimum over rounds.
    return max(runs, key=lambda r: r[0]), sum(r[3] for r in runs)
print()
print(f"{'path':<14}{'target':<18}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
      f"{'vs nginx':>10}{'+p99 ms':>9}{'errors':>8}")
for path in ("/healthz", "/v1/kv/bench"):
    nginx, _ = best(path, "nginx")
    direct, _ = best(path, "direct")
    for name in ("direct", "nginx", "edge-verify-on", "edge-verify-off"):
        (rps, p50, p99, _), errors = best(path, name)
        added = "" if name == "direct" else f"{p99 - direct[2]:+.2f}"
        print(f"{path:<14}{name:<18}{rps:>10.0f}{p50:>9.2f}{p99:>9.2f}"
              f"{rps / nginx[0]:>9.2f}x{added:>9}{errors:>8}")
paced = defaultdict(list)
for line in open(sys.argv[3]):
    path, name, rps, p50, p99, p999, errors = line.split()
    paced[(path, name)].append((float(p99), float(p50), float(p999), float(rps), int(errors)))
def median(path, name):
    # The round with the median p99 (ROUNDS odd), with its own p50 and p99.9.
    runs = sorted(paced[(path, name)])
    return runs[(len(runs) - 1) // 2], sum(r[4] for r in runs)
print(f"\nAt {sys.argv[4]} req/s (open loop), the median round:")
print(f"{'path':<14}{'target':<18}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'p99.9 ms':>10}"
      f"{'+p99 ms':>9}{'errors':>8}")
for path in ("/healthz", "/v1/kv/bench"):
    direct, _ = median(path, "direct")
    for name in ("direct", "nginx", "edge-verify-on", "edge-verify-off"):
        (p99, p50, p999, rps, _), errors = median(path, name)
        added = "" if name == "direct" else f"{p99 - direct[0]:+.2f}"
        print(f"{path:<14}{name:<18}{rps:>10.0f}{p50:>9.2f}{p99:>9.2f}{p999:>10.2f}"
              f"{added:>9}{errors:>8}")
print(f"\nAll on one machine with {sys.argv[2]} cores shared by the client, the proxy and both "
      "nodes: a proxy's added latency includes the CPU it takes from the nodes and the client.")
PY
