//! The client address of a request: `X-Forwarded-For` read only from trusted proxies, walked
//! from the right; and the listener putting it where the per-address rate limits look.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue};
use axum::routing::get;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{ProxyPeer, client_of, is_trusted};
use crate::config::{Config, LimitsConfig, Overrides, ProxyNetwork};

/// The trusted networks of most cases: a private network of proxies and the loopback address.
const TRUSTED: &[&str] = &["10.0.0.0/8", "127.0.0.1/32", "::1/128", "fd00::/8"];

fn networks(list: &[&str]) -> Vec<ProxyNetwork> {
    list.iter().map(|n| n.parse().unwrap()).collect()
}

fn headers(lines: &[&str]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in lines {
        headers.append("x-forwarded-for", HeaderValue::from_str(line).unwrap());
    }
    headers
}

/// The client and the proxy of a request from `peer` carrying the `X-Forwarded-For` `lines`,
/// with `trusted` configured: `("client", Some("proxy"))` or `("peer", None)`.
fn resolve_with(
    trusted: &[&str],
    peer: &str,
    headers: &HeaderMap,
) -> (SocketAddr, Option<SocketAddr>) {
    let trusted = networks(trusted);
    let peer: SocketAddr = peer.parse().unwrap();
    let proxies = is_trusted(&trusted, peer.ip()).then_some(trusted.as_slice());
    let (client, proxy) = client_of(peer, proxies, headers);
    (client, proxy.map(|ProxyPeer(proxy)| proxy))
}

fn resolve(peer: &str, lines: &[&str]) -> (String, Option<String>) {
    let (client, proxy) = resolve_with(TRUSTED, peer, &headers(lines));
    (client.to_string(), proxy.map(|p| p.to_string()))
}

fn via(client: &str, proxy: &str) -> (String, Option<String>) {
    (client.to_owned(), Some(proxy.to_owned()))
}

fn direct(peer: &str) -> (String, Option<String>) {
    (peer.to_owned(), None)
}

#[test]
fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
    for lines in [
        &["203.0.113.7"][..],
        &["10.0.0.1"],
        &["203.0.113.7, 10.0.0.1"],
        &["198.51.100.1", "127.0.0.1"],
        &["garbage"],
    ] {
        assert_eq!(
            resolve("192.0.2.50:40000", lines),
            direct("192.0.2.50:40000"),
            "{lines:?}"
        );
    }
    // Nothing configured: nobody is trusted, not even loopback.
    let (client, proxy) = resolve_with(&[], "127.0.0.1:5000", &headers(&["203.0.113.7"]));
    assert_eq!(
        (client.to_string(), proxy),
        ("127.0.0.1:5000".to_owned(), None)
    );
}

#[test]
fn a_trusted_peer_without_the_header_is_the_client() {
    assert_eq!(resolve("10.0.0.2:5000", &[]), direct("10.0.0.2:5000"));
    assert_eq!(resolve("10.0.0.2:5000", &[""]), direct("10.0.0.2:5000"));
    assert_eq!(resolve("10.0.0.2:5000", &[" , ,"]), direct("10.0.0.2:5000"));
}

#[test]
fn the_client_is_the_rightmost_untrusted_address() {
    let proxy = "10.0.0.2:5000";
    assert_eq!(
        resolve(proxy, &["203.0.113.7"]),
        via("203.0.113.7:0", proxy)
    );
    // A client can put anything on the left; the proxy appends what it saw.
    assert_eq!(
        resolve(proxy, &["1.2.3.4, 10.0.0.9, 203.0.113.7"]),
        via("203.0.113.7:0", proxy),
        "spoofed leftmost entries are not read"
    );
    // Trusted hops (another proxy of the chain) are passed.
    assert_eq!(
        resolve(proxy, &["198.51.100.1, 203.0.113.7, 10.0.0.3, 127.0.0.1"]),
        via("203.0.113.7:0", proxy)
    );
    // Spaces and tabs around entries, empty entries.
    assert_eq!(
        resolve(proxy, &[",,  203.0.113.7\t,10.0.0.3  ,, "]),
        via("203.0.113.7:0", proxy)
    );
}

#[test]
fn several_header_lines_are_one_list_in_order() {
    let proxy = "10.0.0.2:5000";
    assert_eq!(
        resolve(proxy, &["198.51.100.1, 203.0.113.7", "10.0.0.3"]),
        via("203.0.113.7:0", proxy)
    );
    assert_eq!(
        resolve(proxy, &["203.0.113.7", "198.51.100.1"]),
        via("198.51.100.1:0", proxy),
        "the last line is the nearest hop"
    );
    assert_eq!(
        resolve(
            proxy,
            &["203.0.113.7", "10.0.0.3", "", "10.0.0.4, 127.0.0.1"]
        ),
        via("203.0.113.7:0", proxy)
    );
}

