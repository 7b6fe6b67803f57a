//! `p8fs s3 credentials`: temporary S3 credentials for the user of `p8fs login`, so someone who
//! signed in needs no static secret.
//!
//! It takes the login's access token (refreshed first when it would not last the duration
//! asked for), sends it to STS `AssumeRoleWithWebIdentity` on the S3 endpoint (a form POST, as
//! MinIO and SeaweedFS serve it) and reads the XML reply. Without `--profile` it prints
//! `export AWS_ACCESS_KEY_ID=...`, `export AWS_SECRET_ACCESS_KEY=...` and
//! `export AWS_SESSION_TOKEN=...` for `eval`; with `--profile NAME` it writes that profile of
//! the AWS shared credentials file (`$AWS_SHARED_CREDENTIALS_FILE`, else
//! `~/.aws/credentials`), mode 0600, keeping every other profile and line as it was.
//!
//! Invariants: the secret and the session token reach only stdout (without `--profile`) or the
//! credentials file, never messages; values from the server are printed only if they are plain
//! tokens (no shell or INI syntax can be smuggled in); plain `http` only on loopback.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use p8fs_core::Clock;

use super::{
    check_url, credentials_path, error_chain, http_client, parent_dir, private_file_options,
    runtime, say, system_clock,
};

/// The STS API version of `AssumeRoleWithWebIdentity`.
pub const STS_VERSION: &str = "2011-06-15";
/// The environment variable naming the AWS shared credentials file.
pub const AWS_CREDENTIALS_ENV: &str = "AWS_SHARED_CREDENTIALS_FILE";
/// The largest STS reply read, in bytes.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// `p8fs s3 credentials`: exchange the token of `p8fs login` for temporary S3 credentials.
#[derive(Debug, clap::Args)]
pub struct S3CredentialsArgs {
    /// Which login's token to use, by issuer URL (needed when logged in to several servers).
    #[arg(long, value_name = "URL")]
    pub issuer: Option<String>,
    /// The S3 endpoint serving STS, e.g. http://127.0.0.1:9000 (default: the configured
    /// s3.listen; plain http only on loopback).
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Write the credentials to this profile of the AWS shared credentials file instead of
    /// printing them.
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// How long the credentials last (15m..=12h), never beyond the login's access token.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub duration: Duration,
}

/// Temporary credentials as STS returned them.
pub struct StsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// ISO 8601, as the server wrote it.
    pub expiration: String,
}

impl std::fmt::Debug for StsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &"<redacted>")
            .field("expiration", &self.expiration)
            .finish()
    }
}

/// `p8fs s3 credentials`, with `endpoint` (`--endpoint-url`, else the configured listener).
pub fn s3_credentials(args: S3CredentialsArgs, endpoint: Option<String>) -> Result<(), String> {
    let path = credentials_path(|name| std::env::var_os(name))?;
    let printed = runtime()?.block_on(s3_credentials_with(
        args,
        endpoint,
        &path,
        system_clock(),
        |name| std::env::var_os(name),
    ))?;
    if let Some(text) = printed {
        std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| format!("cannot write to stdout: {e}"))?;
    }
    Ok(())
}

