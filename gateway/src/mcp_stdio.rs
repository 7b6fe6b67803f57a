//! `p8fs mcp --stdio`: the MCP endpoint of a p8fs server for a desktop assistant that launches
//! a local process. Newline-delimited JSON-RPC on stdin and stdout (the MCP stdio transport) is
//! relayed to `<server>/mcp` over streamable HTTP: each message one `POST`, its answer (JSON or
//! the events of an SSE stream) written back one message per line, the `Mcp-Session-Id` of an
//! `initialize` kept and sent on, and closed with a `DELETE` at the end of input. Logs go to
//! stderr only; stdout carries nothing but protocol messages.
//!
//! The token is `--token` (or `P8FS_TOKEN`), else the login for the resource `<server>/mcp`
//! (`p8fs login --issuer <server> --resource <server>/mcp`), refreshed before each message when
//! it is about to expire. A message the server refuses (401, 403, 5xx) is answered with a
//! JSON-RPC error naming the status, so the assistant shows why.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use p8fs_core::{Clock, SystemClock};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::login::{access_token, check_url, credentials_path, normalise_issuer, read_credentials};
use crate::vault::ServerArgs;

/// The largest message read from stdin, in bytes (the server's default body limit).
const MAX_LINE_BYTES: usize = p8fs_mcp::DEFAULT_MAX_BODY_BYTES;
/// How long one message may take, its answer included (a `recall` embeds; a `read_file` of a
/// large PDF extracts).
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(300);
/// JSON-RPC's code for an error of the server or the relay (implementation-defined range).
const RELAY_ERROR: i64 = -32000;

/// `p8fs mcp`.
#[derive(Debug, clap::Args)]
pub struct McpArgs {
    /// Relay MCP over stdin and stdout (the only mode: a desktop assistant launches it).
    #[arg(long)]
    pub stdio: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Where the relay's token comes from.
enum Token {
    Fixed(String),
    Login { resource: String },
}

/// `p8fs mcp --stdio`.
pub fn run(args: McpArgs) -> Result<(), String> {
    if !args.stdio {
        return Err("p8fs mcp serves over stdio only: pass --stdio (the HTTP endpoint is /mcp of `p8fs serve`)".into());
    }
    let path = credentials_path(|name| std::env::var_os(name))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(relay(args.server, &path, clock))
}

async fn relay(args: ServerArgs, path: &Path, clock: Arc<dyn Clock>) -> Result<(), String> {
    let server = match &args.server {
        Some(server) => normalise_issuer(server),
        None => crate::login::pick_issuer(&read_credentials(path)?, None)
            .map_err(|e| format!("{e}; or pass --server URL"))?,
    };
    check_url("the server", &server)?;
    let endpoint = format!("{server}{}", p8fs_mcp::MCP_PATH);
    let token = match args.token.filter(|t| !t.trim().is_empty()) {
        Some(token) => Token::Fixed(token.trim().to_owned()),
        None => Token::Login {
            resource: endpoint.clone(),
        },
    };
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(MESSAGE_TIMEOUT)
        .user_agent(concat!("p8fs-mcp-stdio/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
    let mut relay = Relay {
        http,
        endpoint,
        token,
        path: path.to_owned(),
        clock,
        session: None,
        protocol_version: None,
    };
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => return Err(format!("cannot read stdin: {e}")),
        };
        if line.trim().is_empty() {
            continue;
        }
        let answers = relay.forward(&line).await;
        let mut stdout = std::io::stdout().lock();
        for answer in answers {
            writeln!(stdout, "{answer}").map_err(|e| format!("cannot write stdout: {e}"))?;
        }
        stdout
            .flush()
            .map_err(|e| format!("cannot write stdout: {e}"))?;
    }
    relay.close().await;
    Ok(())
}

struct Relay {
    http: reqwest::Client,
    endpoint: String,
    token: Token,
    path: std::path::PathBuf,
    clock: Arc<dyn Clock>,
    /// The session an `initialize` opened.
    session: Option<String>,
    /// The protocol version `initialize` negotiated.
    protocol_version: Option<String>,
}

impl Relay {
    async fn token(&self) -> Result<String, String> {
        match &self.token {
            Token::Fixed(token) => Ok(token.clone()),
            Token::Login { resource } => access_token(Some(resource), &self.path, self.clock.clone())
                .await
                .map_err(|e| {
                    format!("{e} (sign in for MCP with `p8fs login --issuer <server> --resource {resource}`)")
                }),
        }
    }

