//! The server-rendered pages: sign-in, sign-out, the device page (enter or confirm a user code,
//! approve or deny) and the consent page of the authorization code flow. They work without
//! JavaScript, every form carries the session's CSRF token, and every page is served with
//! `X-Frame-Options: DENY` and `frame-ancestors 'none'` (see `html.rs`).
//!
//! Element ids and field names are a contract with browser tests: sign-in `username`,
//! `password`, hidden `csrf` and `next`, button `signin`; device `user_code`, button `continue`;
//! decisions `decision` = `approve` (`id="approve"`) or `deny` (`id="deny"`); the outcome
//! `id="result"`; any error `id="error"`.
//!
//! Wrong user codes are limited per session (`DEVICE_CODE_SESSION_FAILURES`) and for the whole
//! server (`DEVICE_CODE_GLOBAL_FAILURES`) per `DEVICE_CODE_WINDOW`; failed sign-ins per username
//! (`SIGN_IN_FAILURES` per `SIGN_IN_WINDOW`) and sign-in attempts per source address
//! (`SIGN_IN_ATTEMPTS_PER_ADDRESS`), all in [`super::limits`]. Every one is counted before the
//! code or password is checked, so concurrent guesses get no more than the limit;
//! beyond it the page answers 429 with `Retry-After`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use p8fs_core::{Error, ErrorKind};

use super::OAuthServer;
use super::accounts::{SignIn, UserRecord};
use super::client_metadata::metadata_host;
use super::device::{Decision, PendingDevice, normalize_user_code};
use super::flows::{AuthorizeError, AuthorizeRequest};
use super::html::{error_box, error_page, esc, hidden, page, see_other};
use super::limits::{
    ClientAddress, DEVICE_CODE_GLOBAL_LIMIT, DEVICE_CODE_SESSION_LIMIT, MAX_PARAM_BYTES,
    PASSWORD_POOL_RETRY_AFTER, SIGN_IN_ADDRESS_LIMIT, SIGN_IN_USER_LIMIT, Taken,
};
use super::session::{self, Session, clear_cookie};
use super::wire::{Params, read_body, set_retry_after};
use crate::scope::Scope;

type Server = State<Arc<OAuthServer>>;

/// The page shown when the server itself fails.
fn failure(error: Error) -> Response {
    tracing::error!(error = %error, "oauth: a page failed");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The server could not complete the request. Try again in a moment.",
    )
}

/// Reads a posted form; a page error if it is not one.
async fn posted_form(headers: &HeaderMap, body: Body) -> Result<Params, Response> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(error_page(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported request",
            "This page accepts only form submissions.",
        ));
    }
    let bytes = read_body(body).await.map_err(|_| {
        error_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request too large",
            "The form submission is too large.",
        )
    })?;
    Params::parse(&bytes)
        .map_err(|e| error_page(StatusCode::BAD_REQUEST, "Invalid request", &e.to_string()))
}

fn query_params(query: Option<&str>) -> Result<Params, Error> {
    Params::parse(query.unwrap_or_default().as_bytes())
}

fn invalid_request_page(error: &Error) -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "Invalid request",
        &error.to_string(),
    )
}

/// Whether `next` is a local page of this server a sign-in may continue to.
fn safe_next(next: &str) -> bool {
    let path_ok =
        next == "/device" || next.starts_with("/device?") || next.starts_with("/oauth/authorize?");
    path_ok
        && next.len() <= MAX_PARAM_BYTES
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control() || c.is_whitespace())
}

fn signin_location(next: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("next", next)
        .finish();
    format!("/oauth/signin?{query}")
}

/// The footer of pages seen by a signed-in user: who, and a sign-out button.
fn signed_in_footer(session: &Session) -> String {
    match &session.user {
        Some(user) => format!(
            "<footer class=\"muted\"><form method=\"post\" action=\"/oauth/signout\">\
             Signed in as <strong>{}</strong>. {}\
             <button type=\"submit\" class=\"secondary\" id=\"signout\">Sign out</button>\
             </form></footer>",
            esc(&user.username),
            hidden("csrf", session.csrf()),
        ),
        None => String::new(),
    }
}

// ---------------------------------------------------------------- sign-in and sign-out

