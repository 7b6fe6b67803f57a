//! An [`Embedder`] backed by any OpenAI-compatible embeddings server (`POST {base_url}/embeddings`):
//! OpenAI itself, Ollama, vLLM, the llama.cpp server, Infinity and others.
//!
//! [`OpenAiEmbedder::connect`] validates [`OpenAiOptions`] (errors name the configuration field,
//! `embeddings.base_url` and so on) and, unless the dimension is configured, learns it with one
//! probe request; a server whose vectors have another dimension than the configured one is
//! refused at once, naming both numbers.
//!
//! Each [`Embedder::embed`] call sends its texts in batches of [`OpenAiOptions::batch_size`], one
//! request at a time, in order, as `{"model", "input": [...], "encoding_format": "float"}` with
//! `Authorization: Bearer <key>` when a key is set. The answer's `data[i].index`, not the array
//! order, says which text a vector belongs to; every text must get exactly one vector of the
//! dimension, finite and not all zeros. Vectors are L2-normalised here, since not every server
//! normalises (Ollama does not).
//!
//! An empty text is sent as a single space: some servers refuse `""`. Its vector is therefore
//! the server's vector of `" "`.
//!
//! Failures: 429, 5xx, timeouts and connection errors are retried up to
//! [`OpenAiOptions::max_retries`] times with exponential backoff and jitter (from
//! [`INITIAL_BACKOFF`] doubling up to [`MAX_BACKOFF`]), or after the server's `Retry-After` when
//! it gives one in seconds of at most [`MAX_RETRY_AFTER`]; when the retries are used up the call
//! fails as [`ErrorKind::Unavailable`](p8fs_core::ErrorKind::Unavailable). 401 and 403 fail at once
//! as an invalid `embeddings.api_key` (the key itself is never shown); any other 4xx or 3xx fails
//! at once as `Internal` with the status and the server's message, cut to
//! [`MAX_SERVER_MESSAGE`] characters; an answer that is not what the protocol promises is
//! `Internal`.
//!
//! The API key comes from the configuration or, when that has none, from the environment
//! ([`API_KEY_VARS`], see [`OpenAiOptions::api_key_from_env`]). It is never logged: the `Debug`
//! forms of [`OpenAiOptions`] and [`OpenAiEmbedder`] print `Some("<redacted>")`, and a server
//! message that echoes it has it replaced.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use p8fs_core::validate::MAX_DIMENSION;
use p8fs_core::{Embedder, Error, Result};
use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};

/// Texts per request unless configured otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 64;
/// The most texts one request may carry (OpenAI's own limit).
pub const MAX_BATCH_SIZE: usize = 2048;
/// How long one request may take, answer included, unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a failed request is retried unless configured otherwise.
pub const DEFAULT_MAX_RETRIES: u32 = 4;
/// The most retries that may be configured.
pub const MAX_RETRIES: u32 = 20;
/// The first wait before a retry; each further retry waits twice as long, up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
/// The longest wait between two attempts computed by backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The longest `Retry-After` honoured; a longer one is replaced by the backoff.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// How many characters of a server's error message an error carries.
pub const MAX_SERVER_MESSAGE: usize = 300;
/// The largest answer read (a batch of 2048 vectors of 4096 values in JSON fits).
pub const MAX_RESPONSE_BYTES: usize = 256 << 20;
/// The environment variables [`OpenAiOptions::api_key_from_env`] reads, first set one wins.
pub const API_KEY_VARS: [&str; 2] = ["P8FS_EMBEDDINGS_API_KEY", "OPENAI_API_KEY"];
/// The text embedded by [`OpenAiEmbedder::connect`] to learn the dimension.
pub const PROBE_TEXT: &str = "dimension probe";

const REDACTED: &str = "<redacted>";

