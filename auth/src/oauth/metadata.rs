//! Authorization server metadata (RFC 8414), also served as `openid-configuration` for clients
//! that only look there (it carries the same fields: this server issues no ID tokens). It says
//! that every authorization response carries `iss` (RFC 9207) and that a `client_id` may be the
//! URL of a client metadata document (`client_metadata.rs`).

use serde_json::{Value, json};

use super::{
    GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS, GRANT_DEVICE_CODE, GRANT_JWT_BEARER,
    GRANT_REFRESH_TOKEN, OAuthServer,
};
use crate::scope::Scope;

impl OAuthServer {
    /// The metadata document.
    pub(crate) fn metadata(&self) -> Value {
        let auth_methods = ["client_secret_basic", "client_secret_post", "none"];
        let mut doc = json!({
            "issuer": self.config.issuer,
            "authorization_endpoint": self.url("/oauth/authorize"),
            "token_endpoint": self.url("/oauth/token"),
            "device_authorization_endpoint": self.url("/oauth/device_authorization"),
            "revocation_endpoint": self.url("/oauth/revoke"),
            "introspection_endpoint": self.url("/oauth/introspect"),
            "jwks_uri": self.url("/.well-known/jwks.json"),
            "scopes_supported": Scope::ALL.map(Scope::as_str),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": [
                GRANT_AUTHORIZATION_CODE,
                GRANT_REFRESH_TOKEN,
                GRANT_DEVICE_CODE,
                GRANT_CLIENT_CREDENTIALS,
                GRANT_JWT_BEARER,
            ],
            "token_endpoint_auth_methods_supported": auth_methods,
            "revocation_endpoint_auth_methods_supported": auth_methods,
            "introspection_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "bearer",
            ],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": true,
            "client_id_metadata_document_supported": true,
        });
        if self.config.dynamic_registration
            && let Some(object) = doc.as_object_mut()
        {
            object.insert(
                "registration_endpoint".to_owned(),
                Value::String(self.url("/oauth/register")),
            );
        }
        doc
    }
}
