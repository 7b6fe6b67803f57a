//! `[edge]`: where `p8fs edge` listens, the gateway nodes it balances, how it checks them, and
//! its token checks and rate limits. Plain serde with a default for every key, so an empty
//! section is a valid (if useless) configuration; [`EdgeConfig::validate`] names the key at
//! fault.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use p8fs_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// The edge's configuration (`[edge]` in the configuration file).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeConfig {
    /// Where the edge listens in cleartext for what the gateways' main listener serves (REST,
    /// GraphQL with its WebSockets, MCP, gRPC): HTTP/1.1, and HTTP/2 with prior knowledge
    /// (h2c, as gRPC clients speak it).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The gateway nodes' main listeners (`p8fs serve --listen`), as `ip:port`.
    #[serde(default)]
    pub upstreams: Vec<SocketAddr>,
    /// Where the edge also listens with TLS (HTTP/2 and HTTP/1.1 by ALPN) for the same nodes;
    /// needs `tls_cert` and `tls_key`.
    #[serde(default)]
    pub tls_listen: Option<SocketAddr>,
    /// The certificate chain of the TLS listener (PEM).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// The private key of the TLS listener (PEM).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Where the edge listens for S3 (cleartext HTTP/1.1); needs `s3_upstreams`.
    #[serde(default)]
    pub s3_listen: Option<SocketAddr>,
    /// The gateway nodes' S3 listeners (`s3.listen`), as `ip:port`. Requests pass with their
    /// `Host` header and body untouched, so SigV4 signatures still verify on the node.
    #[serde(default)]
    pub s3_upstreams: Vec<SocketAddr>,
    /// How a node is chosen: `round_robin` or `least_connections`.
    #[serde(default)]
    pub balance: Balance,
    /// Send each tenant's requests (known from its verified token) to the same node while that
    /// node is up (rendezvous hashing; `balance` chooses for requests without a token).
    #[serde(default)]
    pub hash_by_tenant: bool,
    /// How often each node's `/readyz` (S3 nodes: a TCP connect) is checked.
    #[serde(default = "default_health_interval", with = "humantime_serde")]
    pub health_interval: Duration,
    /// How long a node that refused a connection or broke one is left out (passive ejection),
    /// whatever its health checks say meanwhile.
    #[serde(default = "default_eject_for", with = "humantime_serde")]
    pub eject_for: Duration,
    /// Longest wait for a connection to a node.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How many other nodes a request is tried on when it could not be sent to its node (a
    /// failed connect; an idempotent request also when a reused connection broke before any
    /// answer).
    #[serde(default = "default_retries")]
    pub retries: usize,
    /// Whether bearer tokens are checked against the nodes' JWKS before a request is passed on.
    #[serde(default = "default_true")]
    pub verify_tokens: bool,
    /// Clock skew allowed on `exp` and `nbf`; the nodes' `auth.leeway` (default 30s).
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// How often the JWKS is fetched again from the nodes.
    #[serde(default = "default_jwks_refresh", with = "humantime_serde")]
    pub jwks_refresh: Duration,
    /// Least time between two fetches caused by a token naming an unknown `kid`.
    #[serde(default = "default_jwks_min_interval", with = "humantime_serde")]
    pub jwks_min_interval: Duration,
    /// Requests per second and burst allowed from one client address (an IPv6 /64 counts as
    /// one address); none when absent.
    #[serde(default)]
    pub rate_per_address: Option<Rate>,
    /// Requests per second and burst allowed for one tenant (from its verified token); none
    /// when absent.
    #[serde(default)]
    pub rate_per_tenant: Option<Rate>,
    /// Worker threads of each listener (default: the number of cores).
    #[serde(default)]
    pub threads: Option<usize>,
}

/// A token bucket: `per_second` requests on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: f64,
    /// The bucket's size.
    pub burst: u32,
}

/// How a node is chosen among the healthy ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Each in turn.
    #[default]
    RoundRobin,
    /// The one with the fewest requests in flight through this edge.
    LeastConnections,
}

impl std::str::FromStr for Balance {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "round_robin" => Ok(Self::RoundRobin),
            "least_connections" => Ok(Self::LeastConnections),
            other => Err(format!(
                "unknown balance {other:?}; known: round_robin, least_connections"
            )),
        }
    }
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            upstreams: Vec::new(),
            tls_listen: None,
            tls_cert: None,
            tls_key: None,
            s3_listen: None,
            s3_upstreams: Vec::new(),
            balance: Balance::default(),
            hash_by_tenant: false,
            health_interval: default_health_interval(),
            eject_for: default_eject_for(),
            connect_timeout: default_connect_timeout(),
            retries: default_retries(),
            verify_tokens: true,
            leeway: default_leeway(),
            jwks_refresh: default_jwks_refresh(),
            jwks_min_interval: default_jwks_min_interval(),
            rate_per_address: None,
            rate_per_tenant: None,
            threads: None,
        }
    }
}