/// How to reach an OpenAI-compatible embeddings server (`[embeddings]` with
/// `provider = "openai"`). `Debug` never prints the API key.
#[derive(Clone)]
pub struct OpenAiOptions {
    /// The API's base URL, to which `/embeddings` is appended, e.g. `http://localhost:11434/v1`.
    pub base_url: String,
    /// The model name the server knows, e.g. `nomic-embed-text` or `text-embedding-3-small`.
    pub model: String,
    /// Sent as `Authorization: Bearer <key>` when set.
    pub api_key: Option<String>,
    /// The vector dimension; learned from the server with one probe request when `None`.
    pub dimension: Option<usize>,
    /// Texts per request (1 to [`MAX_BATCH_SIZE`]).
    pub batch_size: usize,
    /// How long one request may take, the answer included.
    pub timeout: Duration,
    /// How often a request that failed transiently is retried (0 to [`MAX_RETRIES`]).
    pub max_retries: u32,
}

impl OpenAiOptions {
    /// Options for `model` at `base_url` with the defaults: no API key, the dimension learned,
    /// [`DEFAULT_BATCH_SIZE`], [`DEFAULT_TIMEOUT`], [`DEFAULT_MAX_RETRIES`].
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        OpenAiOptions {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            dimension: None,
            batch_size: DEFAULT_BATCH_SIZE,
            timeout: DEFAULT_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
        }
    }

    /// The API key from the environment: the first of [`API_KEY_VARS`]
    /// (`P8FS_EMBEDDINGS_API_KEY`, then `OPENAI_API_KEY`) that is set and not empty.
    pub fn api_key_from_env() -> Option<String> {
        Self::api_key_from_vars(|name| std::env::var(name).ok())
    }

    /// [`OpenAiOptions::api_key_from_env`] over any source of variables (`lookup` returns a
    /// variable's value).
    pub fn api_key_from_vars(lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
        API_KEY_VARS
            .iter()
            .filter_map(|name| lookup(name))
            .find(|key| !key.is_empty())
    }

    /// These options with the key from the environment ([`OpenAiOptions::api_key_from_env`])
    /// when none is configured; a configured key wins.
    pub fn or_api_key_from_env(mut self) -> Self {
        if self.api_key.is_none() {
            self.api_key = Self::api_key_from_env();
        }
        self
    }
}

impl fmt::Debug for OpenAiOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiOptions")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| REDACTED))
            .field("dimension", &self.dimension)
            .field("batch_size", &self.batch_size)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

/// An OpenAI-compatible embeddings server behind [`Embedder`]: see the module documentation.
/// Cloning is cheap and clones share one connection pool.
#[derive(Clone)]
pub struct OpenAiEmbedder {
    inner: Arc<Inner>,
}

struct Inner {
    options: OpenAiOptions,
    endpoint: Url,
    /// `Bearer <key>`, marked sensitive so reqwest never shows it.
    authorization: Option<HeaderValue>,
    dimension: usize,
    http: reqwest::Client,
}

impl fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("endpoint", &self.inner.endpoint.as_str())
            .field("dimension", &self.inner.dimension)
            .field("options", &self.inner.options)
            .finish()
    }
}