fn signin_form(session: &Session, next: &str, username: &str, error: Option<&str>) -> String {
    format!(
        "<h1>Sign in to p8fs</h1>\n{}\
         <form method=\"post\" action=\"/oauth/signin\">\n\
         {}{}\
         <label for=\"username\">Username</label>\n\
         <input type=\"text\" name=\"username\" id=\"username\" value=\"{}\" \
         autocomplete=\"username\" autocapitalize=\"none\" spellcheck=\"false\" required \
         maxlength=\"64\"{}>\n\
         <label for=\"password\">Password</label>\n\
         <input type=\"password\" name=\"password\" id=\"password\" \
         autocomplete=\"current-password\" required maxlength=\"1024\"{}>\n\
         <button type=\"submit\" id=\"signin\">Sign in</button>\n</form>",
        error.map(error_box).unwrap_or_default(),
        hidden("csrf", session.csrf()),
        hidden("next", next),
        esc(username),
        if username.is_empty() {
            " autofocus"
        } else {
            ""
        },
        if username.is_empty() {
            ""
        } else {
            " autofocus"
        },
    )
}

/// `GET /oauth/signin?next=...`.
pub(crate) async fn signin_page(
    State(server): Server,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = match query_params(query.as_deref()) {
        Ok(params) => params,
        Err(error) => return invalid_request_page(&error),
    };
    let next = params
        .get("next")
        .filter(|n| safe_next(n))
        .unwrap_or("/device");
    let session = match session::current_or_new(&server, &headers).await {
        Ok(session) => session,
        Err(e) => return failure(e),
    };
    if session.user.is_some() {
        return session.apply(see_other(next));
    }
    session.apply(page(
        StatusCode::OK,
        "Sign in",
        &signin_form(&session, next, "", None),
    ))
}

/// `POST /oauth/signin`.
pub(crate) async fn signin_submit(
    State(server): Server,
    address: ClientAddress,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let params = match posted_form(&headers, body).await {
        Ok(params) => params,
        Err(response) => return response,
    };
    match signin(&server, address, &headers, &params).await {
        Ok(response) => response,
        Err(e) if e.kind() == ErrorKind::Unavailable => {
            tracing::warn!(error = %e, "oauth: sign-in refused, the server is busy");
            let mut response = error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Server busy",
                "The server is busy. Try again in a moment.",
            );
            set_retry_after(response.headers_mut(), PASSWORD_POOL_RETRY_AFTER);
            response
        }
        Err(e) => failure(e),
    }
}

/// The sign-in form again, 429 with `Retry-After`: a rate limit was reached.
fn signin_limited(
    session: &Session,
    next: &str,
    shown: &str,
    message: &str,
    retry_after: std::time::Duration,
) -> Response {
    let body = signin_form(session, next, shown, Some(message));
    let mut response = page(StatusCode::TOO_MANY_REQUESTS, "Sign in", &body);
    set_retry_after(response.headers_mut(), retry_after);
    response
}

