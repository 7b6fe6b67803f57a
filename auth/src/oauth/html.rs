//! HTML for the sign-in, device and consent pages: an escape helper, the shared layout with a
//! small inline style sheet, and the response headers every page carries (no framing, no
//! caching, no referrer, a restrictive content security policy).
//!
//! Invariant: every value that did not come from this file goes through [`esc`] (text and
//! attribute values alike), so no request or stored value can inject markup.

use std::fmt::Write as _;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Escapes text for an HTML text node or a double-quoted attribute value.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "\
:root{color-scheme:light dark;font-family:system-ui,-apple-system,'Segoe UI',sans-serif}\
body{margin:0;background:#f4f5f7;color:#1d2330}\
main{max-width:26rem;margin:8vh auto;padding:2rem;background:#fff;border-radius:12px;\
box-shadow:0 2px 12px rgba(0,0,0,.08)}\
h1{font-size:1.35rem;margin:0 0 1rem}\
p{line-height:1.5}\
label{display:block;font-weight:600;margin:1rem 0 .3rem}\
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.6rem;\
font-size:1rem;border:1px solid #b9bfcb;border-radius:6px}\
#user_code{font-family:ui-monospace,monospace;font-size:1.4rem;letter-spacing:.15em;\
text-transform:uppercase}\
button{font-size:1rem;padding:.6rem 1.2rem;margin:1.2rem .5rem 0 0;border-radius:6px;\
border:1px solid #2357d9;background:#2357d9;color:#fff;cursor:pointer}\
button.secondary{background:transparent;color:#2357d9}\
.error{background:#fdecec;color:#8a1c1c;border-radius:6px;padding:.6rem .8rem}\
.result{background:#e9f6ec;color:#1d5e2c;border-radius:6px;padding:.6rem .8rem}\
.code{font-family:ui-monospace,monospace;font-size:1.3rem;letter-spacing:.1em}\
ul.scopes{padding-left:1.2rem}ul.scopes li{margin:.2rem 0}code{font-family:ui-monospace,monospace}\
.muted{color:#5b6475;font-size:.9rem}\
footer{margin-top:1.5rem}footer button{font-size:.85rem;padding:.3rem .7rem}\
@media (prefers-color-scheme:dark){body{background:#15181e;color:#e4e7ee}\
main{background:#1f242d}input[type=text],input[type=password]{background:#15181e;\
color:#e4e7ee;border-color:#4a5263}.muted{color:#9aa3b5}}";

/// No `form-action`: browsers apply it to the redirect that follows a form submission, and the
/// consent form redirects to the client's registered URI.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// A complete page: `title` (escaped here) and `body` (already safe HTML).
pub(crate) fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let mut html = String::with_capacity(STYLE.len() + body.len() + 512);
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <title>{} · p8fs</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{body}\n\
         </main>\n</body>\n</html>\n",
        esc(title)
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    protect(headers);
    response
}

/// The headers that keep a page out of frames, caches and referrers.
pub(crate) fn protect(headers: &mut axum::http::HeaderMap) {
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// An error paragraph (`id="error"`), escaped.
pub(crate) fn error_box(message: &str) -> String {
    format!(
        "<p class=\"error\" id=\"error\" role=\"alert\">{}</p>",
        esc(message)
    )
}

/// A hidden form field, escaped.
pub(crate) fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        esc(name),
        esc(value)
    )
}

/// A page that only shows an error.
pub(crate) fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    page(
        status,
        title,
        &format!("<h1>{}</h1>\n{}", esc(title), error_box(message)),
    )
}

/// A `303 See Other` to `location`, with the page headers.
pub(crate) fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, value);
    }
    protect(headers);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\" onclick='y'>&</a>"),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(esc("plain text"), "plain text");
    }
}
