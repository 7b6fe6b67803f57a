#!/usr/bin/env bash
# Time from `aws s3 sync` of a folder of Markdown files to every file `indexed`: starts the release
# `p8fs` on a fresh RocksDB data directory with the builtin model, writes N Markdown files of
# about 5 KB each (deterministic prose), syncs them with the AWS CLI, and polls
# `GET /v1/index/{bucket}/{key}` until none is pending. Prints the sync time, the time until all
# are indexed, the chunk count and chunks per second.
#
#   scripts/bench/ingest.sh [N]       (default 1000 files, about 5 MB)
#
# Needs the release binary (cargo build --release --workspace), the model
# (scripts/services/model.sh install) and the AWS CLI (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."

files="${1:-1000}"
target="${CARGO_TARGET_DIR:-target}"
p8fs="$target/release/p8fs"
model_dir="$(scripts/services/model.sh dir)"
work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
port="$(free_port)"
s3_port="$(free_port)"
base="http://127.0.0.1:$port"

# p8fs refuses P8FS_* variables it does not know.
run=(env)
for variable in $(compgen -e | grep '^P8FS_' || true); do run+=(-u "$variable"); done
run+=("P8FS_EMBEDDINGS_MODEL_DIR=$model_dir" "$p8fs")

mkdir -m 700 "$work/data"
"${run[@]}" serve --listen "127.0.0.1:$port" --s3-listen "127.0.0.1:$s3_port" \
  --data-dir "$work/data" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 200); do
  curl -sf "$base/readyz" >/dev/null && break
  sleep 0.1
done
curl -sf "$base/readyz" >/dev/null || { cat "$work/server.log" >&2; exit 1; }

token="$("${run[@]}" token issue --data-dir "$work/data" --tenant bench --sub bench \
  --scope 'memories:read s3:read')"
eval "$("${run[@]}" s3 keys create --data-dir "$work/data" --tenant bench | sed 's/^/export /')"
export AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true

python3 - "$work/notes" "$files" <<'EOF'
import os, random, sys
out, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(42)
topics = ["release planning", "database backups", "travel to Tokyo", "sourdough baking",
          "garden watering", "quarterly budget", "incident review", "hiring interviews",
          "kubernetes upgrade", "family birthday", "book club", "marathon training"]
words = ("the team agreed to review the plan before friday and share notes with everyone "
         "because the deadline moved while the budget stayed the same so we need a careful "
         "estimate of cost time risk and the people who will own each step").split()
for i in range(n):
    topic = topics[i % len(topics)]
    d = os.path.join(out, f"dir{i % 20:02d}")
    os.makedirs(d, exist_ok=True)
    paragraphs = []
    while sum(len(p) for p in paragraphs) < 5000:
        sentences = []
        for _ in range(rng.randint(3, 6)):
            s = " ".join(rng.choice(words) for _ in range(rng.randint(8, 18)))
            sentences.append(s.capitalize() + f" about {topic}.")
        paragraphs.append(" ".join(sentences))
    with open(os.path.join(d, f"note{i:04d}.md"), "w") as f:
        f.write(f"# Note {i}: {topic}\n\n" + "\n\n".join(paragraphs) + "\n")
EOF
bytes="$(du -sb "$work/notes" | cut -f1)"

aws --endpoint-url "http://127.0.0.1:$s3_port" s3 mb s3://notes >/dev/null
started="$(date +%s.%N)"
aws --endpoint-url "http://127.0.0.1:$s3_port" s3 sync "$work/notes" s3://notes --only-show-errors
synced="$(date +%s.%N)"

python3 - "$base" "$token" "$work/notes" "$started" "$synced" "$bytes" <<'EOF'
import json, os, sys, time, urllib.parse, urllib.request
base, token, root, started, synced, size = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
keys = sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
pending, chunks, failed = set(keys), 0, []
while pending:
    for key in sorted(pending):
        url = f"{base}/v1/index/notes/{urllib.parse.quote(key)}"
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        status = json.load(urllib.request.urlopen(req))
        if status["state"] != "pending":
            pending.discard(key)
            chunks += status["chunks"]
            if status["state"] == "failed":
                failed.append((key, status.get("reason")))
    if pending:
        time.sleep(0.5)
done = time.time()
print(f"{len(keys)} files, {size / 1e6:.1f} MB: aws s3 sync {synced - started:.1f} s; "
      f"all indexed {done - started:.1f} s after the sync began; {chunks} chunks "
      f"({chunks / (done - started):.1f} chunks/s overall); failed: {len(failed)}")
sys.exit(1 if failed else 0)
EOF