/// Checks a posted sign-in. Before the password is checked (an argon2 hash in the bounded
/// pool), the attempt is counted for the source address (`SIGN_IN_ATTEMPTS_PER_ADDRESS`) and as
/// a failure for the username (`SIGN_IN_FAILURES`), each in one atomic step, so concurrent
/// guesses cannot pass the limits; a right password gives the username's unit back. Over a
/// limit: 429 with `Retry-After`; the pool full: `Unavailable` (503 with `Retry-After`).
async fn signin(
    server: &OAuthServer,
    address: ClientAddress,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Response, Error> {
    let next = params
        .get("next")
        .filter(|n| safe_next(n))
        .unwrap_or("/device")
        .to_owned();
    let typed = params.get("username").unwrap_or_default().trim();
    let username = typed.to_ascii_lowercase();
    let shown = if typed.len() <= 64 { typed } else { "" };
    let Some(session) = session::current_or_anonymous(server, headers).await? else {
        let session = session::start(server, None).await?;
        let body = signin_form(
            &session,
            &next,
            shown,
            Some("Your session expired. Please sign in again."),
        );
        return Ok(session.apply(page(StatusCode::FORBIDDEN, "Sign in", &body)));
    };
    if !session.csrf_matches(params.get("csrf")) {
        let body = signin_form(
            &session,
            &next,
            shown,
            Some("The form expired or was not sent by this site. Please try again."),
        );
        return Ok(page(StatusCode::FORBIDDEN, "Sign in", &body));
    }
    let password = params.get("password").unwrap_or_default();
    if let Taken::Limited(after) = SIGN_IN_ADDRESS_LIMIT
        .take(&server.store, &address.bucket())
        .await?
    {
        return Ok(signin_limited(
            &session,
            &next,
            shown,
            "Too many sign-ins from your network. Wait a few minutes and try again.",
            after,
        ));
    }
    let counted_failure = SIGN_IN_USER_LIMIT
        .take(&server.store, &super::store::digest(&username))
        .await?;
    if let Taken::Limited(after) = counted_failure {
        return Ok(signin_limited(
            &session,
            &next,
            shown,
            "Too many failed sign-ins for this user. Wait a few minutes and try again.",
            after,
        ));
    }
    let outcome = match server.accounts.sign_in(&username, password).await {
        Ok(outcome) => outcome,
        Err(e) => {
            // Not checked (the pool was full or the store failed): not a failure.
            counted_failure.give_back(&server.store).await?;
            return Err(e);
        }
    };
    match outcome {
        SignIn::Ok(user) => {
            counted_failure.give_back(&server.store).await?;
            session::end(server, &session).await?;
            let signed_in = session::start(server, Some(user)).await?;
            Ok(signed_in.apply(see_other(&next)))
        }
        SignIn::Disabled => {
            let body = signin_form(
                &session,
                &next,
                shown,
                Some("This account is disabled. Ask an administrator."),
            );
            Ok(page(StatusCode::FORBIDDEN, "Sign in", &body))
        }
        SignIn::BadCredentials => {
            let body = signin_form(&session, &next, shown, Some("Wrong username or password."));
            Ok(page(StatusCode::UNAUTHORIZED, "Sign in", &body))
        }
    }
}

/// `POST /oauth/signout`.
pub(crate) async fn signout(State(server): Server, headers: HeaderMap, body: Body) -> Response {
    let params = match posted_form(&headers, body).await {
        Ok(params) => params,
        Err(response) => return response,
    };
    let result = async {
        if let Some(session) = session::current(&server, &headers).await? {
            if !session.csrf_matches(params.get("csrf")) {
                return Ok(error_page(
                    StatusCode::FORBIDDEN,
                    "Not signed out",
                    "The form expired or was not sent by this site.",
                ));
            }
            session::end(&server, &session).await?;
        }
        let mut response = page(
            StatusCode::OK,
            "Signed out",
            "<h1>Signed out</h1>\n<p class=\"result\" id=\"result\">You are signed out.</p>\n\
             <p><a href=\"/oauth/signin\">Sign in again</a></p>",
        );
        if let Ok(value) = HeaderValue::from_str(&clear_cookie(&server)) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        Ok::<Response, Error>(response)
    }
    .await;
    result.unwrap_or_else(failure)
}

// ---------------------------------------------------------------- the device page

fn code_form(session: &Session, value: &str, error: Option<&str>) -> String {
    format!(
        "<h1>Connect a device</h1>\n{}\
         <p>Enter the code shown on your device.</p>\n\
         <form method=\"post\" action=\"/device\">\n{}\
         <label for=\"user_code\">Code</label>\n\
         <input type=\"text\" name=\"user_code\" id=\"user_code\" value=\"{}\" \
         placeholder=\"XXXX-XXXX\" autocomplete=\"off\" autocapitalize=\"characters\" \
         spellcheck=\"false\" required maxlength=\"32\" autofocus>\n\
         <button type=\"submit\" id=\"continue\">Continue</button>\n</form>\n{}",
        error.map(error_box).unwrap_or_default(),
        hidden("csrf", session.csrf()),
        esc(value),
        signed_in_footer(session),
    )
}

/// What a scope lets the client do, for people.
fn scope_meaning(scope: Scope) -> &'static str {
    match scope {
        Scope::KvRead => "read your key-value records",
        Scope::KvWrite => "create, change and delete your key-value records",
        Scope::VectorsRead => "read and search your vector collections",
        Scope::VectorsWrite => "create, change and delete your vector collections",
        Scope::GraphRead => "read your graph",
        Scope::GraphWrite => "change your graph",
        Scope::S3Read => "read your buckets and objects over S3",
        Scope::S3Write => "create, change and delete your buckets and objects over S3",
        Scope::MemoriesRead => "search your memories and files by meaning",
        Scope::MemoriesWrite => "store and delete your memories",
        Scope::Admin => "administer the server",
        Scope::DeviceKeys => {
            "register devices that can get access to your data without your password"
        }
    }
}