#[test]
fn ipv6_ports_and_mapped_addresses() {
    assert_eq!(
        resolve("[::1]:5000", &["2001:db8::7"]),
        via("[2001:db8::7]:0", "[::1]:5000")
    );
    assert_eq!(
        resolve("[::1]:5000", &["[2001:db8::7]:4711"]),
        via("[2001:db8::7]:4711", "[::1]:5000")
    );
    assert_eq!(
        resolve("[::1]:5000", &["[2001:db8::7]"]),
        via("[2001:db8::7]:0", "[::1]:5000")
    );
    assert_eq!(
        resolve("10.0.0.2:5000", &["203.0.113.7:4711"]),
        via("203.0.113.7:4711", "10.0.0.2:5000")
    );
    // IPv4-mapped addresses are IPv4, as peer and as entry (a dual-stack listener sees them).
    assert_eq!(
        resolve("[::ffff:10.0.0.2]:5000", &["::ffff:203.0.113.7"]),
        via("203.0.113.7:0", "[::ffff:10.0.0.2]:5000")
    );
    assert_eq!(
        resolve("[fd00::1]:5000", &["2001:db8::7, fd00::2, ::ffff:10.1.1.1"]),
        via("[2001:db8::7]:0", "[fd00::1]:5000")
    );
    // An IPv6 peer outside the trusted networks.
    assert_eq!(
        resolve("[2001:db8::99]:5000", &["203.0.113.7"]),
        direct("[2001:db8::99]:5000")
    );
}

#[test]
fn garbage_ends_the_walk_at_the_last_good_address() {
    let proxy = "10.0.0.2:5000";
    // Nothing good read before the garbage: as without the header.
    for lines in [
        &["unknown"][..],
        &["203.0.113.7, unknown"],
        &["203.0.113.7, _hidden"],
        &["203.0.113.7, proxy.example.com"],
        &["203.0.113.7, 203.0.113.8:port"],
        &["203.0.113.7, fe80::1%eth0"],
        &["203.0.113.7, 1.2.3"],
        &["203.0.113.7", "garbage"],
    ] {
        assert_eq!(resolve(proxy, lines), direct(proxy), "{lines:?}");
    }
    // A trusted hop read before the garbage is the client: nothing further left is believed.
    assert_eq!(
        resolve(proxy, &["203.0.113.7, unknown, 10.0.0.3"]),
        via("10.0.0.3:0", proxy)
    );
    assert_eq!(
        resolve(proxy, &["203.0.113.7, [::1, 10.0.0.3"]),
        via("10.0.0.3:0", proxy)
    );
    // A line that is not visible ASCII ends the walk like a bad entry.
    let mut lines = headers(&["203.0.113.7"]);
    lines.append(
        "x-forwarded-for",
        HeaderValue::from_bytes(b"198.51.100.1\xff").unwrap(),
    );
    lines.append("x-forwarded-for", HeaderValue::from_static("10.0.0.3"));
    let (client, proxy_peer) = resolve_with(TRUSTED, proxy, &lines);
    assert_eq!(client.to_string(), "10.0.0.3:0");
    assert_eq!(proxy_peer.map(|p| p.to_string()).as_deref(), Some(proxy));
    // A good client on the right is found even with garbage further left.
    assert_eq!(
        resolve(proxy, &["unknown, 203.0.113.7"]),
        via("203.0.113.7:0", proxy)
    );
}

#[test]
fn an_all_trusted_chain_names_its_leftmost_hop() {
    let proxy = "10.0.0.2:5000";
    assert_eq!(
        resolve(proxy, &["10.0.0.5, 10.0.0.4", "127.0.0.1"]),
        via("10.0.0.5:0", proxy)
    );
    assert_eq!(resolve(proxy, &["10.0.0.2"]), via("10.0.0.2:0", proxy));
}

/// A listener served by [`super::serve`] with these limits, answering every request with the
/// `ConnectInfo` and `ProxyPeer` it got; its address and a way to stop it.
async fn echo_listener(limits: LimitsConfig) -> (SocketAddr, tokio::sync::watch::Sender<bool>) {
    let app = axum::Router::new().route(
        "/",
        get(|request: axum::extract::Request| async move {
            let client = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(c)| c.to_string());
            let proxy = request
                .extensions()
                .get::<ProxyPeer>()
                .map(|ProxyPeer(p)| p.ip().to_string());
            Json(json!({"client": client, "proxy": proxy}))
        }),
    );
    serve_app(app, limits).await
}

async fn serve_app(
    app: axum::Router,
    limits: LimitsConfig,
) -> (SocketAddr, tokio::sync::watch::Sender<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        super::serve(listener, app, &limits, shutdown).await;
    });
    (address, stop)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap()
}

