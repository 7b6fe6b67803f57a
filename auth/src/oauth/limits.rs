//! The limits of the authorization server, in one place: request sizes and the rate limits on
//! guessing user codes, starting device flows, signing in and registering clients. Rate limits are counted in the
//! key-value store per fixed window (`oauth/limit/...`), so they hold across restarts and
//! across every process sharing the store.
//!
//! A rate-limited event is counted before the work it limits is done ([`RateLimit::take`]:
//! read the counter, refuse if it is at the limit, else compare-and-swap it one higher, retrying
//! on conflict), so among N concurrent attempts at most the limit are let through, never N.
//! Attempts that turn out to be legitimate (a right password, an existing user code) give their
//! unit back ([`Taken::give_back`]).

use std::time::Duration;

use p8fs_core::{Error, Key, Result};

use super::store::Store;
use crate::keys::duration_millis;

/// Largest form or JSON body accepted by the OAuth endpoints and pages.
pub const MAX_FORM_BYTES: usize = 16 * 1024;
/// Longest value of one form or query parameter (a JWT assertion is the longest).
pub const MAX_PARAM_BYTES: usize = 8 * 1024;
/// Most parameters in one form or query.
pub(crate) const MAX_PARAMS: usize = 32;
/// Longest `state` parameter echoed back to a client.
pub(crate) const MAX_STATE_BYTES: usize = 1024;

/// The window in which wrong user codes are counted.
pub const DEVICE_CODE_WINDOW: Duration = Duration::from_secs(600);
/// Wrong user codes one browser session may enter per window before it is refused.
pub const DEVICE_CODE_SESSION_FAILURES: u64 = 5;
/// Wrong user codes all sessions together may enter per window before every entry is refused.
pub const DEVICE_CODE_GLOBAL_FAILURES: u64 = 500;

/// The window in which device authorization requests are counted.
pub const DEVICE_AUTHORIZATION_WINDOW: Duration = Duration::from_secs(600);
/// Device authorization requests per client and source address per window. Keyed by both, so
/// a caller that exhausts it blocks only itself, never the other users of a public client such
/// as `p8fs-cli`.
pub const DEVICE_AUTHORIZATIONS_PER_ADDRESS: u64 = 20;
/// Device authorization requests per window for the whole server, every client and address
/// together. Each one stores a pending record until it expires, so this ceiling bounds what
/// anonymous callers can make the server keep; it is far above what people approving devices
/// need, and only protects storage.
pub const DEVICE_AUTHORIZATIONS_PER_WINDOW: u64 = 10_000;

/// The window in which sign-ins are counted.
pub const SIGN_IN_WINDOW: Duration = Duration::from_secs(900);
/// Failed sign-ins per username per window before sign-in to it is refused. Each attempt is
/// counted before its password is checked, and given back if the password was right.
pub const SIGN_IN_FAILURES: u64 = 10;
/// Sign-in attempts (right or wrong) per source address per window. Every attempt costs an
/// argon2 hash, so this bounds the work one address can ask for whatever usernames it tries.
pub const SIGN_IN_ATTEMPTS_PER_ADDRESS: u64 = 100;

/// Argon2 hashes that may wait for a worker of the password pool (which runs one hash per core
/// at once); beyond them a sign-in is answered 503 at once.
pub const PASSWORD_HASH_QUEUE: usize = 32;
/// The `Retry-After` of a sign-in refused because the password pool is full.
pub const PASSWORD_POOL_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The window in which dynamic client registrations are counted.
pub const REGISTRATION_WINDOW: Duration = Duration::from_secs(600);
/// Dynamic client registrations per window, server-wide.
pub const REGISTRATIONS_PER_WINDOW: u64 = 100;
/// Dynamic client registrations per window from one client address (see [`ClientAddress`]).
pub const REGISTRATIONS_PER_ADDRESS: u64 = 10;
/// How long a dynamically registered client that never obtained a token is kept.
pub const DYNAMIC_CLIENT_UNUSED_TTL: Duration = Duration::from_secs(24 * 3600);

/// Most device keys one user may register.
pub(crate) const MAX_DEVICE_KEYS_PER_USER: usize = 32;
/// Most live access tokens a refresh family remembers for revocation; older ones are revoked
/// when they are forgotten.
pub(crate) const MAX_FAMILY_ACCESS_TOKENS: usize = 32;
/// Most live access tokens remembered per device key (JWT-bearer grant); older ones are revoked
/// when they are forgotten.
pub(crate) const MAX_DEVICE_KEY_ACCESS_TOKENS: usize = 32;

/// Most compare-and-swap rounds one count may take before it gives up with `Unavailable`.
/// Every round some contender wins, so this is only reached under more than this many
/// concurrent attempts on one counter.
const COUNTER_ROUNDS: usize = 256;

/// A rate limit: at most `max` events per bucket per fixed `window`, counted under
/// `oauth/limit/<name>/<bucket>/<window index>` (`oauth/limit/<name>/<window index>` for a
/// limit with one bucket).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RateLimit {
    pub(crate) name: &'static str,
    pub(crate) max: u64,
    pub(crate) window: Duration,
}