fn scope_list(scopes: &crate::scope::ScopeSet) -> String {
    let items: String = scopes
        .iter()
        .map(|s| {
            format!(
                "<li><code>{}</code> <span class=\"muted\">— {}</span></li>",
                esc(s.as_str()),
                esc(scope_meaning(s))
            )
        })
        .collect();
    format!("<ul class=\"scopes\" id=\"scopes\">{items}</ul>")
}

fn confirm_device(session: &Session, pending: &PendingDevice) -> String {
    format!(
        "<h1>Approve this device?</h1>\n\
         <p><strong id=\"client_name\">{}</strong> <span class=\"muted\">({})</span> \
         asks to access your p8fs data.</p>\n\
         <p>Code: <span class=\"code\" id=\"confirm_code\">{}</span> \
         <span class=\"muted\">— check that your device shows the same code.</span></p>\n\
         <p>It will be allowed to:</p>\n{}\n\
         <form method=\"post\" action=\"/device\">\n{}{}\
         <button type=\"submit\" name=\"decision\" value=\"approve\" id=\"approve\">Approve</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\" id=\"deny\" class=\"secondary\">Deny</button>\n\
         </form>\n{}",
        esc(&pending.client_name),
        esc(&pending.client_id),
        esc(&pending.user_code),
        scope_list(&pending.scopes),
        hidden("csrf", session.csrf()),
        hidden("user_code", &pending.user_code),
        signed_in_footer(session),
    )
}

enum Lookup {
    Found(PendingDevice),
    Wrong,
    Limited(std::time::Duration),
}

/// A user code entry counted against the session's and the server's wrong-code limits before
/// the code is looked up; given back if the code turns out to be right.
struct CodeEntry {
    session: Taken,
    global: Taken,
}

impl CodeEntry {
    async fn give_back(&self, server: &OAuthServer) -> Result<(), Error> {
        self.session.give_back(&server.store).await?;
        self.global.give_back(&server.store).await
    }
}

/// Counts one user code entry for this session and for the server, in one atomic step each;
/// `Err(retry after)` if either is at its limit (nothing stays counted then).
async fn count_code_entry(
    server: &OAuthServer,
    session: &Session,
) -> Result<Result<CodeEntry, std::time::Duration>, Error> {
    let in_session = DEVICE_CODE_SESSION_LIMIT
        .take(&server.store, session.limit_id())
        .await?;
    if let Taken::Limited(after) = in_session {
        return Ok(Err(after));
    }
    let global = DEVICE_CODE_GLOBAL_LIMIT.take(&server.store, "").await?;
    if let Taken::Limited(after) = global {
        in_session.give_back(&server.store).await?;
        return Ok(Err(after));
    }
    Ok(Ok(CodeEntry {
        session: in_session,
        global,
    }))
}

/// Looks up a typed user code, within the rate limits.
async fn lookup(server: &OAuthServer, session: &Session, typed: &str) -> Result<Lookup, Error> {
    let entry = match count_code_entry(server, session).await? {
        Ok(entry) => entry,
        Err(after) => return Ok(Lookup::Limited(after)),
    };
    let pending = match normalize_user_code(typed) {
        Some(code) => server.pending_device(&code).await,
        None => Ok(None),
    };
    match pending {
        Ok(Some(pending)) => {
            entry.give_back(server).await?;
            Ok(Lookup::Found(pending))
        }
        Ok(None) => Ok(Lookup::Wrong),
        Err(e) => {
            entry.give_back(server).await?;
            Err(e)
        }
    }
}

/// The code form again, 429 with `Retry-After`.
fn too_many_codes(session: &Session, shown: &str, retry_after: std::time::Duration) -> Response {
    let mut response = page(
        StatusCode::TOO_MANY_REQUESTS,
        "Connect a device",
        &code_form(session, shown, Some(TOO_MANY_CODES)),
    );
    set_retry_after(response.headers_mut(), retry_after);
    response
}

const WRONG_CODE: &str =
    "That code is not valid, was already used, or has expired. Check it and try again.";
const TOO_MANY_CODES: &str = "Too many wrong codes. Wait a few minutes and try again.";

