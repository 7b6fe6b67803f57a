//! Chunking throughput: 2 MiB of prose-like text with the approximate counter and the default
//! options (254 tokens, 32 of overlap).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use p8fs_text::{ApproximateCounter, ChunkOptions, chunk};

fn prose(bytes: usize) -> String {
    let words = [
        "the", "vault", "keeps", "memories", "of", "every", "upload", "and", "indexes", "them",
        "for", "semantic", "search", "across", "devices",
    ];
    let mut text = String::with_capacity(bytes + 64);
    let mut i = 0usize;
    while text.len() < bytes {
        for k in 0..(8 + i % 17) {
            if k > 0 {
                text.push(' ');
            }
            text.push_str(words[(i * 7 + k * 3) % words.len()]);
        }
        text.push_str(if i % 9 == 8 { ".\n\n" } else { ". " });
        i += 1;
    }
    text
}

fn bench(c: &mut Criterion) {
    let text = prose(2 << 20);
    let mut group = c.benchmark_group("chunk");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("2MiB_approximate", |b| {
        b.iter(|| chunk(&text, &ApproximateCounter, &ChunkOptions::default()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