/// Failed sign-ins per username.
pub(crate) const SIGN_IN_USER_LIMIT: RateLimit = RateLimit {
    name: "signin",
    max: SIGN_IN_FAILURES,
    window: SIGN_IN_WINDOW,
};
/// Sign-in attempts per source address.
pub(crate) const SIGN_IN_ADDRESS_LIMIT: RateLimit = RateLimit {
    name: "signin-address",
    max: SIGN_IN_ATTEMPTS_PER_ADDRESS,
    window: SIGN_IN_WINDOW,
};
/// Wrong user codes per browser session.
pub(crate) const DEVICE_CODE_SESSION_LIMIT: RateLimit = RateLimit {
    name: "device-session",
    max: DEVICE_CODE_SESSION_FAILURES,
    window: DEVICE_CODE_WINDOW,
};
/// Wrong user codes for the whole server.
pub(crate) const DEVICE_CODE_GLOBAL_LIMIT: RateLimit = RateLimit {
    name: "device-global",
    max: DEVICE_CODE_GLOBAL_FAILURES,
    window: DEVICE_CODE_WINDOW,
};
/// Device authorizations per client and source address.
pub(crate) const DEVICE_AUTHORIZATION_ADDRESS_LIMIT: RateLimit = RateLimit {
    name: "device-authorization-address",
    max: DEVICE_AUTHORIZATIONS_PER_ADDRESS,
    window: DEVICE_AUTHORIZATION_WINDOW,
};
/// Device authorizations for the whole server.
pub(crate) const DEVICE_AUTHORIZATION_GLOBAL_LIMIT: RateLimit = RateLimit {
    name: "device-authorization-global",
    max: DEVICE_AUTHORIZATIONS_PER_WINDOW,
    window: DEVICE_AUTHORIZATION_WINDOW,
};

/// The outcome of [`RateLimit::take`].
#[must_use]
pub(crate) enum Taken {
    /// Counted: the attempt may go ahead. Holds the counter it was counted in (and the ttl
    /// counters are written with), to give it back.
    Allowed { key: Key, ttl: Duration },
    /// The bucket is at its limit; nothing was counted. Retry after this long (the rest of
    /// the window).
    Limited(Duration),
}

impl RateLimit {
    fn key(&self, store: &Store, bucket: &str) -> Result<Key> {
        let length = duration_millis(self.window).max(1);
        let index = store.now().div_euclid(length);
        let name = if bucket.is_empty() {
            format!("{}/{index}", self.name)
        } else {
            format!("{}/{bucket}/{index}", self.name)
        };
        Store::key("limit", &name)
    }

    /// The time left in the current window.
    fn rest_of_window(&self, store: &Store) -> Duration {
        let length = duration_millis(self.window).max(1);
        let left = length - store.now().rem_euclid(length);
        Duration::from_millis(u64::try_from(left).unwrap_or(1).max(1))
    }

    /// Counts one attempt in `bucket` unless the bucket is at its limit, in one atomic step
    /// (compare-and-swap on the counter, retried on conflict). `Unavailable` if the counter is
    /// too contended to update.
    pub(crate) async fn take(&self, store: &Store, bucket: &str) -> Result<Taken> {
        let key = self.key(store, bucket)?;
        // A counter outlives its window, so it is still there to be given back to.
        let ttl = self.window * 2;
        for _ in 0..COUNTER_ROUNDS {
            let counted = match store.get::<u64>(&key).await? {
                None => store.create(&key, &1u64, Some(ttl)).await?,
                Some(current) if current.value >= self.max => {
                    return Ok(Taken::Limited(self.rest_of_window(store)));
                }
                Some(current) => {
                    store
                        .swap(&key, current.version, &(current.value + 1), Some(ttl))
                        .await?
                }
            };
            if counted {
                return Ok(Taken::Allowed { key, ttl });
            }
            tokio::task::yield_now().await;
        }
        Err(Error::unavailable(
            "a rate-limit counter is too contended; retry in a moment",
            None,
        ))
    }
}

impl Taken {
    /// Gives the counted unit back to the counter it was taken from (a no-op for `Limited`).
    /// Best effort: a counter that is too contended keeps the unit.
    pub(crate) async fn give_back(&self, store: &Store) -> Result<()> {
        let Taken::Allowed { key, ttl } = self else {
            return Ok(());
        };
        for _ in 0..COUNTER_ROUNDS {
            let Some(current) = store.get::<u64>(key).await? else {
                return Ok(());
            };
            if current.value == 0 {
                return Ok(());
            }
            if store
                .swap(key, current.version, &(current.value - 1), Some(*ttl))
                .await?
            {
                return Ok(());
            }
            tokio::task::yield_now().await;
        }
        Ok(())
    }
}