impl OpenAiEmbedder {
    /// Validates `options` and, unless `options.dimension` is set, asks the server for one
    /// vector to learn the dimension. Invalid options are `InvalidInput` naming the field
    /// (`embeddings.base_url`, `embeddings.model`, `embeddings.api_key`, `embeddings.dimension`,
    /// `embeddings.batch_size`, `embeddings.timeout`, `embeddings.max_retries`); a server that
    /// cannot be reached is `Unavailable`.
    pub async fn connect(options: OpenAiOptions) -> Result<Self> {
        let endpoint = endpoint(&options.base_url)?;
        if options.model.trim().is_empty() {
            return Err(Error::invalid("embeddings.model", "must not be empty"));
        }
        let authorization = match &options.api_key {
            None => None,
            Some(key) => Some(authorization(key)?),
        };
        if let Some(dimension) = options.dimension {
            check_dimension(dimension)
                .map_err(|reason| Error::invalid("embeddings.dimension", reason))?;
        }
        if !(1..=MAX_BATCH_SIZE).contains(&options.batch_size) {
            return Err(Error::invalid(
                "embeddings.batch_size",
                format!("must be between 1 and {MAX_BATCH_SIZE}"),
            ));
        }
        if options.timeout.is_zero() {
            return Err(Error::invalid("embeddings.timeout", "must be more than 0"));
        }
        if options.max_retries > MAX_RETRIES {
            return Err(Error::invalid(
                "embeddings.max_retries",
                format!("must be at most {MAX_RETRIES}"),
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(options.timeout)
            // A redirect is reported, not followed: the key is not sent anywhere else.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("p8fs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::internal("cannot build the HTTP client", boxed(e)))?;

        let mut inner = Inner {
            dimension: options.dimension.unwrap_or(0),
            options,
            endpoint,
            authorization,
            http,
        };
        let probe = inner.request(&[PROBE_TEXT.to_owned()], None).await?;
        let learned = probe.first().map_or(0, Vec::len);
        match inner.options.dimension {
            Some(configured) if configured != learned => {
                return Err(Error::invalid(
                    "embeddings.dimension",
                    format!(
                        "is configured as {configured}, but model {} at {} returns vectors of \
                         {learned} dimensions",
                        inner.options.model, inner.endpoint
                    ),
                ));
            }
            Some(_) => {}
            None => {
                check_dimension(learned).map_err(|reason| {
                    Error::internal(
                        format!(
                            "model {} at {} returns vectors of {learned} dimensions, which p8fs \
                             cannot store: {reason}",
                            inner.options.model, inner.endpoint
                        ),
                        None,
                    )
                })?;
                inner.dimension = learned;
            }
        }
        Ok(OpenAiEmbedder {
            inner: Arc::new(inner),
        })
    }

    /// The URL requests go to: the base URL with `/embeddings` appended.
    pub fn endpoint(&self) -> &Url {
        &self.inner.endpoint
    }

    /// The options this embedder was connected with.
    pub fn options(&self) -> &OpenAiOptions {
        &self.inner.options
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn model(&self) -> &str {
        &self.inner.options.model
    }

    fn dimension(&self) -> usize {
        self.inner.dimension
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.inner.options.batch_size) {
            let batch = self
                .inner
                .request(batch, Some(self.inner.dimension))
                .await?;
            vectors.extend(batch);
        }
        Ok(vectors)
    }
}

#[derive(Serialize)]
struct EmbeddingsRequest<'a> {
    model: &'a str,
    input: Vec<&'a str>,
    encoding_format: &'static str,
}

#[derive(Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingData>,
}

#[derive(Deserialize)]
struct EmbeddingData {
    index: usize,
    embedding: Vec<f64>,
}

/// One attempt's failure that a retry may cure.
struct Transient {
    reason: String,
    retry_after: Option<Duration>,
    source: Option<p8fs_core::error::Source>,
}

impl Inner {
    /// One batch: the request, retried as the module documentation says, and the checked,
    /// normalised vectors in the order of `texts`. `dimension` is what every vector must have
    /// (`None` while probing: then all must have the first one's).
    async fn request(&self, texts: &[String], dimension: Option<usize>) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let body = EmbeddingsRequest {
            model: &self.options.model,
            input: texts
                .iter()
                .map(|text| if text.is_empty() { " " } else { text.as_str() })
                .collect(),
            encoding_format: "float",
        };
        let body = serde_json::to_vec(&body)
            .map_err(|e| Error::internal("cannot encode an embeddings request", boxed(e)))?;