/// Gets the credentials with the login in `path`; returns the `export` lines to print, or
/// `None` after writing the profile named by `--profile`. `env` reads a variable.
pub async fn s3_credentials_with(
    args: S3CredentialsArgs,
    endpoint: Option<String>,
    path: &Path,
    clock: Arc<dyn Clock>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Option<String>, String> {
    let endpoint = endpoint.ok_or_else(|| {
        "no S3 endpoint: pass --endpoint-url, or configure s3.listen (P8FS_S3_LISTEN)".to_owned()
    })?;
    let url = check_url("the S3 endpoint", &endpoint)?;
    if let Some(profile) = &args.profile {
        check_profile_name(profile)?;
    }
    let margin = i64::try_from(args.duration.as_millis()).unwrap_or(i64::MAX);
    let token = super::access_token_lasting(args.issuer.as_deref(), path, clock, margin).await?;
    let credentials = assume_role(&url, &token, args.duration).await?;
    match &args.profile {
        None => Ok(Some(format!(
            "export AWS_ACCESS_KEY_ID={}\nexport AWS_SECRET_ACCESS_KEY={}\nexport AWS_SESSION_TOKEN={}\n",
            credentials.access_key_id, credentials.secret_access_key, credentials.session_token
        ))),
        Some(profile) => {
            let file = aws_credentials_path(env)?;
            write_profile(&file, profile, &credentials)?;
            say(&format!(
                "Wrote the profile {profile} to {} (expires {}); use it with --profile {profile} \
                 and --endpoint-url {endpoint}.",
                file.display(),
                credentials.expiration
            ));
            Ok(None)
        }
    }
}

/// Calls `AssumeRoleWithWebIdentity` at `endpoint` with `token`.
pub async fn assume_role(
    endpoint: &reqwest::Url,
    token: &str,
    duration: Duration,
) -> Result<StsCredentials, String> {
    let body = oauth2::url::form_urlencoded::Serializer::new(String::new())
        .append_pair("Action", "AssumeRoleWithWebIdentity")
        .append_pair("Version", STS_VERSION)
        .append_pair("WebIdentityToken", token)
        .append_pair("DurationSeconds", &duration.as_secs().to_string())
        .finish();
    let response = http_client()?
        .post(endpoint.clone())
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
        .send()
        .await
        .map_err(|e| format!("cannot reach {endpoint}: {}", error_chain(&e)))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| format!("cannot read the reply of {endpoint}: {}", error_chain(&e)))?;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_REPLY_BYTES)]);
    if !status.is_success() {
        let code = xml_text(&text, "Code").unwrap_or_else(|| status.to_string());
        let detail = match xml_text(&text, "Message") {
            Some(message) => format!("{code}: {message}"),
            None => code,
        };
        return Err(format!(
            "{endpoint} refused the web identity token ({detail}){}",
            if status == reqwest::StatusCode::FORBIDDEN
                || status == reqwest::StatusCode::UNAUTHORIZED
            {
                "; the login needs the scope s3:read or s3:write (`p8fs login` again)"
            } else {
                ""
            }
        ));
    }
    let field = |name: &str| {
        xml_text(&text, name)
            .filter(|value| is_plain_token(value))
            .ok_or_else(|| {
                format!("the reply of {endpoint} is not STS credentials: no valid {name}")
            })
    };
    Ok(StsCredentials {
        access_key_id: field("AccessKeyId")?,
        secret_access_key: field("SecretAccessKey")?,
        session_token: field("SessionToken")?,
        expiration: xml_text(&text, "Expiration")
            .filter(|e| {
                e.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-:.+".contains(c))
            })
            .unwrap_or_else(|| "at an unknown time".to_owned()),
    })
}

/// The text of the first `<name>...</name>` element of `xml`, entities decoded. Enough for the
/// flat replies of STS; no attributes are expected on these elements.
pub fn xml_text(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    let raw = xml[start..end].trim();
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let entity = [
            ("&amp;", '&'),
            ("&lt;", '<'),
            ("&gt;", '>'),
            ("&quot;", '"'),
            ("&apos;", '\''),
        ]
        .into_iter()
        .find(|(text, _)| rest.starts_with(text));
        match entity {
            Some((text, c)) => {
                out.push(c);
                rest = &rest[text.len()..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    Some(out)
}

/// A value safe to print in an `export` line or an INI file: base64 and base64url characters.
fn is_plain_token(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 4096
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=_-".contains(&b))
}

fn check_profile_name(profile: &str) -> Result<(), String> {
    let ok = !profile.is_empty()
        && profile.len() <= 128
        && profile
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@+".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--profile {profile:?}: use 1..=128 of A-Z, a-z, 0-9, '.', '_', '-', '@', '+'"
        ))
    }
}

