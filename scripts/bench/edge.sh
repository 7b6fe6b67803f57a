#!/usr/bin/env bash
# Throughput and latency of `p8fs edge` beside nginx as the same reverse proxy (a keepalive pool
# of HTTP/1.1 connections, round robin) and beside direct access to a node, in one run against
# the same two `p8fs serve` nodes; and the cost of the edge's token verification (the edge with
# `verify_tokens = true` and `false`). Each target is loaded with wrk in turn, alternating, for
# ROUNDS rounds, on GET /healthz and on an authenticated GET /v1/kv/{key}; the table gives the
# best round's req/s, p50 and p99 of each, req/s relative to nginx and p99 added over direct.
#
#   scripts/bench/edge.sh            (env: ROUNDS=3 DURATION=10s CONNECTIONS=64 THREADS=2)
#
# The nodes use RocksDB, one data directory each (the key is written to both), or one
# PostgreSQL database when P8FS_TEST_POSTGRES_URL is set. Needs the release binary
# (cargo build --release --workspace --bins), wrk (scripts/install-deps.sh) and nginx
# (`apt-get install nginx-light`).
# Client, proxies and nodes share this machine's cores: the numbers compare the proxies with
# each other under that contention, not with a deployment where each has its own machine.
set -euo pipefail
cd "$(dirname "$0")/../.."

source scripts/bench/lib.sh
nginx="$(command -v nginx || echo /usr/sbin/nginx)"
[ -x "$nginx" ] || { echo "nginx is missing: apt-get install nginx-light" >&2; exit 1; }

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

echo "p8fs edge vs nginx vs direct: 2 nodes ($storage), wrk -t$threads -c$connections -d$duration," \
  "$rounds rounds alternating targets; $(nproc) cores shared by wrk, proxy and both nodes" >&2
results="$work/results"
: >"$results"
for round in $(seq 1 "$rounds"); do
  for path in /healthz /v1/kv/bench; do
    for name in "${targets[@]}"; do
      if [ "$path" = /healthz ]; then
        line="$(measure "${url[$name]}$path")"
      else
        line="$(measure "${url[$name]}$path" -H "Authorization: Bearer $token")"
      fi
      echo "round $round $path $name: $line" >&2
      echo "$path $name $line" >>"$results"
    done
  done
done

python3 - "$results" "$(nproc)" <<'PY'
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
print(f"\nAll on one machine with {sys.argv[2]} cores shared by wrk, the proxy and both nodes: "
      "a proxy's added latency includes the CPU it takes from the nodes and the client.")
PY