/// The address a client counts as in every per-address limit (rate limits here, connection
/// limits in the gateway): an IPv4 address, also when IPv4-mapped, or the network address of an
/// IPv6 /64, the block one subscriber usually gets, so a client cannot escape a limit by
/// rotating addresses inside it.
pub fn client_network(address: std::net::IpAddr) -> std::net::IpAddr {
    use std::net::{IpAddr, Ipv6Addr};
    match address.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

/// Where a request came from, as the key of per-address rate limits.
///
/// The address is axum's `ConnectInfo<SocketAddr>` (the server must be served with
/// `into_make_service_with_connect_info::<SocketAddr>()` or insert it itself): the peer of the
/// TCP connection. This crate never reads `Forwarded` or `X-Forwarded-For`, which any caller
/// can forge; the gateway's listener puts the client named by `X-Forwarded-For` in
/// `ConnectInfo` only when the peer is one of its configured trusted proxies, and otherwise
/// every caller behind a reverse proxy shares the proxy's bucket. IPv6 addresses count by their /64 prefix, the
/// block one subscriber usually gets, so a caller cannot escape the limit by rotating addresses
/// inside it; IPv4-mapped IPv6 addresses count as the IPv4 address. A request without
/// `ConnectInfo` (a router driven in-process) falls into one shared bucket,
/// [`ClientAddress::Unknown`], and never panics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ClientAddress {
    /// An IPv4 address, or the network address of an IPv6 /64.
    Known(std::net::IpAddr),
    /// No connection information: every such request shares this one bucket.
    Unknown,
}

impl ClientAddress {
    /// The address of the peer that sent the request with these extensions.
    pub(crate) fn of(extensions: &axum::http::Extensions) -> Self {
        use std::net::SocketAddr;
        let Some(axum::extract::ConnectInfo(peer)) =
            extensions.get::<axum::extract::ConnectInfo<SocketAddr>>()
        else {
            return Self::Unknown;
        };
        Self::Known(client_network(peer.ip()))
    }

    /// The bucket's name in rate-limit keys: `ip/<address>` (`ip/<prefix>::` for IPv6) or
    /// `ip/unknown`.
    pub(crate) fn bucket(&self) -> String {
        match self {
            Self::Known(ip) => format!("ip/{ip}"),
            Self::Unknown => "ip/unknown".to_owned(),
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self::of(&parts.extensions))
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, SocketAddr};

    use axum::extract::ConnectInfo;
    use axum::http::Extensions;

    use super::ClientAddress;

    fn from(peer: &str) -> ClientAddress {
        let mut extensions = Extensions::new();
        extensions.insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        ClientAddress::of(&extensions)
    }

    #[test]
    fn addresses_bucket_by_ipv4_address_and_ipv6_prefix() {
        assert_eq!(from("192.0.2.7:443").bucket(), "ip/192.0.2.7");
        assert_eq!(from("[::ffff:192.0.2.7]:443").bucket(), "ip/192.0.2.7");
        assert_eq!(
            from("[2001:db8:1:2:aaaa:bbbb:cccc:dddd]:1").bucket(),
            "ip/2001:db8:1:2::"
        );
        assert_eq!(
            from("[2001:db8:1:2::1]:1"),
            from("[2001:db8:1:2:ffff::9]:2"),
            "one /64 is one bucket"
        );
        assert_ne!(from("[2001:db8:1:2::1]:1"), from("[2001:db8:1:3::1]:1"));
        assert_eq!(
            from("10.0.0.1:1"),
            ClientAddress::Known(IpAddr::from([10, 0, 0, 1]))
        );
    }

    #[tokio::test]
    async fn a_limit_counts_up_to_its_maximum_per_bucket_and_window() {
        use std::sync::Arc;
        use std::time::Duration;

        use p8fs_core::{Clock, ManualClock};

        use super::{RateLimit, Taken};
        use crate::oauth::store::Store;

        let clock = Arc::new(ManualClock::new(1_000_000));
        let kv = Arc::new(p8fs_conformance::ModelBackend::new(clock.clone()));
        let store = Store::new(kv, clock.clone() as Arc<dyn Clock>);
        let limit = RateLimit {
            name: "test",
            max: 3,
            window: Duration::from_secs(60),
        };
        let mut taken = Vec::new();
        for _ in 0..3 {
            let t = limit.take(&store, "").await.unwrap();
            assert!(matches!(t, Taken::Allowed { .. }));
            taken.push(t);
        }
        let Taken::Limited(after) = limit.take(&store, "").await.unwrap() else {
            panic!("the fourth is over the limit");
        };
        assert_eq!(after, Duration::from_secs(20), "the rest of the window");
        assert!(matches!(
            limit.take(&store, "other").await.unwrap(),
            Taken::Allowed { .. }
        ));
        // A unit given back can be taken again, once.
        taken[0].give_back(&store).await.unwrap();
        assert!(matches!(
            limit.take(&store, "").await.unwrap(),
            Taken::Allowed { .. }
        ));
        assert!(matches!(
            limit.take(&store, "").await.unwrap(),
            Taken::Limited(_)
        ));
        // The next window starts afresh.
        clock.advance(20_000);
        assert!(matches!(
            limit.take(&store, "").await.unwrap(),
            Taken::Allowed { .. }
        ));
    }

    #[test]
    fn a_request_without_connection_information_shares_one_bucket() {
        let address = ClientAddress::of(&Extensions::new());
        assert_eq!(address, ClientAddress::Unknown);
        assert_eq!(address.bucket(), "ip/unknown");
    }
}
