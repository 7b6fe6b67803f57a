//! GraphiQL for `GET /graphql` from a browser, working with no outside network: the page and
//! every script and stylesheet it loads are served by p8fs itself from files vendored in
//! `protocols/graphql/assets/` (their packages, versions, licenses and digests are in its
//! README) and compiled into the binary with `include_bytes!`.
//!
//! [`page`] is the HTML. Its Content-Security-Policy lets scripts and stylesheets come only from
//! the page's own origin (no inline script: `p8fs-graphiql.js` starts GraphiQL), fetches go only
//! to the origin and to WebSockets, and the page is never cached. [`asset`] serves one vendored
//! file by exact name from a fixed list, so no request can reach the filesystem.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// Where the page loads its assets from; the router serves [`asset`] under it.
pub const ASSET_PREFIX: &str = "/graphql/assets/";

/// The page's Content-Security-Policy. Fonts may be `data:` URLs because GraphiQL's stylesheet
/// inlines its fonts; `'unsafe-inline'` styles because its components set inline styles.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
    connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// One file served under [`ASSET_PREFIX`].
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// Every file [`asset`] serves, in the order the page loads the scripts.
const ASSETS: &[Asset] = &[
    Asset {
        name: "graphiql.min.css",
        content_type: CSS,
        bytes: include_bytes!("../assets/graphiql.min.css"),
    },
    Asset {
        name: "react.production.min.js",
        content_type: JAVASCRIPT,
        bytes: include_bytes!("../assets/react.production.min.js"),
    },
    Asset {
        name: "react-dom.production.min.js",
        content_type: JAVASCRIPT,
        bytes: include_bytes!("../assets/react-dom.production.min.js"),
    },
    Asset {
        name: "graphiql.min.js",
        content_type: JAVASCRIPT,
        bytes: include_bytes!("../assets/graphiql.min.js"),
    },
    Asset {
        name: "p8fs-graphiql.js",
        content_type: JAVASCRIPT,
        bytes: include_bytes!("../assets/p8fs-graphiql.js"),
    },
];

/// The GraphiQL page, talking to the GraphQL endpoint at `endpoint` (a path such as `/graphql`
/// or an absolute URL; subscriptions use the same address over `ws:` or `wss:`).
pub fn page(endpoint: &str) -> Response {
    let html = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>p8fs GraphQL</title>
<link rel="stylesheet" href="{prefix}graphiql.min.css">
<style>html, body {{ height: 100%; margin: 0; overflow: hidden; }} #graphiql {{ height: 100vh; }}</style>
</head>
<body>
<div id="graphiql" data-endpoint="{endpoint}">Loading GraphiQL…</div>
<script src="{prefix}react.production.min.js"></script>
<script src="{prefix}react-dom.production.min.js"></script>
<script src="{prefix}graphiql.min.js"></script>
<script src="{prefix}p8fs-graphiql.js"></script>
</body>
</html>
"#,
        prefix = ASSET_PREFIX,
        endpoint = escape_html(endpoint),
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        html,
    )
        .into_response()
}