        let mut attempt = 0;
        loop {
            let failure = match self.attempt(&body).await? {
                Ok(answer) => {
                    let count = texts.len();
                    return tokio::task::spawn_blocking(move || parse(&answer, count, dimension))
                        .await
                        .map_err(|e| Error::internal("an embedding task failed", boxed(e)))?
                        .map_err(|reason| {
                            Error::internal(
                                format!(
                                    "the embeddings server at {} gave an unusable answer: {reason}",
                                    self.endpoint
                                ),
                                None,
                            )
                        });
                }
                Err(failure) => failure,
            };
            if attempt >= self.options.max_retries {
                return Err(Error::unavailable(
                    format!(
                        "the embeddings server at {} failed {} time(s), the last: {}",
                        self.endpoint,
                        attempt + 1,
                        failure.reason
                    ),
                    failure.source,
                ));
            }
            let delay = failure
                .retry_after
                .filter(|after| *after <= MAX_RETRY_AFTER)
                .unwrap_or_else(|| backoff(attempt));
            tracing::warn!(
                endpoint = %self.endpoint,
                attempt = attempt + 1,
                reason = %failure.reason,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "embeddings request failed; retrying"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// One request: the answer's body on success, a [`Transient`] failure to retry, or an error
    /// that retrying cannot cure.
    async fn attempt(&self, body: &[u8]) -> Result<Result<Vec<u8>, Transient>> {
        let mut request = self
            .http
            .post(self.endpoint.clone())
            .timeout(self.options.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body.to_vec());
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) if e.is_builder() => {
                return Err(Error::internal(
                    "cannot build an embeddings request",
                    boxed(e.without_url()),
                ));
            }
            Err(e) => return Ok(Err(transport(e))),
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let answer = match read_body(response).await {
            Ok(answer) => answer,
            Err(BodyError::Transport(e)) => return Ok(Err(transport(e))),
            Err(BodyError::TooLarge) => {
                return Err(Error::internal(
                    format!(
                        "the embeddings server at {} answered with more than {MAX_RESPONSE_BYTES} bytes",
                        self.endpoint
                    ),
                    None,
                ));
            }
        };
        if status.is_success() {
            return Ok(Ok(answer));
        }
        let message = self.server_message(&answer);
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Ok(Err(Transient {
                reason: format!("HTTP {status}: {message}"),
                retry_after,
                source: None,
            }));
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let reason = match self.options.api_key {
                Some(_) => format!(
                    "the embeddings server at {} refused the API key (HTTP {status}: {message})",
                    self.endpoint
                ),
                None => format!(
                    "the embeddings server at {} requires an API key (HTTP {status}: {message}); \
                     set embeddings.api_key or {}",
                    self.endpoint, API_KEY_VARS[0]
                ),
            };
            return Err(Error::invalid("embeddings.api_key", reason));
        }
        Err(Error::internal(
            format!(
                "the embeddings server at {} refused the request of model {}: HTTP {status}: {message}",
                self.endpoint, self.options.model
            ),
            None,
        ))
    }

    /// The error message in a server's answer (OpenAI's `{"error": {"message"}}`, Ollama's
    /// `{"error": "..."}`, FastAPI's `{"detail": ...}`, or the text itself), on one line, cut
    /// to [`MAX_SERVER_MESSAGE`] characters, with the API key replaced should it be echoed.
    fn server_message(&self, answer: &[u8]) -> String {
        let text = String::from_utf8_lossy(answer);
        let message = match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(json) => json_message(&json).unwrap_or_else(|| text.to_string()),
            Err(_) => text.to_string(),
        };
        let mut message = message
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>();
        if let Some(key) = self.options.api_key.as_deref().filter(|k| !k.is_empty()) {
            message = message.replace(key, REDACTED);
        }
        let message = message.trim();
        if message.is_empty() {
            return "(no message)".to_owned();
        }
        match message.char_indices().nth(MAX_SERVER_MESSAGE) {
            Some((end, _)) => format!("{}…", &message[..end]),
            None => message.to_owned(),
        }
    }
}

