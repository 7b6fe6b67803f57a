//! Access-token verification throughput: [`Verifier::verify`] on one thread with the revocation
//! list in RocksDB (every call looks its `jti` up there, cached signature or not).
//!
//! - `cached`: the same token verified again and again (signature check cached; time, key and
//!   revocation checked on every call);
//! - `uncached`: distinct tokens, each verified once (header, Ed25519 signature and claims
//!   checked, then remembered in the cache, evicting as it fills);
//! - `revoked`: distinct revoked tokens, each refused once.
//!
//! The store holds `P8FS_BENCH_REVOKED` revocations (default 100 000) so lookups go through a
//! populated database. `P8FS_BENCH_SCALE` (default 1.0) scales the number of tokens.
//!
//! `cargo bench --workspace --bench verify`

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![expect(
    clippy::unwrap_used,
    reason = "a failed setup step should stop the benchmark loudly"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use p8fs_auth::{KeyRing, Principal, ScopeSet, TokenConfig, Verifier};
use p8fs_backend_rocksdb::{RocksBackend, RocksOptions};
use p8fs_core::{Clock, KvStore, SystemClock, TenantId};

const SCOPES: &str = "kv:read kv:write vectors:read vectors:write graph:read graph:write";

fn env_number(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let scale = env_number("P8FS_BENCH_SCALE", 1.0);
    let revoked_count = env_number("P8FS_BENCH_REVOKED", 100_000.0) as usize;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let kv: Arc<dyn KvStore> = Arc::new(
        RocksBackend::open(
            dir.path().join("db"),
            clock.clone(),
            RocksOptions::default(),
        )
        .unwrap(),
    );
    let keys = Arc::new(KeyRing::load_or_create(&dir.path().join("keys"), clock.clone()).unwrap());
    let config = TokenConfig {
        issuer: "https://vault.example".into(),
        audience: "p8fs".into(),
        leeway: Duration::from_secs(30),
    };
    let issuer = p8fs_auth::Issuer::new(keys.clone(), config.clone(), clock.clone());
    let verifier = Verifier::new(keys, config, clock, kv);
    let tenant = TenantId::new("bench").unwrap();
    let scopes = ScopeSet::parse(SCOPES).unwrap();
    let issue = |i: usize| {
        issuer
            .issue(
                &tenant,
                &format!("user-{i}"),
                "p8fs-cli",
                &scopes,
                Duration::from_secs(3600),
            )
            .unwrap()
    };

    // A populated revocation list: tokens that were revoked, which the lookups must go past.
    let started = Instant::now();
    runtime.block_on(async {
        for i in 0..revoked_count {
            let token = issue(i);
            verifier
                .revoke(&tenant, &token.token_id, token.expires_at)
                .await
                .unwrap();
        }
    });
    println!(
        "setup: {revoked_count} revocations stored in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let uncached_count = ((50_000.0 * scale) as usize).max(1);
    let cached_count = ((200_000.0 * scale) as usize).max(1);
    let revoked_probe = ((20_000.0 * scale) as usize).max(1);
    let fresh: Vec<String> = (0..uncached_count).map(|i| issue(i).token).collect();
    let revoked: Vec<String> = runtime.block_on(async {
        let mut tokens = Vec::with_capacity(revoked_probe);
        for i in 0..revoked_probe {
            let token = issue(i);
            verifier
                .revoke(&tenant, &token.token_id, token.expires_at)
                .await
                .unwrap();
            tokens.push(token.token);
        }
        tokens
    });
    let warm: Vec<String> = (0..1000).map(|i| issue(i).token).collect();
    let same = issue(0).token;

    runtime.block_on(async {
        // Warm up: RocksDB's block cache and the code paths.
        for token in &warm {
            check(verifier.verify(token).await);
        }

        let timer = Timer::start();
        for _ in 0..cached_count {
            check(verifier.verify(&same).await);
        }
        timer.report("cached (same token)", cached_count);

        let timer = Timer::start();
        for token in &fresh {
            check(verifier.verify(token).await);
        }
        timer.report("uncached (distinct tokens)", fresh.len());

        let timer = Timer::start();
        for token in &revoked {
            let refused = verifier.verify(token).await.is_err();
            assert!(refused, "a revoked token verified");
        }
        timer.report("revoked (distinct tokens)", revoked.len());
    });

    // What the signature check alone costs: Ed25519 over token-sized messages with the public
    // key parsed once, and parsed (decompressed) on every call as the JWT library does.
    let signing = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let public = signing.verifying_key().to_bytes();
    let signed: Vec<(Vec<u8>, ed25519_dalek::Signature)> = fresh
        .iter()
        .map(|token| {
            let message = token.as_bytes()[..token.rfind('.').unwrap()].to_vec();
            let signature = ed25519_dalek::Signer::sign(&signing, &message);
            (message, signature)
        })
        .collect();
    let parsed = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
    let timer = Timer::start();
    for (message, signature) in &signed {
        ed25519_dalek::Verifier::verify(&parsed, message, signature).unwrap();
    }
    timer.report("ed25519 signature only, key parsed once", signed.len());
    let timer = Timer::start();
    for (message, signature) in &signed {
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
        ed25519_dalek::Verifier::verify(&key, message, signature).unwrap();
    }
    timer.report("ed25519 signature only, key parsed per call", signed.len());
}

fn check(result: p8fs_core::Result<Principal>) {
    if let Err(e) = result {
        panic!("a valid token was refused: {e}");
    }
}

/// A wall-clock and CPU-time measurement of one phase.
struct Timer {
    wall: Instant,
    cpu: Option<f64>,
}

impl Timer {
    fn start() -> Timer {
        Timer {
            wall: Instant::now(),
            cpu: cpu_seconds(),
        }
    }

    /// Prints the rate by wall time, and by CPU time of the whole process (all threads, so
    /// RocksDB's own work counts): the per-core figure, whatever else the machine is doing.
    fn report(self, what: &str, count: usize) {
        let elapsed = self.wall.elapsed();
        let per_second = count as f64 / elapsed.as_secs_f64();
        let micros = elapsed.as_secs_f64() * 1e6 / count as f64;
        let cpu = match (self.cpu, cpu_seconds()) {
            (Some(before), Some(after)) if after > before => {
                format!(", {:.0}/s per CPU-second", count as f64 / (after - before))
            }
            _ => String::new(),
        };
        println!(
            "verify {what}: {count} in {elapsed:.2?}: {per_second:.0}/s, {micros:.1} µs each{cpu}"
        );
    }
}

/// CPU time (user + system) of this process so far, from `/proc/self/stat` (Linux only).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name (in parentheses, may contain spaces) start with the
    // state, field 3; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}
