#!/usr/bin/env bash
# Exact vector search beside its anchors, on the same generated data, in one go:
#   FAISS IndexFlatIP (one thread) and numpy (a float32 matrix-vector product, two threads) from a
#   Python venv this script creates, a C probe that streams the f32 matrix once (gcc -O3
#   -march=native; one and two threads: the bandwidth limit of anything that reads every f32), and
#   p8fs through the RocksDB backend's search API (backends/rocksdb/benches/exact_search.rs).
# Prints one table per data set with p50/p99, ratios to FAISS and to the one-thread f32 scan, and
# how many queries' top 10 equal the exact float64 top 10.
# With --ef, approximate search too: FAISS IndexHNSWFlat (M = 16, efConstruction = 100, efSearch =
# ef) beside p8fs's graph with the same parameters, with recall@10 against the exact top 10,
# queries/s with two threads, build time (one thread each) and the graph's size.
#
#   scripts/bench/vector-anchors.sh [--rows 100000[,1000000]] [--dim 384] [--queries 300]
#                                   [--kinds clustered,uniform] [--ef 64[,128]] [--exact no]
#                                   [--centres 1000] [--work DIR]
#
# Environment: P8FS_BENCH_VENV (the venv, default ~/.cache/p8fs-bench-venv), CARGO_TARGET_DIR.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
rows=100000 dim=384 queries=300 kinds=clustered,uniform work="" efs="" exact=yes centres=1000
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) rows=$2; shift 2 ;;
    --dim) dim=$2; shift 2 ;;
    --queries) queries=$2; shift 2 ;;
    --kinds) kinds=$2; shift 2 ;;
    --centres) centres=$2; shift 2 ;;
    --ef) efs=$2; shift 2 ;;
    --exact) exact=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$work" ] || work=$(mktemp -d)
mkdir -p "$work"
venv=${P8FS_BENCH_VENV:-$HOME/.cache/p8fs-bench-venv}

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check faiss-cpu numpy
py="$venv/bin/python"

gcc -O3 -march=native -pthread -o "$work/f32scan" "$here/f32scan.c"
(cd "$root" && cargo bench --workspace --bench exact_search --no-run)

results="$work/results.jsonl"
: > "$results"
tag() { # tag SET: add "set" to each JSON line on stdin
  "$py" -c 'import json, sys
for line in sys.stdin:
    if line.startswith("{"):
        r = json.loads(line); r["set"] = sys.argv[1]; print(json.dumps(r))' "$1"
}
for n in ${rows//,/ }; do
  for kind in ${kinds//,/ }; do
    set_name="$kind, $n x $dim cosine, k = 10, $queries queries"
    data="$work/$kind-$n"
    echo "# $set_name: generating" >&2
    "$py" "$here/vector_anchors.py" generate "$data" --rows "$n" --dim "$dim" --queries "$queries" --kind "$kind" \
      --centres "$centres"
    if [ "$exact" = yes ]; then
      echo "# FAISS" >&2
      OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$py" "$here/vector_anchors.py" faiss "$data" | tag "$set_name" >> "$results"
      echo "# numpy" >&2
      OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=2 "$py" "$here/vector_anchors.py" numpy "$data" | tag "$set_name" >> "$results"
      echo "# C f32 scan" >&2
      for threads in 1 2; do
        "$work/f32scan" "$data/base.f32" "$data/queries.f32" "$n" "$dim" "$queries" "$threads" | tag "$set_name" >> "$results"
      done
      echo "# p8fs (RocksDB)" >&2
      (cd "$root" && P8FS_BENCH_DATA="$data" cargo bench --workspace --bench exact_search 2>/dev/null) | tag "$set_name" >> "$results"
    fi
    if [ -n "$efs" ]; then
      echo "# FAISS HNSW, ef $efs" >&2
      "$py" "$here/vector_anchors.py" faiss-hnsw "$data" --ef "$efs" | tag "$set_name" >> "$results"
      echo "# p8fs HNSW (RocksDB), ef $efs" >&2
      (cd "$root" && P8FS_BENCH_DATA="$data" P8FS_BENCH_EF="$efs" cargo bench --workspace --bench exact_search 2>/dev/null) | tag "$set_name" >> "$results"
    fi
    rm -f "$data/base.f32"
  done
done
lscpu | sed -n 's/^Model name: *//p' | head -1 | sed 's/^/# machine: /'
echo "# $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$py" "$here/vector_anchors.py" table "$results"
