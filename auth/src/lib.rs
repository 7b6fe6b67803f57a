//! p8fs-auth: access tokens for every p8fs front-end. It owns the Ed25519 signing keys and
//! their JWKS ([`KeyRing`]), issuing RFC 9068 JWT access tokens ([`Issuer`]), their strict
//! verification and revocation ([`Verifier`]), and the scopes that gate operations ([`Scope`],
//! [`ScopeSet`], [`Principal::require`]). [`oauth`] is the OAuth 2.1 authorization server built
//! on them: users and clients, the grants, the device flow, the sign-in and consent pages.
//! [`s3`] holds the S3 credentials: static access keys per tenant and temporary credentials
//! minted from an access token (STS `AssumeRoleWithWebIdentity`).
//!
//! Invariants:
//! - it depends on `p8fs-core` only, never on a backend: revocations and all OAuth state live in
//!   any [`p8fs_core::KvStore`], under the reserved tenant [`RESERVED_TENANT`];
//! - time comes only from the injected [`p8fs_core::Clock`], never from the system clock (the
//!   JWT library's own time checks are switched off);
//! - verification accepts `EdDSA` only and reports every rejection as `Unauthorized`;
//! - tokens and private keys never appear in `Debug` output, logs or error messages.

pub mod keys;
pub mod oauth;
pub mod principal;
pub mod s3;
pub mod scope;
pub mod token;
pub mod verify;

pub use keys::{KEY_FILE_NAME, KeyRing};
pub use principal::{Principal, bearer_token};
pub use s3::{
    AccessKeyInfo, NewAccessKey, S3Credential, S3Credentials, SealingKey, TemporaryCredentials,
};
pub use scope::{Scope, ScopeSet};
pub use token::{IssuedToken, Issuer, MAX_TOKEN_TTL, TOKEN_TYPE, TokenConfig};
pub use verify::{MAX_LEEWAY, MAX_TOKEN_BYTES, REVOCATION_PREFIX, Verifier};

use p8fs_core::error::Source;
use p8fs_core::{Error, Result};

/// The tenant that holds p8fs's own records (token revocations, and later other auth state).
/// No token is issued for it and no token naming it verifies, so no front-end request can read
/// or write it; whatever provisions tenants must refuse this name.
pub const RESERVED_TENANT: &str = "p8fs-system";

/// Whether `tenant` is one of p8fs's own: [`RESERVED_TENANT`], or the encryption layer's keyring
/// ([`p8fs_core::sealed::KEYRING_TENANT`]). No user, access key or token may name one.
pub fn is_reserved(tenant: &str) -> bool {
    tenant == RESERVED_TENANT || tenant == p8fs_core::sealed::KEYRING_TENANT
}

/// The refusal of a reserved tenant, naming the field.
pub(crate) fn reserved_refusal(tenant: &str) -> Error {
    Error::invalid("tenant", format!("{tenant} is reserved for p8fs itself"))
}

/// `N` bytes from the operating system's random number generator.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).map_err(|e| {
        Error::internal(
            "the operating system's random number generator failed",
            Some(Box::new(e) as Source),
        )
    })?;
    Ok(bytes)
}
