//! The rate limits and the password pool under attack: concurrent guesses are counted before
//! they are checked (at most the limit are evaluated), one address cannot lock out another,
//! and a full password pool refuses sign-ins at once.

use std::sync::mpsc;

use p8fs_auth::oauth::{
    DEVICE_AUTHORIZATIONS_PER_ADDRESS, DEVICE_CODE_SESSION_FAILURES, OAuthServer,
    PASSWORD_HASH_QUEUE, SIGN_IN_ATTEMPTS_PER_ADDRESS, SIGN_IN_FAILURES, router,
};
use p8fs_core::ErrorKind;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, RETRY_AFTER};

use crate::harness::{Browser, Harness, PASSWORD, tenant};

const GUESSES: usize = 50;

/// Posts `form` to `path` `GUESSES` times at once with the browser's cookie; the statuses and
/// whether each carried `Retry-After`.
async fn concurrently(
    h: &Harness,
    browser: &Browser,
    path: &str,
    form: &[(&str, &str)],
) -> Vec<(StatusCode, bool)> {
    let cookie = browser.cookie.clone().unwrap();
    let form: Vec<(String, String)> = form
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut tasks = Vec::new();
    for _ in 0..GUESSES {
        let request = h.http.post(h.url(path)).header(COOKIE, &cookie).form(&form);
        tasks.push(tokio::spawn(async move {
            let response = request.send().await.unwrap();
            (
                response.status(),
                response.headers().contains_key(RETRY_AFTER),
            )
        }));
    }
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

fn count(results: &[(StatusCode, bool)], status: StatusCode) -> usize {
    results.iter().filter(|(s, _)| *s == status).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_wrong_passwords_get_at_most_the_limit_checked() {
    let h = Harness::start().await;
    let mut browser = h.browser();
    let csrf = browser.get("/oauth/signin").await.csrf();
    let results = concurrently(
        &h,
        &browser,
        "/oauth/signin",
        &[
            ("username", "alice"),
            ("password", "wrong password!"),
            ("csrf", &csrf),
        ],
    )
    .await;
    let wrong = count(&results, StatusCode::UNAUTHORIZED);
    let limited = count(&results, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        (wrong, limited),
        (
            usize::try_from(SIGN_IN_FAILURES).unwrap(),
            GUESSES - usize::try_from(SIGN_IN_FAILURES).unwrap()
        ),
        "exactly the limit of guesses is checked: {results:?}"
    );
    assert!(
        results
            .iter()
            .all(|(s, retry)| *s != StatusCode::TOO_MANY_REQUESTS || *retry),
        "every 429 says when to retry"
    );
    // The username is locked now, even for the right password.
    let page = browser
        .post(
            "/oauth/signin",
            &[
                ("username", "alice"),
                ("password", PASSWORD),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{}", page.body);
    assert!(page.headers.contains_key(RETRY_AFTER));
    assert!(page.has_id("error"));
}

#[tokio::test]
async fn a_right_password_does_not_count_as_a_failure() {
    let h = Harness::start().await;
    for _ in 0..SIGN_IN_FAILURES + 2 {
        h.signed_in().await;
    }
    let mut browser = h.browser();
    let csrf = browser.get("/oauth/signin").await.csrf();
    for _ in 0..SIGN_IN_FAILURES - 1 {
        let page = browser
            .post(
                "/oauth/signin",
                &[
                    ("username", "alice"),
                    ("password", "nope nope"),
                    ("csrf", &csrf),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    }
    h.signed_in().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_wrong_user_codes_get_at_most_the_limit_checked() {
    let h = Harness::start().await;
    let (_, user_code, _) = h.device_start(None).await;
    let mut browser = h.signed_in().await;
    let csrf = browser.get("/device").await.csrf();
    // A well-formed code nobody was given (the alphabet has no vowels; this one is not issued).
    let wrong_code = if user_code == "BCDF-GHJK" {
        "BCDF-GHJL"
    } else {
        "BCDF-GHJK"
    };
    let results = concurrently(
        &h,
        &browser,
        "/device",
        &[("user_code", wrong_code), ("csrf", &csrf)],
    )
    .await;
    let wrong = count(&results, StatusCode::BAD_REQUEST);
    let limited = count(&results, StatusCode::TOO_MANY_REQUESTS);
    let limit = usize::try_from(DEVICE_CODE_SESSION_FAILURES).unwrap();
    assert_eq!(
        (wrong, limited),
        (limit, GUESSES - limit),
        "exactly the limit of codes is looked up: {results:?}"
    );
    assert!(
        results
            .iter()
            .all(|(s, retry)| *s != StatusCode::TOO_MANY_REQUESTS || *retry),
        "every 429 says when to retry"
    );
    // The session is locked now, even for the right code.
    let page = browser
        .post("/device", &[("user_code", &user_code), ("csrf", &csrf)])
        .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{}", page.body);
    assert!(page.headers.contains_key(RETRY_AFTER));
}

#[tokio::test]
async fn a_right_user_code_does_not_count_as_a_wrong_one() {
    let h = Harness::start().await;
    let (_, user_code, _) = h.device_start(None).await;
    let mut browser = h.signed_in().await;
    let csrf = browser.get("/device").await.csrf();
    for _ in 0..DEVICE_CODE_SESSION_FAILURES + 2 {
        let page = browser
            .post("/device", &[("user_code", &user_code), ("csrf", &csrf)])
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.has_id("approve"));
    }
    browser.approve_device(&user_code).await;
}

#[tokio::test]
async fn one_address_over_its_sign_in_limit_does_not_stop_another() {
    let h = Harness::start().await;
    let mut flooder = h.browser_from(3);
    let csrf = flooder.get("/oauth/signin").await.csrf();
    for i in 0..SIGN_IN_ATTEMPTS_PER_ADDRESS {
        // A different username each time, so only the per-address limit can stop it.
        let username = format!("nobody-{i}");
        let page = flooder
            .post(
                "/oauth/signin",
                &[
                    ("username", &username),
                    ("password", "guess guess"),
                    ("csrf", &csrf),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let page = flooder
        .post(
            "/oauth/signin",
            &[
                ("username", "alice"),
                ("password", PASSWORD),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(
        page.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the address is over its limit, even with the right password: {}",
        page.body
    );
    assert!(page.headers.contains_key(RETRY_AFTER));
    // Another address signs in as usual.
    let mut other = h.browser_from(4);
    let csrf = other.get("/oauth/signin").await.csrf();
    let page = other
        .post(
            "/oauth/signin",
            &[
                ("username", "alice"),
                ("password", PASSWORD),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
}

async fn device_authorization(client: &reqwest::Client, h: &Harness) -> reqwest::Response {
    client
        .post(h.url("/oauth/device_authorization"))
        .form(&[("client_id", "p8fs-cli")])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn one_address_over_its_device_authorization_limit_does_not_stop_another() {
    let h = Harness::start().await;
    let stranger = Harness::client_from(5);
    for i in 0..DEVICE_AUTHORIZATIONS_PER_ADDRESS {
        let response = device_authorization(&stranger, &h).await;
        assert_eq!(response.status(), StatusCode::OK, "request {i}");
    }
    let response = device_authorization(&stranger, &h).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key(RETRY_AFTER));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    // Other users of p8fs-cli, from other addresses, still log in.
    let neighbour = Harness::client_from(6);
    let response = device_authorization(&neighbour, &h).await;
    assert_eq!(response.status(), StatusCode::OK);
    let tokens = h.device_tokens().await;
    assert!(tokens["access_token"].is_string());
}

#[tokio::test]
async fn a_router_driven_without_connection_information_shares_one_bucket() {
    use tower::ServiceExt;
    let h = Harness::start().await;
    let app = router(h.server.clone());
    let request = || {
        axum::http::Request::post("/oauth/device_authorization")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(axum::body::Body::from("client_id=p8fs-cli"))
            .unwrap()
    };
    for _ in 0..DEVICE_AUTHORIZATIONS_PER_ADDRESS {
        let response = app.clone().oneshot(request()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = app.clone().oneshot(request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    // Connections with an address have their own buckets.
    h.device_start(None).await;
}

/// Occupies every worker and every queue place of the server's password pool until the
/// returned senders are dropped.
async fn fill_password_pool(server: &OAuthServer) -> Vec<mpsc::Sender<()>> {
    let pool = server.accounts().password_pool().clone();
    let capacity = pool.workers() + pool.queue();
    let mut releases = Vec::new();
    for _ in 0..capacity {
        let (release, wait) = mpsc::channel::<()>();
        releases.push(release);
        let pool = pool.clone();
        tokio::spawn(async move { pool.run(move || wait.recv().is_err()).await });
    }
    while pool.busy() < capacity {
        tokio::task::yield_now().await;
    }
    releases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_password_pool_refuses_sign_ins_at_once() {
    let h = Harness::start().await;
    let mut browser = h.browser();
    let csrf = browser.get("/oauth/signin").await.csrf();
    let releases = fill_password_pool(&h.server).await;
    let page = browser
        .post(
            "/oauth/signin",
            &[
                ("username", "alice"),
                ("password", PASSWORD),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(
        page.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        page.body
    );
    assert_eq!(page.headers[RETRY_AFTER], "1");
    assert!(page.has_id("error"));
    // Accounts hash in the same pool.
    let error = h
        .server
        .accounts()
        .add_user(&tenant("acme"), "bob", PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    let error = h
        .server
        .accounts()
        .set_password("alice", "a new password")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    drop(releases);
    while h.server.accounts().password_pool().busy() > 0 {
        tokio::task::yield_now().await;
    }
    // Refused attempts were not counted as failures: the user signs in as usual.
    let page = browser
        .post(
            "/oauth/signin",
            &[
                ("username", "alice"),
                ("password", PASSWORD),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
}

#[tokio::test]
async fn the_password_pool_is_one_per_core_by_default() {
    let h = Harness::start().await;
    let pool = h.server.accounts().password_pool();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(pool.workers(), cores);
    assert_eq!(pool.queue(), PASSWORD_HASH_QUEUE);
}
