//! The gateway nodes behind one listener: their health (pingora's load balancer runs the
//! active checks), passive ejection, requests in flight, and the choice of a node.
//!
//! A node is a candidate when its last health check passed and it is not ejected. Ejection is
//! passive: a node that refused a connection or broke one is left out for `eject_for`, so
//! requests stop going to a dead node at once rather than at its next failed check. When no
//! node is a candidate, every node not yet tried for the request is (a check may be stale;
//! trying beats answering 503 at once).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use p8fs_core::{Error, Result};
use parking_lot::Mutex;
use pingora::http::RequestHeader;
use pingora::lb::health_check::{HttpHealthCheck, TcpHealthCheck};
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, LoadBalancer};

use crate::config::Balance;

/// How a node's health is checked.
pub(crate) enum Check {
    /// `GET <path>` answers 200 (the main listener's `/readyz`, which probes the backend).
    Http(&'static str),
    /// A TCP connection opens (the S3 listener, which has no readiness route).
    Tcp,
}

/// One gateway node.
struct Node {
    address: SocketAddr,
    backend: Backend,
    in_flight: AtomicUsize,
    ejected_until: Mutex<Option<Instant>>,
}

/// The nodes behind one listener.
pub(crate) struct Pool {
    nodes: Vec<Node>,
    health: Arc<LoadBalancer<RoundRobin>>,
    balance: Balance,
    hash_by_tenant: bool,
    eject_for: Duration,
    turn: AtomicUsize,
}

/// A request in flight on a node: counted from the choice until the request ends.
pub(crate) struct InFlight {
    pool: Arc<Pool>,
    index: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(node) = self.pool.nodes.get(self.index) {
            node.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl InFlight {
    /// The node's index in its pool.
    pub(crate) fn index(&self) -> usize {
        self.index
    }
}

/// The load balancer that runs the health checks of `addresses` every `interval` (run it as a
/// background service).
pub(crate) fn health_checker(
    addresses: &[SocketAddr],
    check: Check,
    interval: Duration,
) -> Result<LoadBalancer<RoundRobin>> {
    let mut balancer = LoadBalancer::<RoundRobin>::try_from_iter(addresses.iter().copied())
        .map_err(|e| Error::invalid("edge.upstreams", e.to_string()))?;
    match check {
        Check::Http(path) => {
            let mut check = HttpHealthCheck::new("localhost", false);
            let mut request = RequestHeader::build("GET", path.as_bytes(), None)
                .map_err(|e| Error::internal(format!("health check request: {e}"), None))?;
            request
                .insert_header("Host", "localhost")
                .map_err(|e| Error::internal(format!("health check request: {e}"), None))?;
            check.req = request;
            check.peer_template.options.connection_timeout = Some(interval.min(SECOND));
            check.peer_template.options.read_timeout = Some(interval.max(SECOND) * 2);
            balancer.set_health_check(Box::new(check));
        }
        Check::Tcp => {
            let mut check = TcpHealthCheck::new();
            check.peer_template.options.connection_timeout = Some(interval.min(SECOND));
            balancer.set_health_check(check);
        }
    }
    balancer.health_check_frequency = Some(interval);
    balancer.parallel_health_check = true;
    Ok(balancer)
}

const SECOND: Duration = Duration::from_secs(1);

impl Pool {
    /// The nodes at `addresses`, whose health `health` checks.
    pub(crate) fn new(
        addresses: &[SocketAddr],
        health: Arc<LoadBalancer<RoundRobin>>,
        balance: Balance,
        hash_by_tenant: bool,
        eject_for: Duration,
    ) -> Result<Self> {
        let nodes = addresses
            .iter()
            .map(|address| {
                Ok(Node {
                    address: *address,
                    backend: Backend::new(&address.to_string())
                        .map_err(|e| Error::invalid("edge.upstreams", e.to_string()))?,
                    in_flight: AtomicUsize::new(0),
                    ejected_until: Mutex::new(None),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            nodes,
            health,
            balance,
            hash_by_tenant,
            eject_for,
            turn: AtomicUsize::new(0),
        })
    }

    /// The address of node `index`.
    pub(crate) fn address(&self, index: usize) -> Option<SocketAddr> {
        self.nodes.get(index).map(|node| node.address)
    }

    /// Chooses a node for a request of `tenant` (when known) among those not in `tried`, and
    /// counts the request in flight on it. `None` when every node was tried.
    pub(crate) fn choose(
        self: &Arc<Self>,
        tenant: Option<&str>,
        tried: &[usize],
        now: Instant,
    ) -> Option<InFlight> {
        let untried = || (0..self.nodes.len()).filter(|i| !tried.contains(i));
        let mut candidates: Vec<usize> = untried().filter(|&i| self.usable(i, now)).collect();
        if candidates.is_empty() {
            candidates = untried().collect();
        }
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let index = match tenant {
            Some(tenant) if self.hash_by_tenant => rendezvous(tenant, &candidates, |i| {
                self.nodes.get(i).map(|node| node.address)
            }),
            _ => match self.balance {
                Balance::RoundRobin => pick_in_turn(&candidates, turn),
                Balance::LeastConnections => {
                    // Ties go in turn, so idle nodes share the load.
                    let n = candidates.len();
                    (0..n)
                        .filter_map(|k| candidates.get((turn + k) % n).copied())
                        .min_by_key(|&i| {
                            self.nodes
                                .get(i)
                                .map_or(usize::MAX, |node| node.in_flight.load(Ordering::Relaxed))
                        })
                }
            },
        }?;
        let node = self.nodes.get(index)?;
        node.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(InFlight {
            pool: self.clone(),
            index,
        })
    }

    /// Leaves node `index` out for `eject_for` from `now`.
    pub(crate) fn eject(&self, index: usize, now: Instant) {
        if let Some(node) = self.nodes.get(index) {
            let mut until = node.ejected_until.lock();
            let was_in = until.is_none_or(|t| t <= now);
            *until = Some(now + self.eject_for);
            if was_in {
                tracing::warn!(node = %node.address, eject_for = ?self.eject_for, "gateway node ejected");
            }
        }
    }

    fn usable(&self, index: usize, now: Instant) -> bool {
        let Some(node) = self.nodes.get(index) else {
            return false;
        };
        let ejected = node.ejected_until.lock().is_some_and(|until| until > now);
        !ejected && self.health.backends().ready(&node.backend)
    }
}

fn pick_in_turn(candidates: &[usize], turn: usize) -> Option<usize> {
    if candidates.is_empty() {
        return None;
    }
    candidates.get(turn % candidates.len()).copied()
}

/// Rendezvous (highest random weight) hashing: the candidate whose address scores highest with
/// `key`. A node leaving moves only its own keys, and every edge picks alike.
fn rendezvous(
    key: &str,
    candidates: &[usize],
    address: impl Fn(usize) -> Option<SocketAddr>,
) -> Option<usize> {
    candidates
        .iter()
        .copied()
        .filter_map(|i| address(i).map(|a| (i, score(key, &a))))
        .max_by_key(|&(i, score)| (score, std::cmp::Reverse(i)))
        .map(|(i, _)| i)
}

/// FNV-1a (64 bits) of the key, a zero byte and the address, then a final mix (splitmix64's)
/// so that nearby addresses do not score alike.
fn score(key: &str, address: &SocketAddr) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let address = address.to_string();
    for byte in key
        .as_bytes()
        .iter()
        .chain(std::iter::once(&0u8))
        .chain(address.as_bytes())
    {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(balance: Balance, hash_by_tenant: bool) -> Arc<Pool> {
        let addresses: Vec<SocketAddr> = (1..=3)
            .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
            .collect();
        let health = health_checker(&addresses, Check::Tcp, SECOND).unwrap();
        Arc::new(
            Pool::new(
                &addresses,
                Arc::new(health),
                balance,
                hash_by_tenant,
                Duration::from_secs(10),
            )
            .unwrap(),
        )
    }

    #[test]
    fn round_robin_takes_each_in_turn_and_skips_the_ejected() {
        let pool = pool(Balance::RoundRobin, false);
        let now = Instant::now();
        let chosen: Vec<usize> = (0..6)
            .map(|_| pool.choose(None, &[], now).unwrap().index())
            .collect();
        assert_eq!(chosen, [0, 1, 2, 0, 1, 2]);
        pool.eject(1, now);
        let chosen: Vec<usize> = (0..4)
            .map(|_| pool.choose(None, &[], now).unwrap().index())
            .collect();
        assert!(!chosen.contains(&1), "{chosen:?}");
        // The ejection ends.
        let later = now + Duration::from_secs(11);
        let chosen: Vec<usize> = (0..3)
            .map(|_| pool.choose(None, &[], later).unwrap().index())
            .collect();
        assert!(chosen.contains(&1), "{chosen:?}");
    }

    #[test]
    fn a_retry_goes_elsewhere_and_ends() {
        let pool = pool(Balance::RoundRobin, false);
        let now = Instant::now();
        let first = pool.choose(None, &[], now).unwrap().index();
        let second = pool.choose(None, &[first], now).unwrap().index();
        assert_ne!(first, second);
        assert!(pool.choose(None, &[0, 1, 2], now).is_none());
        // With every node ejected, the untried ones are still tried.
        for i in 0..3 {
            pool.eject(i, now);
        }
        assert!(pool.choose(None, &[0], now).is_some());
    }

    #[test]
    fn least_connections_prefers_the_idle() {
        let pool = pool(Balance::LeastConnections, false);
        let now = Instant::now();
        let held: Vec<InFlight> = (0..2)
            .map(|_| pool.choose(None, &[], now).unwrap())
            .collect();
        let busy: Vec<usize> = held.iter().map(InFlight::index).collect();
        let third = pool.choose(None, &[], now).unwrap();
        assert!(!busy.contains(&third.index()), "{busy:?} {}", third.index());
        drop(held);
        drop(third);
        assert!(
            pool.nodes
                .iter()
                .all(|n| n.in_flight.load(Ordering::Relaxed) == 0)
        );
    }

    #[test]
    fn a_tenant_sticks_to_its_node_until_it_leaves() {
        let pool = pool(Balance::RoundRobin, true);
        let now = Instant::now();
        let mut moved = 0;
        for n in 0..60 {
            let tenant = format!("tenant-{n}");
            let home = pool.choose(Some(&tenant), &[], now).unwrap().index();
            assert_eq!(pool.choose(Some(&tenant), &[], now).unwrap().index(), home);
            let without_0 = pool.choose(Some(&tenant), &[0], now).unwrap().index();
            if home != 0 {
                assert_eq!(without_0, home, "only node 0's tenants move");
            } else {
                moved += 1;
            }
        }
        // Every node is home to some tenants.
        assert!((5..=40).contains(&moved), "{moved} of 60 on node 0");
    }
}
