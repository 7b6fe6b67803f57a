//! Who is calling and may they: SigV4 secrets come from [`S3Credentials`], every operation
//! then runs as the principal of the access key, with `s3:read` for reads and listings and
//! `s3:write` for writes ([`Principal::require`]). Requests signed with temporary credentials
//! must carry their session token. Also the bucket-name rules s3s applies while routing (core's,
//! so that routing and storage agree) and virtual-host-style addressing under one domain.

use std::sync::Arc;

use p8fs_auth::s3::S3Credentials;
use p8fs_auth::{Principal, Scope};
use p8fs_core::BucketName;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::host::{S3Host, VirtualHost};
use s3s::validation::NameValidation;
use s3s::{S3Error, S3ErrorCode, S3Result};

use crate::error::s3_error;

/// The secret behind an access key, for s3s's signature check.
pub(crate) struct KeyAuth {
    pub(crate) credentials: Arc<S3Credentials>,
}

#[async_trait::async_trait]
impl S3Auth for KeyAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.credentials.resolve(access_key).await {
            Ok(Some(credential)) => Ok(SecretKey::from(credential.secret.as_str())),
            Ok(None) => Err(S3Error::with_message(
                S3ErrorCode::InvalidAccessKeyId,
                "the access key id you provided does not exist in our records",
            )),
            Err(error) => Err(s3_error(error)),
        }
    }
}

/// Operations that only read: they need `s3:read`. Copies need both scopes; everything else
/// needs `s3:write`.
const READ_OPERATIONS: &[&str] = &[
    "GetObject",
    "HeadObject",
    "HeadBucket",
    "ListBuckets",
    "ListObjects",
    "ListObjectsV2",
    "GetBucketLocation",
    "ListParts",
    "ListMultipartUploads",
];

/// Turns the verified access key into the request's [`Principal`] (in the request extensions,
/// where every operation takes its tenant from), after checking the session token and scope.
pub(crate) struct ScopeAccess {
    pub(crate) credentials: Arc<S3Credentials>,
}

#[async_trait::async_trait]
impl S3Access for ScopeAccess {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let Some(access_key) = cx.credentials().map(|c| c.access_key.clone()) else {
            return Err(S3Error::with_message(
                S3ErrorCode::AccessDenied,
                "anonymous requests are not allowed; sign the request",
            ));
        };
        let credential = self
            .credentials
            .resolve(&access_key)
            .await
            .map_err(s3_error)?
            .ok_or_else(|| {
                S3Error::with_message(
                    S3ErrorCode::InvalidAccessKeyId,
                    "the access key id you provided does not exist in our records",
                )
            })?;
        let presented = session_token(cx);
        if credential.session_token.is_some() && presented.is_none() {
            return Err(S3Error::with_message(
                S3ErrorCode::AccessDenied,
                "temporary credentials need their x-amz-security-token",
            ));
        }
        if !credential.session_token_matches(presented.as_deref()) {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidToken,
                "the provided token is malformed or otherwise invalid",
            ));
        }
        let principal = credential.principal.clone();
        let operation = cx.s3_op().name();
        let scopes: &[Scope] = match operation {
            "CopyObject" | "UploadPartCopy" => &[Scope::S3Read, Scope::S3Write],
            read if READ_OPERATIONS.contains(&read) => &[Scope::S3Read],
            _ => &[Scope::S3Write],
        };
        for scope in scopes {
            principal.require(*scope).map_err(s3_error)?;
        }
        cx.extensions_mut().insert(principal);
        Ok(())
    }
}

/// The session token of the request: the `x-amz-security-token` header, or the query
/// parameter of a presigned URL.
fn session_token(cx: &S3AccessContext<'_>) -> Option<String> {
    if let Some(value) = cx.headers().get("x-amz-security-token") {
        return Some(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let query = cx.uri().query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "X-Amz-Security-Token")
        .map(|(_, value)| value.into_owned())
}

/// The principal [`ScopeAccess`] put in the request.
pub(crate) fn principal(extensions: &http::Extensions) -> S3Result<&Principal> {
    extensions.get::<Principal>().ok_or_else(|| {
        S3Error::with_message(
            S3ErrorCode::AccessDenied,
            "the request is not authenticated",
        )
    })
}

/// Bucket names as core validates them, so that s3s routes exactly the names storage accepts.
pub(crate) struct CoreNames;

impl NameValidation for CoreNames {
    fn validate_bucket_name(&self, name: &str) -> bool {
        BucketName::new(name).is_ok()
    }
}

/// Virtual-host-style addressing under one domain: `bucket.<domain>[:port]` names a bucket;
/// any other host (the domain itself, an address, `localhost`) is path-style.
pub(crate) struct DomainHost {
    pub(crate) domain: String,
}

impl S3Host for DomainHost {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        };
        let bucket = name
            .strip_suffix(self.domain.as_str())
            .and_then(|rest| rest.strip_suffix('.'))
            .filter(|bucket| !bucket.is_empty());
        Ok(match bucket {
            Some(bucket) => VirtualHost::new(self.domain.as_str()).with_bucket(bucket),
            None => VirtualHost::new(host),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_subdomains_of_the_domain_name_buckets() {
        let host = DomainHost {
            domain: "s3.example.com".into(),
        };
        let parse = |h: &'static str| {
            host.parse_host_header(h)
                .unwrap()
                .bucket()
                .map(str::to_owned)
        };
        assert_eq!(parse("photos.s3.example.com"), Some("photos".into()));
        assert_eq!(parse("photos.s3.example.com:9000"), Some("photos".into()));
        assert_eq!(parse("s3.example.com:9000"), None);
        assert_eq!(parse("localhost:9000"), None);
        assert_eq!(parse("evil-s3.example.com"), None);
    }
}