fn json_message(json: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    let candidate = json
        .get("error")
        .map(|error| error.get("message").unwrap_or(error))
        .or_else(|| json.get("detail"))
        .or_else(|| json.get("message"))?;
    Some(match candidate {
        Value::String(s) => s.clone(),
        // FastAPI's validation errors: a list of {loc, msg, input}; the input may be the whole
        // text, so only where and what.
        Value::Array(items) => items
            .iter()
            .map(|item| match (item.get("msg"), item.get("loc")) {
                (Some(Value::String(msg)), Some(Value::Array(loc))) => {
                    let loc: Vec<String> = loc
                        .iter()
                        .map(|part| match part {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect();
                    format!("{msg} (at {})", loc.join("."))
                }
                (Some(Value::String(msg)), _) => msg.clone(),
                _ => item.to_string(),
            })
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    })
}

/// Checks the answer of a request for `count` texts and returns its vectors by `index`,
/// normalised; the reason it is unusable otherwise.
fn parse(answer: &[u8], count: usize, dimension: Option<usize>) -> Result<Vec<Vec<f32>>, String> {
    let response: EmbeddingsResponse =
        serde_json::from_slice(answer).map_err(|e| format!("not an embeddings response ({e})"))?;
    if response.data.len() != count {
        return Err(format!("{} vectors for {count} texts", response.data.len()));
    }
    let dimension = match dimension {
        Some(dimension) => dimension,
        None => response.data.first().map_or(0, |d| d.embedding.len()),
    };
    let mut vectors: Vec<Option<Vec<f32>>> = vec![None; count];
    for item in response.data {
        let index = item.index;
        let slot = vectors
            .get_mut(index)
            .ok_or_else(|| format!("index {index} for a batch of {count} texts"))?;
        if slot.is_some() {
            return Err(format!("index {index} twice"));
        }
        if item.embedding.len() != dimension {
            return Err(format!(
                "the vector of index {index} has {} dimensions, not {dimension}",
                item.embedding.len()
            ));
        }
        *slot = Some(
            normalise(&item.embedding).map_err(|e| format!("the vector of index {index} {e}"))?,
        );
    }
    // `data` had `count` entries, each at a distinct index below `count`: every slot is filled.
    vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| v.ok_or_else(|| format!("no vector for index {i}")))
        .collect()
}

/// `values` divided by their L2 norm, in f32; the reason it cannot be.
fn normalise(values: &[f64]) -> Result<Vec<f32>, &'static str> {
    if values
        .iter()
        .any(|v| !v.is_finite() || v.abs() > f64::from(f32::MAX))
    {
        return Err("has a value that is not a finite 32-bit number");
    }
    let norm = values.iter().map(|v| v * v).sum::<f64>().sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return Err("is all zeros");
    }
    // A unit vector's components are within f32's range.
    Ok(values.iter().map(|v| (v / norm) as f32).collect())
}

fn check_dimension(dimension: usize) -> Result<(), String> {
    if (1..=MAX_DIMENSION as usize).contains(&dimension) {
        Ok(())
    } else {
        Err(format!("must be between 1 and {MAX_DIMENSION}"))
    }
}

/// The embeddings URL for `base_url`: an http(s) URL with a host and neither query nor
/// fragment, with `/embeddings` appended to its path.
fn endpoint(base_url: &str) -> Result<Url> {
    let field = "embeddings.base_url";
    let url = Url::parse(base_url.trim())
        .map_err(|e| Error::invalid(field, format!("is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::invalid(field, "must be an http:// or https:// URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::invalid(field, "has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::invalid(field, "must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::invalid(
            field,
            "must not carry credentials; set embeddings.api_key",
        ));
    }
    let path = format!("{}/embeddings", url.path().trim_end_matches('/'));
    let mut url = url;
    url.set_path(&path);
    Ok(url)
}