/// The AWS shared credentials file: `$AWS_SHARED_CREDENTIALS_FILE`, else
/// `$HOME/.aws/credentials`. `env` reads a variable (empty counts as unset).
pub fn aws_credentials_path(env: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf, String> {
    let var = |name: &str| env(name).filter(|value| !value.is_empty());
    if let Some(path) = var(AWS_CREDENTIALS_ENV) {
        return Ok(PathBuf::from(path));
    }
    match var("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".aws").join("credentials")),
        None => Err(format!(
            "cannot tell where the AWS credentials file is: set {AWS_CREDENTIALS_ENV} or HOME"
        )),
    }
}

/// `text` (an INI credentials file) with the profile `profile` holding `credentials`: the
/// three keys are replaced (or added) in that section, or the section is appended; every other
/// line, section and key is kept as it was.
pub fn with_profile(text: &str, profile: &str, credentials: &StsCredentials) -> String {
    let ours = [
        ("aws_access_key_id", credentials.access_key_id.as_str()),
        (
            "aws_secret_access_key",
            credentials.secret_access_key.as_str(),
        ),
        ("aws_session_token", credentials.session_token.as_str()),
    ];
    let values: String = ours
        .iter()
        .map(|(key, value)| format!("{key} = {value}\n"))
        .collect();
    let mut out = String::with_capacity(text.len() + values.len() + profile.len() + 4);
    let mut in_profile = false;
    let mut found = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') && trimmed.ends_with(']') {
            in_profile = trimmed[1..trimmed.len() - 1].trim() == profile;
            out.push_str(line);
            out.push('\n');
            if in_profile && !found {
                found = true;
                out.push_str(&values);
            }
            continue;
        }
        if in_profile {
            let key = trimmed
                .split_once('=')
                .map(|(key, _)| key.trim().to_ascii_lowercase());
            if key.is_some_and(|key| ours.iter().any(|(name, _)| *name == key)) {
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    if !found {
        if !out.is_empty() && !out.ends_with("\n\n") {
            out.push('\n');
        }
        out.push_str(&format!("[{profile}]\n{values}"));
    }
    out
}

/// Writes `profile` into the credentials file at `path` atomically (a new 0600 file in the same
/// directory, made 0700 if missing, then a rename).
fn write_profile(path: &Path, profile: &str, credentials: &StsCredentials) -> Result<(), String> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let text = with_profile(&existing, profile, credentials);
    let dir = parent_dir(path);
    super::create_private_dir(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "credentials".into());
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    let result = (|| {
        let mut file = private_file_options()
            .open(&temp)
            .map_err(|e| format!("cannot create {}: {e}", temp.display()))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", temp.display()))?;
        std::fs::rename(&temp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn credentials() -> StsCredentials {
        StsCredentials {
            access_key_id: "P8TAAAAAAAAAAAAAAAAA".into(),
            secret_access_key: "secret_secret".into(),
            session_token: "session-token".into(),
            expiration: "2030-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn a_profile_is_replaced_in_place_and_others_are_kept() {
        let before = "# my file\n[default]\naws_access_key_id = AKIAOLD\nregion=eu-west-1\n\
                      aws_session_token=old\n\n[p8fs]\nAWS_ACCESS_KEY_ID = old\nregion = us-east-1\n\
                      aws_secret_access_key=old\n\n[other]\naws_access_key_id = keep\n";
        let after = with_profile(before, "p8fs", &credentials());
        assert_eq!(
            after,
            "# my file\n[default]\naws_access_key_id = AKIAOLD\nregion=eu-west-1\n\
             aws_session_token=old\n\n[p8fs]\naws_access_key_id = P8TAAAAAAAAAAAAAAAAA\n\
             aws_secret_access_key = secret_secret\naws_session_token = session-token\n\
             region = us-east-1\n\n[other]\naws_access_key_id = keep\n"
        );
        assert_eq!(with_profile(&after, "p8fs", &credentials()), after);
    }

    #[test]
    fn a_missing_profile_is_appended() {
        assert_eq!(
            with_profile("", "dev", &credentials()),
            "[dev]\naws_access_key_id = P8TAAAAAAAAAAAAAAAAA\n\
             aws_secret_access_key = secret_secret\naws_session_token = session-token\n"
        );
        let after = with_profile("[default]\nregion = x", "dev", &credentials());
        assert!(after.starts_with("[default]\nregion = x\n\n[dev]\naws_access_key_id = "));
    }

    #[test]
    fn the_credentials_file_follows_the_aws_rules() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        assert_eq!(
            aws_credentials_path(env(&[(AWS_CREDENTIALS_ENV, "/x/creds"), ("HOME", "/h")]))
                .unwrap(),
            PathBuf::from("/x/creds")
        );
        assert_eq!(
            aws_credentials_path(env(&[(AWS_CREDENTIALS_ENV, ""), ("HOME", "/h")])).unwrap(),
            PathBuf::from("/h/.aws/credentials")
        );
        assert!(aws_credentials_path(env(&[])).is_err());
    }

    #[test]
    fn sts_replies_are_read_and_only_plain_values_accepted() {
        let reply = "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult>\
                     <Credentials><AccessKeyId>P8T123</AccessKeyId>\
                     <SecretAccessKey>a/b+c=</SecretAccessKey>\
                     <SessionToken> tok&amp;en </SessionToken>\
                     <Expiration>2030-01-01T00:00:00Z</Expiration></Credentials>\
                     </AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
        assert_eq!(xml_text(reply, "AccessKeyId").unwrap(), "P8T123");
        assert_eq!(xml_text(reply, "SessionToken").unwrap(), "tok&en");
        assert!(xml_text(reply, "Missing").is_none());
        assert!(is_plain_token("a/b+c="));
        assert!(!is_plain_token("tok&en"));
        assert!(!is_plain_token("x; rm -rf ~"));
        assert!(!is_plain_token("x\n[default]"));
        assert!(!is_plain_token(""));
        let error = "<ErrorResponse><Error><Code>AccessDenied</Code>\
                     <Message>a &lt;b&gt;</Message></Error></ErrorResponse>";
        assert_eq!(xml_text(error, "Message").unwrap(), "a <b>");
    }

    #[test]
    fn profile_names_are_checked() {
        for good in ["default", "p8fs-dev", "a.b_c@d+e"] {
            check_profile_name(good).unwrap();
        }
        for bad in ["", "a b", "a]", "[a", "a\nb", &"x".repeat(129)] {
            assert!(check_profile_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_redacts_the_secrets() {
        let text = format!("{:?}", credentials());
        assert!(!text.contains("secret_secret") && !text.contains("session-token"));
    }
}