async fn show_lookup(
    server: &OAuthServer,
    session: &Session,
    typed: &str,
) -> Result<Response, Error> {
    let shown = if typed.len() <= 32 { typed } else { "" };
    Ok(match lookup(server, session, typed).await? {
        Lookup::Found(pending) => page(
            StatusCode::OK,
            "Approve device",
            &confirm_device(session, &pending),
        ),
        Lookup::Wrong => page(
            StatusCode::BAD_REQUEST,
            "Connect a device",
            &code_form(session, shown, Some(WRONG_CODE)),
        ),
        Lookup::Limited(after) => too_many_codes(session, shown, after),
    })
}

/// `GET /device[?user_code=...]`.
pub(crate) async fn device_page(
    State(server): Server,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = match query_params(query.as_deref()) {
        Ok(params) => params,
        Err(error) => return invalid_request_page(&error),
    };
    let result = async {
        let session = session::current(&server, &headers).await?;
        let Some(session) = session.filter(|s| s.user.is_some()) else {
            let next = match params.get("user_code") {
                Some(code) if code.len() <= 32 => {
                    let query = form_urlencoded::Serializer::new(String::new())
                        .append_pair("user_code", code)
                        .finish();
                    format!("/device?{query}")
                }
                _ => "/device".to_owned(),
            };
            return Ok(see_other(&signin_location(&next)));
        };
        match params.get("user_code") {
            Some(typed) => show_lookup(&server, &session, typed).await,
            None => Ok(page(
                StatusCode::OK,
                "Connect a device",
                &code_form(&session, "", None),
            )),
        }
    }
    .await;
    result.unwrap_or_else(failure)
}

/// `POST /device`: look a code up, or decide on it.
pub(crate) async fn device_submit(
    State(server): Server,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let params = match posted_form(&headers, body).await {
        Ok(params) => params,
        Err(response) => return response,
    };
    let result = async {
        let session = session::current(&server, &headers).await?;
        let Some((session, user)) = session.and_then(|s| s.user.clone().map(|user| (s, user)))
        else {
            return Ok(see_other(&signin_location("/device")));
        };
        if !session.csrf_matches(params.get("csrf")) {
            return Ok(page(
                StatusCode::FORBIDDEN,
                "Connect a device",
                &code_form(
                    &session,
                    "",
                    Some("The form expired or was not sent by this site. Please try again."),
                ),
            ));
        }
        let typed = params.get("user_code").unwrap_or_default();
        match params.get("decision") {
            None => show_lookup(&server, &session, typed).await,
            Some(decision @ ("approve" | "deny")) => {
                decide(&server, &session, &user, typed, decision == "approve").await
            }
            Some(_) => Ok(error_page(
                StatusCode::BAD_REQUEST,
                "Invalid request",
                "The decision must be approve or deny.",
            )),
        }
    }
    .await;
    result.unwrap_or_else(failure)
}

async fn decide(
    server: &OAuthServer,
    session: &Session,
    user: &UserRecord,
    typed: &str,
    approve: bool,
) -> Result<Response, Error> {
    let entry = match count_code_entry(server, session).await? {
        Ok(entry) => entry,
        Err(after) => return Ok(too_many_codes(session, "", after)),
    };
    let decision = match normalize_user_code(typed) {
        Some(code) => server.decide_device(&code, user, approve).await,
        None => Ok(Decision::Gone),
    };
    let decision = match decision {
        Ok(Decision::Gone) => Decision::Gone,
        Ok(decided) => {
            entry.give_back(server).await?;
            decided
        }
        Err(e) => {
            entry.give_back(server).await?;
            return Err(e);
        }
    };
    let (title, message) = match decision {
        Decision::Approved => (
            "Device approved",
            "Device approved. You can return to your device; it will finish signing in.",
        ),
        Decision::Denied => (
            "Request denied",
            "Request denied. The device was not given access.",
        ),
        Decision::Gone => {
            return Ok(page(
                StatusCode::BAD_REQUEST,
                "Connect a device",
                &code_form(session, "", Some(WRONG_CODE)),
            ));
        }
    };
    Ok(page(
        StatusCode::OK,
        title,
        &format!(
            "<h1>{}</h1>\n<p class=\"result\" id=\"result\" role=\"status\">{}</p>\n{}",
            esc(title),
            esc(message),
            signed_in_footer(session)
        ),
    ))
}

// ---------------------------------------------------------------- consent (code flow)

