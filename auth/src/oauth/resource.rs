//! Resource indicators (RFC 8707): a client names the resource server it wants a token for with
//! the `resource` parameter, and the token's `aud` is that resource's URI.
//!
//! Invariants:
//! - the resources are configuration ([`super::OAuthConfig::resources`]), compared byte for
//!   byte; anything else — not an absolute URI, a fragment, or simply not configured — is
//!   `invalid_target`;
//! - one `resource` per request: the parameter parser refuses repeated parameters
//!   (`invalid_request` naming it), so a token always has exactly one audience;
//! - a grant remembers its resource (authorization code, device code, refresh family); the
//!   token endpoint may repeat it or leave it out, and asking for another one than granted is
//!   `invalid_target` (an empty grant resource means the default audience, so asking for a
//!   resource then is refused too);
//! - without `resource`, tokens carry the default audience ([`crate::TokenConfig::audience`]) as
//!   before.

use super::OAuthServer;
use super::limits::MAX_PARAM_BYTES;
use super::wire::OAuthError;

/// Whether `value` is an absolute URI without a fragment (RFC 8707 2).
fn is_resource_uri(value: &str) -> bool {
    !value.contains('#')
        && value.len() <= MAX_PARAM_BYTES
        && value.bytes().all(|b| b.is_ascii_graphic())
        && url::Url::parse(value).is_ok()
}

impl OAuthServer {
    /// The resource a request names: `None` without the parameter, the resource if it is a
    /// configured one, else `invalid_target`.
    pub(crate) fn requested_resource(
        &self,
        value: Option<&str>,
    ) -> Result<Option<String>, OAuthError> {
        let Some(value) = value else {
            return Ok(None);
        };
        if !is_resource_uri(value) {
            return Err(OAuthError::invalid_target(
                "resource must be an absolute URI without a fragment",
            ));
        }
        if !self.config.resources.iter().any(|r| r == value) {
            return Err(OAuthError::invalid_target(
                "resource is not a resource this server issues tokens for",
            ));
        }
        Ok(Some(value.to_owned()))
    }

    /// Checks the `resource` of a token request against the grant's: it may be left out, or
    /// repeat the granted one.
    pub(crate) fn check_granted_resource(
        &self,
        granted: Option<&str>,
        value: Option<&str>,
    ) -> Result<(), OAuthError> {
        match self.requested_resource(value)? {
            Some(requested) if Some(requested.as_str()) != granted => Err(
                OAuthError::invalid_target("resource differs from the resource of the grant"),
            ),
            _ => Ok(()),
        }
    }

    /// The `aud` of a token for `resource` (the default audience without one).
    pub(crate) fn audience_of<'a>(&'a self, resource: Option<&'a str>) -> &'a str {
        resource.unwrap_or(&self.issuer.config().audience)
    }

    /// Every audience this server issues tokens for: the default one, then the resources.
    pub(crate) fn audiences(&self) -> Vec<String> {
        let mut all = vec![self.issuer.config().audience.clone()];
        all.extend(self.config.resources.iter().cloned());
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_uris_are_absolute_without_fragments() {
        for ok in [
            "https://p8fs.example/mcp",
            "http://127.0.0.1:8080/mcp",
            "https://a.example",
            "urn:example:resource",
        ] {
            assert!(is_resource_uri(ok), "{ok}");
        }
        for bad in [
            "",
            "/mcp",
            "mcp",
            "https://p8fs.example/mcp#x",
            "https://p8fs.example/m cp",
            "https://p8fs.example/\u{e9}",
        ] {
            assert!(!is_resource_uri(bad), "{bad}");
        }
    }
}
