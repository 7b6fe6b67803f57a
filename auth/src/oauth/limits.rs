//! The limits of the authorization server, in one place: request sizes and the rate limits on
//! guessing user codes, starting device flows, signing in and registering clients. Rate limits are counted in the
//! key-value store per fixed window (`oauth/limit/...`), so they hold across restarts and
//! across every process sharing the store.

use std::time::Duration;

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
/// Device authorization requests per client per window: each one stores a pending record until
/// it expires, so this bounds what an anonymous caller can make the server keep.
pub const DEVICE_AUTHORIZATIONS_PER_WINDOW: u64 = 1000;

/// The window in which failed sign-ins are counted.
pub const SIGN_IN_WINDOW: Duration = Duration::from_secs(900);
/// Failed sign-ins per username per window before sign-in to it is refused.
pub const SIGN_IN_FAILURES: u64 = 10;

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

/// Where a request came from, as the key of per-address rate limits.
///
/// The address is the peer of the TCP connection, from axum's `ConnectInfo<SocketAddr>` (the
/// server must be served with `into_make_service_with_connect_info::<SocketAddr>()`). It is not
/// read from `Forwarded` or `X-Forwarded-For`, which any caller can forge: behind a reverse
/// proxy every caller shares the proxy's bucket. IPv6 addresses count by their /64 prefix, the
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
        use std::net::{IpAddr, Ipv6Addr, SocketAddr};
        let Some(axum::extract::ConnectInfo(peer)) =
            extensions.get::<axum::extract::ConnectInfo<SocketAddr>>()
        else {
            return Self::Unknown;
        };
        match peer.ip().to_canonical() {
            IpAddr::V4(v4) => Self::Known(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                Self::Known(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
        }
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

    #[test]
    fn a_request_without_connection_information_shares_one_bucket() {
        let address = ClientAddress::of(&Extensions::new());
        assert_eq!(address, ClientAddress::Unknown);
        assert_eq!(address.bucket(), "ip/unknown");
    }
}