/// `Bearer <key>` as a sensitive header value; the key must be printable ASCII.
fn authorization(key: &str) -> Result<HeaderValue> {
    if key.is_empty() {
        return Err(Error::invalid(
            "embeddings.api_key",
            "is empty; leave it unset for a server without keys",
        ));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(
            "embeddings.api_key",
            "must be printable ASCII without spaces",
        ));
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {key}"))
        .map_err(|_| Error::invalid("embeddings.api_key", "is not a valid header value"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// The wait before retry `attempt + 1`: [`INITIAL_BACKOFF`] doubled `attempt` times, at most
/// [`MAX_BACKOFF`], of which a random part between half and all is taken.
fn backoff(attempt: u32) -> Duration {
    let full = INITIAL_BACKOFF
        .saturating_mul(1u32 << attempt.min(16))
        .min(MAX_BACKOFF);
    let half = full / 2;
    let millis = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
    // A per-call random seed from the standard library: enough for jitter.
    let random = RandomState::new().build_hasher().finish();
    half + Duration::from_millis(random % (millis + 1))
}

/// `Retry-After` in seconds; the HTTP-date form is ignored (backoff applies).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn transport(e: reqwest::Error) -> Transient {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "the connection failed"
    };
    let e = e.without_url();
    Transient {
        reason: format!("{what}: {e}"),
        retry_after: None,
        source: boxed(e),
    }
}

enum BodyError {
    Transport(reqwest::Error),
    TooLarge,
}

async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn boxed(e: impl std::error::Error + Send + Sync + 'static) -> Option<p8fs_core::error::Source> {
    Some(Box::new(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_appends_embeddings_to_the_base_path() {
        for (base, want) in [
            (
                "http://localhost:11434/v1",
                "http://localhost:11434/v1/embeddings",
            ),
            (
                "http://localhost:11434/v1/",
                "http://localhost:11434/v1/embeddings",
            ),
            (
                "https://api.openai.com/v1",
                "https://api.openai.com/v1/embeddings",
            ),
            ("http://127.0.0.1:4224", "http://127.0.0.1:4224/embeddings"),
        ] {
            assert_eq!(endpoint(base).unwrap().as_str(), want);
        }
        for bad in [
            "",
            "localhost:11434",
            "ftp://x/v1",
            "http://u:p@x/v1",
            "http://x/v1?a=b",
        ] {
            assert_eq!(
                endpoint(bad).unwrap_err().field(),
                Some("embeddings.base_url"),
                "{bad}"
            );
        }
    }

    #[test]
    fn server_messages_are_found_cut_and_redacted() {
        let options = OpenAiOptions {
            api_key: Some("sk-secret".into()),
            ..OpenAiOptions::new("http://localhost/v1", "m")
        };
        let inner = Inner {
            endpoint: endpoint(&options.base_url).unwrap(),
            options,
            authorization: None,
            dimension: 1,
            http: reqwest::Client::new(),
        };
        for (answer, want) in [
            (
                r#"{"error":{"message":"bad model","type":"x"}}"#,
                "bad model",
            ),
            (
                r#"{"error":"model \"m\" not found"}"#,
                r#"model "m" not found"#,
            ),
            (
                r#"{"detail":[{"loc":["body","input",0],"msg":"too long","input":"xxxx"}]}"#,
                "too long (at body.input.0)",
            ),
            (r#"{"detail":"Not Found"}"#, "Not Found"),
            ("plain\ntext", "plain text"),
            ("", "(no message)"),
            (
                r#"{"error":"key sk-secret is wrong"}"#,
                "key <redacted> is wrong",
            ),
        ] {
            assert_eq!(inner.server_message(answer.as_bytes()), want);
        }
        let long = "é".repeat(1000);
        let cut = inner.server_message(long.as_bytes());
        assert_eq!(cut.chars().count(), MAX_SERVER_MESSAGE + 1);
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        for attempt in 0..30 {
            let full = INITIAL_BACKOFF
                .saturating_mul(1 << attempt.min(16))
                .min(MAX_BACKOFF);
            let delay = backoff(attempt);
            assert!(delay >= full / 2 && delay <= full, "{attempt}: {delay:?}");
        }
    }

    #[test]
    fn parse_orders_by_index_and_rejects_bad_vectors() {
        let answer = br#"{"data":[{"index":1,"embedding":[0,2]},{"index":0,"embedding":[3,4]}]}"#;
        assert_eq!(
            parse(answer, 2, Some(2)).unwrap(),
            vec![vec![0.6, 0.8], vec![0.0, 1.0]]
        );
        for (answer, count, want) in [
            (
                &br#"{"data":[{"index":0,"embedding":[0,0]}]}"#[..],
                1,
                "all zeros",
            ),
            (
                br#"{"data":[{"index":0,"embedding":[1e300,1]}]}"#,
                1,
                "finite",
            ),
            (
                br#"{"data":[{"index":0,"embedding":[1,2,3]}]}"#,
                1,
                "3 dimensions, not 2",
            ),
            (
                br#"{"data":[{"index":1,"embedding":[1,2]}]}"#,
                1,
                "index 1 for a batch of 1",
            ),
            (
                br#"{"data":[{"index":0,"embedding":[1,2]},{"index":0,"embedding":[1,2]}]}"#,
                2,
                "index 0 twice",
            ),
            (br#"{"data":[]}"#, 1, "0 vectors for 1 texts"),
            (br#"{"error":"x"}"#, 1, "not an embeddings response"),
        ] {
            let reason = parse(answer, count, Some(2)).unwrap_err();
            assert!(reason.contains(want), "{reason}");
        }
    }
}
