//! Token buckets per key (a client address, a tenant), in this edge's memory.
//!
//! Each edge counts for itself: with several edges a client gets the rate of each. Buckets
//! live in a bounded map; when it is full, buckets that have refilled (which behave exactly as
//! a new one) are dropped, and if none has, the map starts over (a burst more for everyone, no
//! unbounded memory).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::Rate;

/// Most buckets kept per limiter.
const CAPACITY: usize = 100_000;

/// Token buckets of one rate, one per key.
pub(crate) struct Buckets<K> {
    rate: Rate,
    buckets: Mutex<HashMap<K, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl<K: Hash + Eq> Buckets<K> {
    pub(crate) fn new(rate: Rate) -> Self {
        Self {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token of `key`'s bucket at `now`; when it is empty, how long until it holds one.
    pub(crate) fn take(&self, key: K, now: Instant) -> Result<(), Duration> {
        let burst = f64::from(self.rate.burst);
        let mut buckets = self.buckets.lock();
        if buckets.len() >= CAPACITY && !buckets.contains_key(&key) {
            let rate = self.rate.per_second;
            buckets.retain(|_, b| b.refilled(now, rate) < burst);
            if buckets.len() >= CAPACITY {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let tokens = bucket.refilled(now, self.rate.per_second).min(burst);
        bucket.at = now;
        if tokens >= 1.0 {
            bucket.tokens = tokens - 1.0;
            Ok(())
        } else {
            bucket.tokens = tokens;
            Err(Duration::from_secs_f64(
                (1.0 - tokens) / self.rate.per_second,
            ))
        }
    }
}

impl Bucket {
    fn refilled(&self, now: Instant, per_second: f64) -> f64 {
        self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * per_second
    }
}

/// The key of a client address: an IPv4 address, or the /64 network of an IPv6 one (the block
/// one subscriber usually gets), as the gateway counts its per-address limits.
pub(crate) fn address_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
    }
}

/// `Retry-After` in whole seconds, at least one.
pub(crate) fn retry_after_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let buckets = Buckets::new(Rate {
            per_second: 2.0,
            burst: 3,
        });
        let start = Instant::now();
        for _ in 0..3 {
            buckets.take("t", start).unwrap();
        }
        let wait = buckets.take("t", start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert_eq!(retry_after_seconds(wait), 1);
        // Another key has its own bucket.
        buckets.take("u", start).unwrap();
        // Half a second later one token is back, and only one.
        let later = start + Duration::from_millis(500);
        buckets.take("t", later).unwrap();
        assert!(buckets.take("t", later).is_err());
        // A long pause refills up to the burst, not beyond.
        let much_later = later + Duration::from_secs(60);
        for _ in 0..3 {
            buckets.take("t", much_later).unwrap();
        }
        assert!(buckets.take("t", much_later).is_err());
    }

    #[test]
    fn ipv6_counts_by_its_64_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn retry_after_is_at_least_a_second() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_seconds(Duration::from_millis(2001)), 3);
    }
}
