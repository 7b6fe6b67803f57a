//! STS on the S3 listener, as MinIO serves it: an unsigned `POST /` with the form
//! `Action=AssumeRoleWithWebIdentity&WebIdentityToken=<access token>[&DurationSeconds=n]`
//! exchanges a p8fs access token for temporary S3 credentials of the same tenant and scopes,
//! answered in STS's XML (or an STS error XML).

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use p8fs_auth::s3::S3Credentials;
use s3s::dto::TimestampFormat;
use s3s::route::S3Route;
use s3s::{Body, S3Request, S3Response, S3Result};

use crate::error::sts_error;

/// Largest STS form accepted (an access token is at most a few KiB).
pub(crate) const MAX_STS_FORM_BYTES: usize = 16 * 1024;

const NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// The STS route.
pub(crate) struct Sts {
    pub(crate) credentials: Arc<S3Credentials>,
}

#[async_trait::async_trait]
impl S3Route for Sts {
    fn is_match(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        _extensions: &mut http::Extensions,
    ) -> bool {
        method == Method::POST
            && uri.path() == "/"
            && headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| {
                    v.split(';')
                        .next()
                        .is_some_and(|m| m.trim() == "application/x-www-form-urlencoded")
                })
    }

    /// The web identity token is the credential: the request itself needs no signature.
    async fn check_access(&self, _req: &mut S3Request<Body>) -> S3Result<()> {
        Ok(())
    }

    async fn call(&self, req: S3Request<Body>) -> S3Result<S3Response<Body>> {
        let mut body = req.input;
        let form = match body.store_all_limited(MAX_STS_FORM_BYTES).await {
            Ok(form) => form,
            Err(_) => {
                return Ok(error_response(
                    "ValidationError",
                    StatusCode::BAD_REQUEST,
                    &format!("the form must be at most {MAX_STS_FORM_BYTES} bytes"),
                ));
            }
        };
        let mut action = None;
        let mut token = None;
        let mut duration = None;
        for (name, value) in form_urlencoded::parse(&form) {
            match name.as_ref() {
                "Action" => action = Some(value.into_owned()),
                "WebIdentityToken" => token = Some(value.into_owned()),
                "DurationSeconds" => duration = Some(value.into_owned()),
                _ => {}
            }
        }
        if action.as_deref() != Some("AssumeRoleWithWebIdentity") {
            return Ok(error_response(
                "InvalidAction",
                StatusCode::BAD_REQUEST,
                "this endpoint serves Action=AssumeRoleWithWebIdentity",
            ));
        }
        let Some(token) = token else {
            return Ok(error_response(
                "MissingParameter",
                StatusCode::BAD_REQUEST,
                "WebIdentityToken is required",
            ));
        };
        let duration = match duration.map(|d| d.parse::<u64>()) {
            None => None,
            Some(Ok(seconds)) => Some(Duration::from_secs(seconds)),
            Some(Err(_)) => {
                return Ok(error_response(
                    "ValidationError",
                    StatusCode::BAD_REQUEST,
                    "DurationSeconds must be a whole number of seconds",
                ));
            }
        };
        match self
            .credentials
            .assume_role_with_web_identity(&token, duration)
            .await
        {
            Ok(issued) => {
                let expiration = timestamp_text(crate::timestamp(issued.expiration));
                let xml = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
                     <AssumeRoleWithWebIdentityResponse xmlns=\"{NAMESPACE}\">\
                     <AssumeRoleWithWebIdentityResult><Credentials>\
                     <AccessKeyId>{}</AccessKeyId>\
                     <SecretAccessKey>{}</SecretAccessKey>\
                     <SessionToken>{}</SessionToken>\
                     <Expiration>{}</Expiration>\
                     </Credentials></AssumeRoleWithWebIdentityResult>\
                     </AssumeRoleWithWebIdentityResponse>",
                    escape(&issued.access_key_id),
                    escape(issued.secret_access_key.as_str()),
                    escape(issued.session_token.as_str()),
                    escape(&expiration),
                );
                Ok(xml_response(StatusCode::OK, xml))
            }
            Err(error) => {
                let (code, status, message) = sts_error(&error);
                Ok(error_response(code, status, &message))
            }
        }
    }
}

fn timestamp_text(timestamp: s3s::dto::Timestamp) -> String {
    let mut text = Vec::new();
    match timestamp.format(TimestampFormat::DateTime, &mut text) {
        Ok(()) => String::from_utf8_lossy(&text).into_owned(),
        Err(_) => String::new(),
    }
}

fn error_response(code: &str, status: StatusCode, message: &str) -> S3Response<Body> {
    let kind = if status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <ErrorResponse xmlns=\"{NAMESPACE}\"><Error><Type>{kind}</Type>\
         <Code>{}</Code><Message>{}</Message></Error></ErrorResponse>",
        escape(code),
        escape(message)
    );
    xml_response(status, xml)
}

fn xml_response(status: StatusCode, xml: String) -> S3Response<Body> {
    let mut response = S3Response::with_status(Body::from(xml), status);
    response.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml; charset=utf-8"),
    );
    response
}

/// XML character escaping.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
    }
}