/// The vendored file called exactly `name` (the part of the path after [`ASSET_PREFIX`]), or
/// `None` for any other name.
pub fn asset(name: &str) -> Option<Response> {
    let found = ASSETS.iter().find(|asset| asset.name == name)?;
    Some(
        (
            [
                (header::CONTENT_TYPE, found.content_type),
                (header::CACHE_CONTROL, "public, max-age=86400"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            found.bytes,
        )
            .into_response(),
    )
}

/// `text` made safe inside an HTML attribute value or element content.
fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;
    use axum::http::StatusCode;
    use sha2::{Digest, Sha256};

    async fn body(response: Response) -> Vec<u8> {
        to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec()
    }

    fn header_of(response: &Response, name: header::HeaderName) -> &str {
        response.headers()[name].to_str().unwrap()
    }

    async fn html(endpoint: &str) -> String {
        String::from_utf8(body(page(endpoint)).await).unwrap()
    }

    /// The values of every `src="…"` and `href="…"` attribute in `html`.
    fn references(html: &str) -> Vec<&str> {
        let mut found = Vec::new();
        for attribute in ["src=\"", "href=\""] {
            for (at, _) in html.match_indices(attribute) {
                let rest = &html[at + attribute.len()..];
                found.push(&rest[..rest.find('"').unwrap()]);
            }
        }
        found
    }

    #[tokio::test]
    async fn the_page_is_html_with_a_strict_policy_and_never_cached() {
        let response = page("/graphql");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header_of(&response, header::CONTENT_TYPE),
            "text/html; charset=utf-8"
        );
        assert_eq!(header_of(&response, header::CACHE_CONTROL), "no-store");
        let policy = header_of(&response, header::CONTENT_SECURITY_POLICY);
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "connect-src 'self' ws: wss:",
        ] {
            assert!(
                policy.split("; ").any(|d| d == directive),
                "{directive} in {policy}"
            );
        }
        let script = policy
            .split("; ")
            .find(|d| d.starts_with("script-src"))
            .unwrap();
        assert_eq!(script, "script-src 'self'", "no inline or remote script");
        let html = String::from_utf8(body(response).await).unwrap();
        assert!(html.contains(r#"<div id="graphiql" data-endpoint="/graphql">"#));
        assert!(!html.contains("<script>"), "no inline script: {html}");
    }

    #[tokio::test]
    async fn the_page_loads_only_vendored_assets_and_every_one_is_served() {
        let html = html("/graphql").await;
        assert!(!html.contains("http://") && !html.contains("https://"));
        let references = references(&html);
        assert_eq!(references.len(), ASSETS.len(), "{references:?}");
        for reference in references {
            let name = reference
                .strip_prefix(ASSET_PREFIX)
                .unwrap_or_else(|| panic!("{reference} is not under {ASSET_PREFIX}"));
            let response = asset(name).unwrap_or_else(|| panic!("{name} is not served"));
            assert_eq!(response.status(), StatusCode::OK);
            assert!(!body(response).await.is_empty(), "{name} is empty");
        }
        // React before ReactDOM before GraphiQL (a UMD build takes its peers from `window`), and
        // the starter last.
        let order: Vec<usize> = [
            "react.production.min.js",
            "react-dom.production.min.js",
            "graphiql.min.js",
            "p8fs-graphiql.js",
        ]
        .iter()
        .map(|name| html.find(&format!("{ASSET_PREFIX}{name}")).unwrap())
        .collect();
        assert!(order.windows(2).all(|pair| pair[0] < pair[1]), "{order:?}");
    }

    #[tokio::test]
    async fn the_starter_script_names_no_outside_host() {
        let script = String::from_utf8(body(asset("p8fs-graphiql.js").unwrap()).await).unwrap();
        assert!(!script.contains("http://") && !script.contains("https://"));
        assert!(script.contains("createFetcher"));
        assert!(script.contains("subscriptionUrl"));
        assert!(script.contains("shouldPersistHeaders: false"));
        assert!(script.contains(r#"{"Authorization": "Bearer <paste a token from p8fs login>"}"#));
    }

    #[tokio::test]
    async fn assets_have_their_type_and_are_cached_a_day() {
        for (name, content_type) in [
            ("graphiql.min.js", "text/javascript; charset=utf-8"),
            ("graphiql.min.css", "text/css; charset=utf-8"),
            ("react.production.min.js", "text/javascript; charset=utf-8"),
            (
                "react-dom.production.min.js",
                "text/javascript; charset=utf-8",
            ),
            ("p8fs-graphiql.js", "text/javascript; charset=utf-8"),
        ] {
            let response = asset(name).unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(
                header_of(&response, header::CONTENT_TYPE),
                content_type,
                "{name}"
            );
            assert_eq!(
                header_of(&response, header::CACHE_CONTROL),
                "public, max-age=86400"
            );
            assert_eq!(
                header_of(&response, header::X_CONTENT_TYPE_OPTIONS),
                "nosniff"
            );
        }
    }

    #[test]
    fn only_listed_names_are_served() {
        for name in [
            "",
            "README.md",
            "LICENSE.react",
            "graphiql.min.js.map",
            "GRAPHIQL.MIN.JS",
            "graphiql.min.js/",
            "/graphiql.min.js",
            "./graphiql.min.js",
            "../graphiql.min.js",
            "../assets/graphiql.min.js",
            "../src/graphiql.rs",
            "../../Cargo.toml",
            "..%2Fgraphiql.min.js",
            "graphiql.min.js\0",
            "graphiql.min.js?v=1",
        ] {
            assert!(asset(name).is_none(), "{name:?} was served");
        }
    }

    #[tokio::test]
    async fn the_endpoint_is_escaped() {
        let html = html(r#"/graphql"><script>alert('x')</script>&"#).await;
        assert!(html.contains(
            r#"data-endpoint="/graphql&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;""#
        ));
        assert!(!html.contains("<script>alert"));
        assert_eq!(
            escape_html("a&b<c>d\"e'f"),
            "a&amp;b&lt;c&gt;d&quot;e&#39;f"
        );
    }

    /// The README beside the assets gives each vendored file's sha256; it must stay true.
    #[test]
    fn the_readme_names_every_vendored_file_with_its_digest() {
        let readme = include_str!("../assets/README.md");
        for asset in ASSETS {
            let digest: String = Sha256::digest(asset.bytes)
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            let line = readme
                .lines()
                .find(|line| line.contains(&format!("`{}`", asset.name)))
                .unwrap_or_else(|| panic!("{} is not in the README", asset.name));
            if asset.name != "p8fs-graphiql.js" {
                assert!(
                    line.contains(&digest),
                    "{}: {digest} not in {line}",
                    asset.name
                );
            }
        }
    }
}