impl EdgeConfig {
    /// Checks what serde cannot: `InvalidInput` naming the `edge.` key at fault.
    pub fn validate(&self) -> Result<()> {
        if self.upstreams.is_empty() {
            return Err(Error::invalid(
                "edge.upstreams",
                "name at least one gateway node (--upstream ADDR)",
            ));
        }
        if self.s3_listen.is_some() == self.s3_upstreams.is_empty() {
            return Err(Error::invalid(
                "edge.s3_upstreams",
                "s3_listen and s3_upstreams go together",
            ));
        }
        if self.tls_listen.is_some() && (self.tls_cert.is_none() || self.tls_key.is_none()) {
            return Err(Error::invalid(
                "edge.tls_cert",
                "tls_listen needs tls_cert and tls_key",
            ));
        }
        for (field, duration) in [
            ("edge.health_interval", self.health_interval),
            ("edge.connect_timeout", self.connect_timeout),
            ("edge.jwks_refresh", self.jwks_refresh),
        ] {
            if duration.is_zero() {
                return Err(Error::invalid(field, "must be more than zero"));
            }
        }
        if self.leeway > p8fs_auth::MAX_LEEWAY {
            return Err(Error::invalid(
                "edge.leeway",
                format!("at most {:?}", p8fs_auth::MAX_LEEWAY),
            ));
        }
        for (field, rate) in [
            ("edge.rate_per_address", self.rate_per_address),
            ("edge.rate_per_tenant", self.rate_per_tenant),
        ] {
            if let Some(rate) = rate
                && (!(rate.per_second.is_finite() && rate.per_second > 0.0) || rate.burst == 0)
            {
                return Err(Error::invalid(
                    field,
                    "per_second must be a positive number and burst at least 1",
                ));
            }
        }
        if self.threads == Some(0) {
            return Err(Error::invalid("edge.threads", "must be at least 1"));
        }
        Ok(())
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8000))
}
fn default_health_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_eject_for() -> Duration {
    Duration::from_secs(10)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_retries() -> usize {
    2
}
fn default_true() -> bool {
    true
}
fn default_leeway() -> Duration {
    Duration::from_secs(30)
}
fn default_jwks_refresh() -> Duration {
    Duration::from_secs(300)
}
fn default_jwks_min_interval() -> Duration {
    Duration::from_secs(5)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_upstream() -> EdgeConfig {
        EdgeConfig {
            upstreams: vec!["127.0.0.1:8080".parse().unwrap()],
            ..EdgeConfig::default()
        }
    }

    #[test]
    fn an_upstream_is_required() {
        let error = EdgeConfig::default().validate().unwrap_err();
        assert!(error.to_string().contains("edge.upstreams"), "{error}");
        with_upstream().validate().unwrap();
    }

    #[test]
    fn s3_listen_needs_s3_upstreams() {
        let config = EdgeConfig {
            s3_listen: Some("127.0.0.1:9000".parse().unwrap()),
            ..with_upstream()
        };
        let error = config.validate().unwrap_err();
        assert!(error.to_string().contains("edge.s3_upstreams"), "{error}");
    }

    #[test]
    fn rates_must_be_positive() {
        let config = EdgeConfig {
            rate_per_tenant: Some(Rate {
                per_second: 0.0,
                burst: 5,
            }),
            ..with_upstream()
        };
        let error = config.validate().unwrap_err();
        assert!(
            error.to_string().contains("edge.rate_per_tenant"),
            "{error}"
        );
    }

    #[test]
    fn parses_from_toml() {
        let config: EdgeConfig = toml::from_str(
            "upstreams = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\nbalance = \"least_connections\"\n\
             eject_for = \"3s\"\nrate_per_address = { per_second = 5.0, burst = 10 }\n",
        )
        .unwrap();
        assert_eq!(config.upstreams.len(), 2);
        assert_eq!(config.balance, Balance::LeastConnections);
        assert_eq!(config.eject_for, Duration::from_secs(3));
        assert_eq!(
            config.rate_per_address,
            Some(Rate {
                per_second: 5.0,
                burst: 10
            })
        );
        assert!(toml::from_str::<EdgeConfig>("upstream = []").is_err());
    }
}