    /// Relays one message; what to write back (nothing for a notification the server took).
    async fn forward(&mut self, line: &str) -> Vec<Value> {
        if line.len() > MAX_LINE_BYTES {
            return vec![error(
                Value::Null,
                -32600,
                format!("a message is at most {MAX_LINE_BYTES} bytes"),
            )];
        }
        let message: Value = match serde_json::from_str(line) {
            Ok(message) => message,
            Err(e) => return vec![error(Value::Null, -32700, format!("not JSON: {e}"))],
        };
        let id = message.get("id").cloned();
        let is_initialize = message.get("method").and_then(Value::as_str) == Some("initialize");
        match self.post(line, &message).await {
            Ok((headers, answers)) => {
                if is_initialize {
                    if let Some(session) =
                        headers.get("mcp-session-id").and_then(|v| v.to_str().ok())
                    {
                        self.session = Some(session.to_owned());
                    }
                    self.protocol_version = answers
                        .iter()
                        .find_map(|a| a.pointer("/result/protocolVersion"))
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                }
                answers
            }
            Err(reason) => match id {
                Some(id) => vec![error(id, RELAY_ERROR, reason)],
                None => {
                    tracing::warn!(%reason, "a notification was not relayed");
                    Vec::new()
                }
            },
        }
    }

    async fn post(&self, line: &str, message: &Value) -> Result<(HeaderMap, Vec<Value>), String> {
        let token = self.token().await?;
        let mut request = self
            .http
            .post(&self.endpoint)
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .body(line.to_owned());
        if let Some(session) = &self.session {
            request = request.header("mcp-session-id", session);
        }
        // The version a request names for itself (2026-07-28), else the one negotiated.
        let version = message
            .pointer("/params/_meta/io.modelcontextprotocol~1protocolVersion")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| self.protocol_version.clone());
        if let Some(version) = version {
            request = request.header("mcp-protocol-version", version);
            if let Some(method) = message.get("method").and_then(Value::as_str) {
                request = request.header("mcp-method", method);
                let name = match method {
                    "tools/call" | "prompts/get" => message.pointer("/params/name"),
                    "resources/read" => message.pointer("/params/uri"),
                    _ => None,
                };
                if let Some(name) = name.and_then(Value::as_str) {
                    request = request.header("mcp-name", name);
                }
            }
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("cannot reach {}: {e}", self.endpoint))?;
        let status = response.status();
        let headers = response.headers().clone();
        let is_sse = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let body = response
            .text()
            .await
            .map_err(|e| format!("cannot read the answer of {}: {e}", self.endpoint))?;
        if !status.is_success() {
            let challenge = headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            let body: String = body.chars().take(500).collect();
            return Err(format!("the server answered {status}{challenge}: {body}"));
        }
        let answers = if is_sse {
            events(&body)
        } else if body.trim().is_empty() {
            Vec::new()
        } else {
            vec![
                serde_json::from_str(&body)
                    .map_err(|e| format!("the server's answer is not JSON: {e}"))?,
            ]
        };
        Ok((headers, answers))
    }

    /// Ends the session, if one was opened.
    async fn close(&self) {
        let Some(session) = &self.session else {
            return;
        };
        let Ok(token) = self.token().await else {
            return;
        };
        let _ = self
            .http
            .delete(&self.endpoint)
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .header("mcp-session-id", session)
            .send()
            .await;
    }
}

/// The JSON messages of an SSE body: each event's `data` lines joined; empty data (rmcp's
/// priming event) skipped.
fn events(body: &str) -> Vec<Value> {
    let mut messages = Vec::new();
    let mut data = String::new();
    for line in body.lines().chain(std::iter::once("")) {
        if line.is_empty() {
            if !data.trim().is_empty()
                && let Ok(message) = serde_json::from_str(&data)
            {
                messages.push(message);
            }
            data.clear();
        } else if let Some(value) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    messages
}

fn error(id: Value, code: i64, message: String) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_become_messages() {
        let body = "data: \nid: 0\nretry: 3000\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\nid: 1\n\n";
        assert_eq!(
            events(body),
            vec![json!({"jsonrpc": "2.0", "id": 1, "result": {}})]
        );
        let split = "data: {\"a\":\ndata: 1}\n";
        assert_eq!(events(split), vec![json!({"a": 1})]);
    }
}
