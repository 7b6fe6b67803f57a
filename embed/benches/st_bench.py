#!/usr/bin/env python3
"""The throughput of sentence-transformers on the texts of the embed bench, for comparison.

torch is held to 2 threads (torch.set_num_threads(2)); batches of 32; best of 3 rounds after a
one-batch warm-up, as in embed.rs. Measured with torch 2.15.0+cu132 (the PyPI build, on the CPU), sentence-transformers 6.3.0.

Usage:
    P8FS_BENCH_TEXTS_OUT=texts.json cargo bench --workspace --bench embed   # writes the texts
    python st_bench.py MODEL_DIR texts.json
"""

import json
import sys
import time

import torch
from sentence_transformers import SentenceTransformer

BATCH_SIZE = 32
ROUNDS = 3


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    torch.set_num_threads(2)
    with open(sys.argv[2], encoding="utf-8") as f:
        texts = json.load(f)
    model = SentenceTransformer(sys.argv[1], device="cpu")
    tokens = sum(min(len(ids), model.max_seq_length) for ids in model.tokenizer(texts)["input_ids"])
    print(f"{len(texts)} chunks, {tokens / len(texts):.0f} tokens each on average, batches of {BATCH_SIZE}")
    model.encode(texts[:BATCH_SIZE], batch_size=BATCH_SIZE)
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        vectors = model.encode(texts, batch_size=BATCH_SIZE, normalize_embeddings=True)
        best = min(best, time.perf_counter() - started)
        assert vectors.shape == (len(texts), 384)
    print(
        f"sentence-transformers, torch threads {torch.get_num_threads()}: "
        f"{len(texts) / best:.1f} chunks/s (best of {ROUNDS}: {len(texts)} chunks in {best:.2f} s)"
    )


if __name__ == "__main__":
    main()
