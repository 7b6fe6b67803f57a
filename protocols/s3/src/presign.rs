//! Presigned download URLs for callers of other front-ends (GraphQL's `downloadUrl`): a
//! SigV4 query-signed `GET` of one object on the S3 listener's public URL, which anyone holding
//! the URL can fetch until it expires, with no token.
//!
//! The signature is made with temporary credentials minted for the caller's principal
//! ([`S3Credentials::mint`]) carrying `s3:read` only, so a URL:
//! - reads one object of the caller's tenant and nothing else (the signature covers the method
//!   and the path);
//! - expires at the earlier of the expiry asked for and the caller's token's expiry;
//! - stops working as soon as that token is revoked (the credentials resolve only while it is
//!   not).
//!
//! One set of credentials is minted per token and reused while it lasts long enough (a listing
//! of a thousand objects writes one credential record, not a thousand); the cache is bounded.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use p8fs_auth::s3::{MAX_SESSION_DURATION, S3Credentials, TemporaryCredentials};
use p8fs_auth::{Principal, Scope, ScopeSet};
use p8fs_core::{BucketName, Clock, Error, ObjectKey, Result, Timestamp};
use parking_lot::Mutex;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// The longest a presigned URL may last, as S3's (7 days); the caller's token usually ends it
/// sooner.
pub const MAX_PRESIGNED_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);
/// The region in the signature's scope (p8fs has one; S3 clients default to it).
pub const SIGNING_REGION: &str = "us-east-1";
/// Tokens whose credentials are kept at most; past it, expired entries are dropped, then all.
const MAX_CACHED: usize = 4096;

/// What SigV4 leaves unencoded in a path: the unreserved characters and the `/` between key
/// segments (S3's canonical URI, so the URL and its canonical form are the same text).
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');
/// What a query value leaves unencoded: the unreserved characters only.
const QUERY: &AsciiSet = &PATH.add(b'/');

/// A presigned URL and when it stops working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedUrl {
    pub url: String,
    /// Milliseconds since the Unix epoch.
    pub expires_at: Timestamp,
}

/// Signs download URLs on one S3 endpoint. Cheap to share (`Arc`).
pub struct Presigner {
    credentials: S3Credentials,
    /// The S3 listener as clients reach it: scheme, host and port, no trailing `/`.
    endpoint: String,
    clock: Arc<dyn Clock>,
    /// Credentials minted per token id.
    minted: Mutex<HashMap<String, Arc<TemporaryCredentials>>>,
}

impl Presigner {
    /// A presigner for the S3 listener at `endpoint` (e.g. `https://s3.example.com`), minting
    /// credentials with `credentials` and reading time from `clock`.
    pub fn new(credentials: S3Credentials, endpoint: &str, clock: Arc<dyn Clock>) -> Self {
        Self {
            credentials,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            clock,
            minted: Mutex::new(HashMap::new()),
        }
    }

    /// A URL that downloads `bucket`/`key` of `principal`'s tenant with a plain `GET` for
    /// `expires_in` (cut short by the token's expiry). Errors: `Forbidden` without `s3:read`;
    /// `InvalidInput` naming `expiresIn` outside 1 s ..= [`MAX_PRESIGNED_EXPIRY`];
    /// `Unauthorized` for an expired principal; the store's failures as they are. Whether
    /// the object exists is not checked: the URL answers 404 if it does not.
    pub async fn download_url(
        &self,
        principal: &Principal,
        bucket: &BucketName,
        key: &ObjectKey,
        expires_in: Duration,
    ) -> Result<PresignedUrl> {
        principal.require(Scope::S3Read)?;
        if expires_in < Duration::from_secs(1) || expires_in > MAX_PRESIGNED_EXPIRY {
            return Err(Error::invalid(
                "expiresIn",
                format!(
                    "must be between 1 and {} seconds",
                    MAX_PRESIGNED_EXPIRY.as_secs()
                ),
            ));
        }
        let now = self.clock.now();
        let wanted = now
            .saturating_add(millis(expires_in))
            .min(principal.expires_at);
        let credentials = self.credentials_until(principal, wanted).await?;
        let expires_at = wanted.min(credentials.expiration);
        let lifetime = Duration::from_millis(expires_at.saturating_sub(now).max(0).unsigned_abs());
        // SigV4 counts in whole seconds; a URL with less than one left would be dead on arrival.
        let lifetime = Duration::from_secs(lifetime.as_secs());
        if lifetime.is_zero() {
            return Err(Error::Unauthorized("token expired".into()));
        }
        let url = format!(
            "{}/{}/{}",
            self.endpoint,
            bucket.as_str(),
            utf8_percent_encode(key.as_str(), PATH)
        );
        let signed = self.sign(&url, &credentials, now, lifetime)?;
        Ok(PresignedUrl {
            url: signed,
            expires_at: now.saturating_add(millis(lifetime)),
        })
    }

    /// Credentials of `principal`'s token valid until `until`: the cached ones when they last
    /// that long, else new ones (as long as the token allows, at most
    /// [`MAX_SESSION_DURATION`]).
    async fn credentials_until(
        &self,
        principal: &Principal,
        until: Timestamp,
    ) -> Result<Arc<TemporaryCredentials>> {
        if let Some(cached) = self.minted.lock().get(&principal.token_id)
            && cached.expiration >= until
            && cached.tenant == principal.tenant
        {
            return Ok(cached.clone());
        }
        let read: ScopeSet = [Scope::S3Read].into_iter().collect();
        let minted = Arc::new(
            self.credentials
                .mint(principal, read, MAX_SESSION_DURATION)
                .await?,
        );
        let now = self.clock.now();
        let mut cache = self.minted.lock();
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, credentials| credentials.expiration > now);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(principal.token_id.clone(), minted.clone());
        Ok(minted)
    }

    /// `url` with the SigV4 query parameters of a `GET` signed at `now`, valid for
    /// `lifetime`.
    fn sign(
        &self,
        url: &str,
        credentials: &TemporaryCredentials,
        now: Timestamp,
        lifetime: Duration,
    ) -> Result<String> {
        let signing_error = |e: &dyn std::fmt::Display| {
            Error::internal(format!("cannot presign a download URL: {e}"), None)
        };
        let identity = Credentials::new(
            credentials.access_key_id.clone(),
            credentials.secret_access_key.to_string(),
            Some(credentials.session_token.to_string()),
            Some(system_time(credentials.expiration)),
            "p8fs-presigner",
        )
        .into();
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(lifetime);
        // S3's rules: the path is signed as sent (already encoded once), never normalized.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(SIGNING_REGION)
            .name("s3")
            .time(system_time(now))
            .settings(settings)
            .build()
            .map_err(|e| signing_error(&e))?
            .into();
        let request = SignableRequest::new(
            "GET",
            url,
            std::iter::empty(),
            SignableBody::UnsignedPayload,
        )
        .map_err(|e| signing_error(&e))?;
        let (instructions, _signature) = sign(request, &params)
            .map_err(|e| signing_error(&e))?
            .into_parts();
        let mut signed = url.to_owned();
        for (index, (name, value)) in instructions.params().iter().enumerate() {
            signed.push(if index == 0 { '?' } else { '&' });
            signed.push_str(name);
            signed.push('=');
            signed.extend(utf8_percent_encode(value, QUERY));
        }
        Ok(signed)
    }
}

fn millis(duration: Duration) -> Timestamp {
    Timestamp::try_from(duration.as_millis()).unwrap_or(Timestamp::MAX)
}

fn system_time(at: Timestamp) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(at.max(0).unsigned_abs())
}