fn trusting_loopback() -> LimitsConfig {
    LimitsConfig {
        trusted_proxies: networks(&["127.0.0.0/8"]),
        ..LimitsConfig::default()
    }
}

#[tokio::test]
async fn the_listener_hands_the_forwarded_client_to_the_application() {
    let http = http();
    let (trusting, stop_trusting) = echo_listener(trusting_loopback()).await;
    let (plain, stop_plain) = echo_listener(LimitsConfig::default()).await;
    let ask = |address: SocketAddr, forwarded: Option<&'static str>| {
        let mut request = http.get(format!("http://{address}/"));
        if let Some(forwarded) = forwarded {
            request = request.header("x-forwarded-for", forwarded);
        }
        async move {
            let answer = request.send().await.unwrap();
            assert_eq!(answer.status(), StatusCode::OK);
            answer.json::<Value>().await.unwrap()
        }
    };
    let seen = ask(trusting, Some("198.51.100.1, 203.0.113.7")).await;
    assert_eq!(seen["client"], "203.0.113.7:0", "{seen}");
    assert_eq!(seen["proxy"], "127.0.0.1", "{seen}");
    let seen = ask(trusting, None).await;
    assert!(
        seen["client"]
            .as_str()
            .is_some_and(|c| c.starts_with("127.0.0.1:")),
        "{seen}"
    );
    assert_eq!(seen["proxy"], Value::Null, "{seen}");
    // Without trusted proxies the header is ignored.
    let seen = ask(plain, Some("203.0.113.7")).await;
    assert!(
        seen["client"]
            .as_str()
            .is_some_and(|c| c.starts_with("127.0.0.1:")),
        "{seen}"
    );
    assert_eq!(seen["proxy"], Value::Null, "{seen}");
    drop(http);
    let _ = stop_trusting.send(true);
    let _ = stop_plain.send(true);
}

/// The whole application over a fresh RocksDB store: two listeners over the same services, one
/// trusting loopback as a proxy and one not. Through the trusting one, two clients named by
/// `X-Forwarded-For` have their own device-authorization buckets; through the other, every
/// caller shares the loopback address's bucket, whatever it forwards.
#[tokio::test]
async fn forwarded_clients_get_their_own_rate_limit_buckets() {
    use p8fs_auth::oauth::{BUILTIN_CLI_CLIENT, DEVICE_AUTHORIZATIONS_PER_ADDRESS};

    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let env = [
        ("P8FS_DATA_DIR", data_dir.to_str().unwrap()),
        ("P8FS_LISTEN", "127.0.0.1:0"),
        ("P8FS_S3_ENABLED", "false"),
        ("P8FS_EMBEDDINGS_PROVIDER", "none"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let config = Config::load(None, env, &Overrides::default()).unwrap();
    let clock: Arc<dyn p8fs_core::Clock> = Arc::new(p8fs_core::SystemClock);
    let services = crate::server::services(&config, clock).await.unwrap();
    let app = crate::server::app(&services, &config);
    let (trusting, stop_trusting) = serve_app(app.clone(), trusting_loopback()).await;
    let (plain, stop_plain) = serve_app(app, LimitsConfig::default()).await;

    let http = http();
    let start = |address: SocketAddr, forwarded: &'static str| {
        let request = http
            .post(format!("http://{address}/oauth/device_authorization"))
            .header("x-forwarded-for", forwarded)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("client_id={BUILTIN_CLI_CLIENT}"));
        async move {
            let answer = request.send().await.unwrap();
            let status = answer.status();
            (status, answer.text().await.unwrap())
        }
    };
    let first = "203.0.113.7";
    let second = "198.51.100.1, 203.0.113.8";
    for n in 0..DEVICE_AUTHORIZATIONS_PER_ADDRESS {
        let (status, body) = start(trusting, first).await;
        assert_eq!(status, StatusCode::OK, "attempt {n}: {body}");
    }
    let (status, body) = start(trusting, first).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    // Another client behind the same proxy has its own bucket.
    let (status, body) = start(trusting, second).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Through the listener that trusts no proxy, the header changes nothing: one bucket for
    // the loopback address, whoever is named.
    for n in 0..DEVICE_AUTHORIZATIONS_PER_ADDRESS {
        let forwarded = if n % 2 == 0 { first } else { second };
        let (status, body) = start(plain, forwarded).await;
        assert_eq!(status, StatusCode::OK, "attempt {n}: {body}");
    }
    for forwarded in [first, second, "192.0.2.1"] {
        let (status, body) = start(plain, forwarded).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{forwarded}: {body}");
    }
    // A request the proxy makes itself (here an empty header, read as none) counts against the
    // proxy's own address: the loopback bucket just used up.
    let (status, body) = start(trusting, "").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    drop(http);
    let _ = stop_trusting.send(true);
    let _ = stop_plain.send(true);
}
