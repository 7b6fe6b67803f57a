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

/// Most device keys one user may register.
pub(crate) const MAX_DEVICE_KEYS_PER_USER: usize = 32;
/// Most access tokens a refresh family remembers for revocation.
pub(crate) const MAX_FAMILY_ACCESS_TOKENS: usize = 32;