fn consent(session: &Session, request: &AuthorizeRequest, params: &Params) -> String {
    let mut fields = hidden("csrf", session.csrf());
    for name in [
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
        "resource",
    ] {
        if let Some(value) = params.get(name) {
            fields.push_str(&hidden(name, value));
        }
    }
    let destination = url::Url::parse(&request.redirect_uri)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    // A client described by a metadata document is known by its URL's host, not by its name.
    let origin = match metadata_host(&request.client.info.client_id) {
        Some(host) => format!("from <strong id=\"client_host\">{}</strong>", esc(&host)),
        None => esc(&request.client.info.client_id),
    };
    let resource = match &request.resource {
        Some(resource) => format!(
            "<p>Only for <code id=\"resource\">{}</code>.</p>\n",
            esc(resource)
        ),
        None => String::new(),
    };
    format!(
        "<h1>Allow access?</h1>\n\
         <p><strong id=\"client_name\">{}</strong> <span class=\"muted\">({})</span> \
         asks to access your p8fs data.</p>\n\
         <p>It will be allowed to:</p>\n{}\n{}\
         <p class=\"muted\">You will be sent back to <strong>{}</strong>.</p>\n\
         <form method=\"post\" action=\"/oauth/authorize\">\n{}\
         <button type=\"submit\" name=\"decision\" value=\"approve\" id=\"approve\">Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\" id=\"deny\" class=\"secondary\">Deny</button>\n\
         </form>\n{}",
        esc(&request.client.info.name),
        origin,
        scope_list(&request.scopes),
        resource,
        esc(&destination),
        fields,
        signed_in_footer(session),
    )
}

fn authorize_error(error: AuthorizeError) -> Response {
    match error {
        AuthorizeError::Page(message) => error_page(
            StatusCode::BAD_REQUEST,
            "Authorization request rejected",
            &message,
        ),
        AuthorizeError::Redirect(location) => see_other(&location),
    }
}

/// `GET /oauth/authorize?...`.
pub(crate) async fn authorize_page(
    State(server): Server,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = match query_params(query.as_deref()) {
        Ok(params) => params,
        Err(error) => return invalid_request_page(&error),
    };
    let request = match server.check_authorize(&params).await {
        Ok(request) => request,
        Err(error) => return authorize_error(error),
    };
    let result = async {
        let session = session::current(&server, &headers).await?;
        let Some(session) = session.filter(|s| s.user.is_some()) else {
            let next = format!("/oauth/authorize?{}", query.as_deref().unwrap_or_default());
            if !safe_next(&next) {
                return Ok(error_page(
                    StatusCode::BAD_REQUEST,
                    "Authorization request rejected",
                    "The request is too long.",
                ));
            }
            return Ok(see_other(&signin_location(&next)));
        };
        Ok(page(
            StatusCode::OK,
            "Allow access",
            &consent(&session, &request, &params),
        ))
    }
    .await;
    result.unwrap_or_else(failure)
}

/// `POST /oauth/authorize`: the consent decision.
pub(crate) async fn authorize_decision(
    State(server): Server,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let params = match posted_form(&headers, body).await {
        Ok(params) => params,
        Err(response) => return response,
    };
    let result = async {
        let session = session::current(&server, &headers).await?;
        let Some((session, user)) = session.and_then(|s| s.user.clone().map(|user| (s, user)))
        else {
            return Ok(error_page(
                StatusCode::FORBIDDEN,
                "Not signed in",
                "Your session ended. Start again from the application.",
            ));
        };
        if !session.csrf_matches(params.get("csrf")) {
            return Ok(error_page(
                StatusCode::FORBIDDEN,
                "Request not accepted",
                "The form expired or was not sent by this site. Start again from the application.",
            ));
        }
        let request = match server.check_authorize(&params).await {
            Ok(request) => request,
            Err(error) => return Ok(authorize_error(error)),
        };
        match params.get("decision") {
            Some("approve") => {
                let location = server.approve_authorization(&request, &user).await?;
                Ok(see_other(&location))
            }
            Some("deny") => Ok(see_other(&server.deny_authorization(&request))),
            _ => Ok(error_page(
                StatusCode::BAD_REQUEST,
                "Invalid request",
                "The decision must be approve or deny.",
            )),
        }
    }
    .await;
    result.unwrap_or_else(failure)
}
