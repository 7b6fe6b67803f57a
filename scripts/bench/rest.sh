#!/usr/bin/env bash
# The REST API near the server's own ceiling, and the cost of encryption at rest as a client
# sees it. Two `p8fs serve` nodes on RocksDB, one with encryption at rest (the default) and one
# with `[encryption] enabled = false`, each loaded with wrk in turn, alternating, for ROUNDS
# rounds: GET /healthz (no auth, no storage: the ceiling), an authenticated GET /v1/kv/{key} of
# a small JSON note, and authenticated PUTs of that note to random keys. The table gives the
# best round's req/s, p50 and p99 of each, the key-value GET relative to /healthz on the same
# node, and the sealed node relative to the plain one.
#
#   scripts/bench/rest.sh            (env: ROUNDS=3 DURATION=10s CONNECTIONS=64 THREADS=2)
#
# Needs the release binary (cargo build --release --workspace --bins) and wrk
# (scripts/install-deps.sh). wrk and the node share this machine's cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/bench/lib.sh

note='{"kind":"note","n":42,"tags":["work","draft"],"text":"remember to water the plants on the balcony before the trip, and ask the neighbour to check the mail every other day"}'
declare -A url token
config='[log]
level = "warn"
'
start_node sealed "$config"
url[sealed]="http://127.0.0.1:$port"
start_node plain "$config
[encryption]
enabled = false
"
url[plain]="http://127.0.0.1:$port"
for name in sealed plain; do
  token[$name]="$(issue_token "$name" "bench$$")"
  curl -sf -X PUT "${url[$name]}/v1/kv/bench" -H "authorization: Bearer ${token[$name]}" \
    -H 'content-type: application/json' --data "$note" >/dev/null
  curl -sf "${url[$name]}/v1/kv/bench" -H "authorization: Bearer ${token[$name]}" >/dev/null
done
# PUTs of the note to one of a million keys at random.
cat >"$work/put.lua" <<LUA
wrk.method = "PUT"
wrk.body = '$note'
wrk.headers["content-type"] = "application/json"
request = function()
  return wrk.format(nil, "/v1/kv/put-" .. math.random(1, 1000000))
end
LUA

echo "REST on RocksDB, encryption at rest on (sealed) and off (plain): wrk -t$threads" \
  "-c$connections -d$duration, $rounds rounds alternating; $(nproc) cores shared by wrk and the node" >&2
results="$work/results"
: >"$results"
for round in $(seq 1 "$rounds"); do
  for name in sealed plain; do
    auth="Authorization: Bearer ${token[$name]}"
    for test in healthz get put; do
      case "$test" in
        healthz) line="$(measure "${url[$name]}/healthz")" ;;
        get) line="$(measure "${url[$name]}/v1/kv/bench" -H "$auth")" ;;
        put) line="$(measure "${url[$name]}" -H "$auth" -s "$work/put.lua")" ;;
      esac
      echo "round $round $name $test: $line" >&2
      echo "$test $name $line" >>"$results"
    done
  done
done

python3 - "$results" <<'PY'
import sys
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    test, name, rps, p50, p99, errors = line.split()
    rows[(test, name)].append((float(rps), float(p50), float(p99), int(errors)))
def best(test, name):
    runs = rows[(test, name)]
    return max(runs, key=lambda r: r[0]), sum(r[3] for r in runs)
labels = {"healthz": "GET /healthz", "get": "GET /v1/kv/bench", "put": "PUT /v1/kv/put-N"}
print()
print(f"{'request':<19}{'node':<8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
      f"{'/healthz':>10}{'sealed/plain':>14}{'errors':>8}")
for test in ("healthz", "get", "put"):
    for name in ("sealed", "plain"):
        (rps, p50, p99, _), errors = best(test, name)
        ceiling = best("healthz", name)[0][0]
        vs_health = "" if test == "healthz" else f"{rps / ceiling:.2f}x"
        vs_plain = f"{rps / best(test, 'plain')[0][0]:.2f}x" if name == "sealed" else ""
        print(f"{labels[test]:<19}{name:<8}{rps:>9.0f}{p50:>9.2f}{p99:>9.2f}"
              f"{vs_health:>10}{vs_plain:>14}{errors:>8}")
PY
