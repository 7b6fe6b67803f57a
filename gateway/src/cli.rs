//! The command line: `p8fs serve`, `p8fs migrate`, `p8fs config show`, and the admin commands
//! `p8fs token issue`, `p8fs keys ...`, `p8fs user ...`, `p8fs client ...`,
//! `p8fs s3 keys ...` (which reach a running server through its admin socket, see
//! [`crate::admin`]), the OAuth client commands `p8fs login`, `p8fs token` (no subcommand) and
//! `p8fs logout` ([`crate::login`]), which read no local configuration, and `p8fs s3
//! credentials`, which exchanges the token of `p8fs login` for temporary S3 credentials.
//! The vault's commands ([`crate::vault`]): `p8fs models install` puts the builtin embedding
//! model into the configured `embeddings.model_dir`; `p8fs ingest` and `p8fs search` call a
//! server's REST API with the token of `p8fs login` (or `--token`) and, like `p8fs login`, read
//! no local configuration.
//! Scripts rely on `--listen`, `--data-dir` and `--config` (and `P8FS_LISTEN`, `P8FS_DATA_DIR`)
//! being accepted by every subcommand, on `p8fs token issue` printing only the token, and on
//! `p8fs s3 keys create` printing exactly the `AWS_ACCESS_KEY_ID=` and `AWS_SECRET_ACCESS_KEY=`
//! lines.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use p8fs_auth::oauth::NewClient;
use p8fs_core::{Clock, SystemClock};
use serde_json::Value;

use crate::admin::{self, AdminRequest};
use crate::config::{Config, Overrides, StorageConfig};
use crate::server;

/// p8fs: the memory-vault gateway.
///
/// Start with `p8fs serve` (RocksDB in ./p8fs-data, listening on 127.0.0.1:8080), then mint a
/// token with `p8fs token issue --tenant default --sub me --scope 'kv:read kv:write'` and call
/// the REST API with `Authorization: Bearer <token>`.
#[derive(Debug, Parser)]
#[command(name = "p8fs", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand accepts.
#[derive(Debug, Args)]
struct Common {
    /// A TOML configuration file.
    #[arg(long, global = true, env = "P8FS_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on (overrides P8FS_LISTEN and the file).
    #[arg(long, global = true, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Address of the S3 listener (overrides P8FS_S3_LISTEN and the file's `s3.listen`).
    #[arg(long, global = true, value_name = "ADDR")]
    s3_listen: Option<SocketAddr>,
    /// Directory for local state: RocksDB data and signing keys (overrides P8FS_DATA_DIR).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve,
    /// Apply the storage backend's schema migrations and exit (they also run on `serve`).
    Migrate,
    /// Show configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Sign in to a server with the device flow (RFC 8628) and keep the tokens for `p8fs token`.
    Login(crate::login::LoginArgs),
    /// Access tokens: with no subcommand, print a valid access token of `p8fs login`
    /// (refreshed when it expires within a minute).
    #[command(args_conflicts_with_subcommands = true)]
    Token(TokenCli),
    /// Revoke the tokens of `p8fs login` and forget them.
    Logout(crate::login::LogoutArgs),
    /// MCP over stdio for a desktop assistant, relayed to a server's `/mcp` with the token of
    /// `p8fs login --resource <server>/mcp` (or `--token`).
    Mcp(crate::mcp_stdio::McpArgs),
    /// Signing keys, and the master key of encryption at rest.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Users who sign in to the OAuth pages (each belongs to one tenant).
    #[command(subcommand)]
    User(UserCommand),
    /// OAuth clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// S3 credentials: access keys of a tenant, and temporary credentials after `p8fs login`.
    #[command(subcommand)]
    S3(S3Command),
    /// The builtin embedding model (all-MiniLM-L6-v2) that memories and search use.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Upload files and directories to a bucket for search by meaning (skips what is already
    /// stored unchanged); --wait then follows their indexing.
    Ingest(crate::vault::IngestArgs),
    /// Find the chunks of memories and uploaded files nearest in meaning to a question.
    Search(crate::vault::SearchArgs),
    /// Run the edge: a reverse proxy (pingora) in front of several `p8fs serve` nodes that
    /// share one database; `--listen` is the edge's address, `--s3-listen` its S3 listener
    /// (both override `[edge]` in the file).
    Edge(EdgeArgs),
}

/// `p8fs edge`: what overrides the file's `[edge]`.
#[derive(Debug, Args)]
struct EdgeArgs {
    /// A gateway node's main listener, repeatable (replaces `edge.upstreams`).
    #[arg(long = "upstream", value_name = "ADDR")]
    upstreams: Vec<SocketAddr>,
    /// A gateway node's S3 listener, repeatable (replaces `edge.s3_upstreams`).
    #[arg(long = "s3-upstream", value_name = "ADDR")]
    s3_upstreams: Vec<SocketAddr>,
    /// How a node is chosen: round_robin or least_connections.
    #[arg(long, value_name = "POLICY")]
    balance: Option<p8fs_edge::Balance>,
    /// Send each tenant to the same node while it is up.
    #[arg(long)]
    hash_by_tenant: bool,
    /// A TLS listener for the same nodes, with --tls-cert and --tls-key (PEM files).
    #[arg(long, value_name = "ADDR")]
    tls_listen: Option<SocketAddr>,
    /// The TLS listener's certificate chain (PEM).
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The TLS listener's private key (PEM).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
}

impl EdgeArgs {
    fn apply(self, common: &Common, edge: &mut p8fs_edge::EdgeConfig) {
        if let Some(listen) = common.listen {
            edge.listen = listen;
        }
        if let Some(listen) = common.s3_listen {
            edge.s3_listen = Some(listen);
        }
        if !self.upstreams.is_empty() {
            edge.upstreams = self.upstreams;
        }
        if !self.s3_upstreams.is_empty() {
            edge.s3_upstreams = self.s3_upstreams;
        }
        if let Some(balance) = self.balance {
            edge.balance = balance;
        }
        edge.hash_by_tenant |= self.hash_by_tenant;
        if self.tls_listen.is_some() {
            edge.tls_listen = self.tls_listen;
        }
        if self.tls_cert.is_some() {
            edge.tls_cert = self.tls_cert;
        }
        if self.tls_key.is_some() {
            edge.tls_key = self.tls_key;
        }
    }
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Install model.safetensors, tokenizer.json and config.json into embeddings.model_dir,
    /// from --from DIR or the Hugging Face hub, each checked against its pinned SHA-256.
    Install(crate::vault::ModelsInstallArgs),
}

#[derive(Debug, Subcommand)]
enum S3Command {
    /// Access keys: each belongs to one tenant and carries s3:read, s3:write or both.
    #[command(subcommand)]
    Keys(S3KeysCommand),
    /// Exchange the access token of `p8fs login` for temporary S3 credentials (STS
    /// AssumeRoleWithWebIdentity on the S3 endpoint); prints `export AWS_...` lines, or writes
    /// an AWS CLI profile with --profile.
    Credentials(crate::login::S3CredentialsArgs),
    /// Print the bytes of object data a tenant stores, as a JSON line
    /// (`{"tenant":...,"stored_bytes":...}`): every chunk, committed, being uploaded or freed
    /// and awaiting the reaper.
    Usage {
        /// The tenant.
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Debug, Subcommand)]
enum S3KeysCommand {
    /// Create an access key; prints `AWS_ACCESS_KEY_ID=...` and `AWS_SECRET_ACCESS_KEY=...`
    /// (the secret is shown only this once).
    Create {
        /// The tenant the key acts in.
        #[arg(long)]
        tenant: String,
        /// A scope of the key, repeatable: s3:read, s3:write (default: both).
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// A note for `p8fs s3 keys list`.
        #[arg(long)]
        description: Option<String>,
    },
    /// List access keys as JSON lines (never their secrets).
    List {
        /// Only the keys of this tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke an access key: requests signed with it fail from now on.
    Revoke {
        /// The access key id.
        access_key_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration as TOML, secrets redacted.
    Show,
}

#[derive(Debug, Args)]
struct TokenCli {
    #[command(subcommand)]
    command: Option<TokenCommand>,
    #[command(flatten)]
    stored: crate::login::TokenArgs,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Mint an access token with the local signing key; prints only the token.
    Issue(IssueArgs),
}

#[derive(Debug, Args)]
struct IssueArgs {
    /// The tenant the token acts in.
    #[arg(long)]
    tenant: String,
    /// The subject (user or service) the token names.
    #[arg(long)]
    sub: String,
    /// Space-separated scopes, e.g. 'kv:read kv:write'.
    #[arg(long)]
    scope: String,
    /// Lifetime, e.g. 15m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// The client id recorded in the token.
    #[arg(long, default_value = "p8fs-cli")]
    client_id: String,
    /// The token's audience: a resource URI such as the MCP endpoint's (`<issuer>/mcp`, whose
    /// tokens must name it); the configured audience of the other front-ends by default.
    #[arg(long)]
    audience: Option<String>,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a new signing key; old public keys stay published until their tokens expire.
    Rotate {
        /// How long old public keys stay in the JWKS.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        retain: Duration,
    },
    /// Make a new master key (encryption at rest) current and re-wrap every tenant's data key
    /// under it, online; the old keys stay in the key file, retired. With P8FS_MASTER_KEY,
    /// re-wraps under its first key.
    RotateMaster,
    /// Drop the retired master keys from the key file once every data key is wrapped by the
    /// current one (re-wrapping first); refused while any data key still needs one. Keep a copy
    /// of the retired keys as long as backups taken before the rotation. With P8FS_MASTER_KEY,
    /// names the keys that may be removed from it.
    PruneMaster,
    /// Rewrite what the store holds in the clear (written before encryption was on) or in an
    /// older ciphertext format in the current one, online, tenant by tenant: one JSON line per
    /// tenant, then the totals. Tenants done by an earlier run are skipped, so an interrupted
    /// run resumes; multipart uploads in progress are sealed when completed.
    Reseal {
        /// Only this tenant (again, even if an earlier run did it).
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user; the password is read from stdin (--password-stdin) or prompted for.
    Add {
        /// The tenant the user's tokens act in.
        #[arg(long)]
        tenant: String,
        /// The sign-in name: 1..=64 of a-z, 0-9, '.', '_', '-'.
        username: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Set a user's password.
    Passwd {
        username: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Disable a user: no sign-in, no token refresh.
    Disable { username: String },
    /// Enable a disabled user again.
    Enable { username: String },
    /// List users.
    List,
}

#[derive(Debug, Args)]
struct PasswordArgs {
    /// Read the password from the first line of stdin instead of prompting.
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Register a client; prints it as JSON, with the secret of a confidential client (shown
    /// only this once).
    Add(ClientAddArgs),
    /// List clients as JSON lines.
    List,
    /// Remove a client.
    Remove { client_id: String },
}

#[derive(Debug, Args)]
struct ClientAddArgs {
    /// A name users see on the approval pages.
    #[arg(long)]
    name: String,
    /// A confidential client (gets a secret); otherwise public.
    #[arg(long)]
    confidential: bool,
    /// An allowed redirect URI (exact match), repeatable.
    #[arg(long = "redirect-uri", value_name = "URI")]
    redirect_uris: Vec<String>,
    /// An allowed grant type, repeatable (default: by client kind).
    #[arg(long = "grant-type", value_name = "GRANT")]
    grant_types: Vec<String>,
    /// Allowed scopes, space-separated.
    #[arg(
        long,
        default_value = "kv:read kv:write vectors:read vectors:write graph:read graph:write"
    )]
    scope: String,
    /// The tenant a client_credentials client acts in.
    #[arg(long)]
    tenant: Option<String>,
    /// A chosen client id (default: generated).
    #[arg(long)]
    client_id: Option<String>,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "p8fs: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    // The OAuth client commands talk to a server by URL and read no local configuration.
    let command = match cli.command {
        Command::Login(args) => return crate::login::login(args),
        Command::Logout(args) => return crate::login::logout(args),
        Command::Mcp(args) => return crate::mcp_stdio::run(args),
        Command::Ingest(args) => return crate::vault::ingest(args),
        Command::Search(args) => return crate::vault::search(args),
        Command::Token(TokenCli {
            command: None,
            stored,
        }) => return crate::login::token(stored),
        command => command,
    };
    let overrides = Overrides {
        listen: cli.common.listen,
        s3_listen: cli.common.s3_listen,
        data_dir: cli.common.data_dir.clone(),
    };
    let config = Config::load(cli.common.config.as_deref(), std::env::vars(), &overrides)?;
    if uses_data_dir(&command, &config) {
        server::private_data_dir(&config)?;
    }
    match command {
        Command::Edge(args) => {
            let mut edge = config.edge.clone();
            args.apply(&cli.common, &mut edge);
            server::init_logging(&config);
            p8fs_edge::run(edge).map_err(|e| e.to_string())
        }
        Command::Serve => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the runtime: {e}"))?;
            runtime.block_on(server::serve(config))
        }
        Command::Migrate => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the runtime: {e}"))?;
            let clock: Arc<dyn Clock> = Arc::new(SystemClock);
            runtime.block_on(crate::backend::open(&config, clock))?;
            write_stdout(&format!(
                "storage {} is migrated\n",
                crate::backend::provider_name(&config.storage)
            ))
        }
        Command::Config(ConfigCommand::Show) => {
            let text = toml::to_string_pretty(&config)
                .map_err(|e| format!("cannot print the configuration: {e}"))?;
            write_stdout(&text)
        }
        Command::Login(_)
        | Command::Logout(_)
        | Command::Mcp(_)
        | Command::Ingest(_)
        | Command::Search(_) => Err("handled above".into()),
        Command::Models(ModelsCommand::Install(args)) => {
            let configured = config.embeddings.model_dir(&config.data_dir);
            crate::vault::models_install(args, configured)
        }
        Command::Token(TokenCli { command: None, .. }) => Err("handled above".into()),
        Command::Token(TokenCli {
            command: Some(TokenCommand::Issue(args)),
            ..
        }) => {
            let token = admin::run(
                &config,
                AdminRequest::TokenIssue {
                    tenant: args.tenant,
                    sub: args.sub,
                    scope: args.scope,
                    ttl_seconds: args.ttl.as_secs(),
                    client_id: args.client_id,
                    audience: args.audience,
                },
            )?;
            write_stdout(&format!("{}\n", token.as_str().unwrap_or_default()))
        }
        Command::Keys(KeysCommand::RotateMaster) => {
            let reply = admin::run(&config, AdminRequest::MasterRotate)?;
            write_stdout(&format!("{reply}\n"))
        }
        Command::Keys(KeysCommand::PruneMaster) => {
            let reply = admin::run(&config, AdminRequest::MasterPrune)?;
            write_stdout(&format!("{reply}\n"))
        }
        Command::Keys(KeysCommand::Reseal { tenant }) => reseal(&config, tenant),
        Command::Keys(KeysCommand::Rotate { retain }) => {
            let reply = admin::run(
                &config,
                AdminRequest::KeysRotate {
                    retain_seconds: retain.as_secs(),
                },
            )?;
            write_stdout(&format!(
                "new signing key {}\n",
                reply["kid"].as_str().unwrap_or("?")
            ))
        }
        Command::User(command) => user(&config, command),
        Command::Client(command) => client(&config, command),
        Command::S3(S3Command::Keys(command)) => s3_keys(&config, command),
        Command::S3(S3Command::Usage { tenant }) => {
            let usage = admin::run(&config, AdminRequest::S3Usage { tenant })?;
            write_stdout(&format!("{usage}\n"))
        }
        Command::S3(S3Command::Credentials(args)) => {
            let endpoint = args
                .endpoint_url
                .clone()
                .or_else(|| default_s3_endpoint(&config));
            crate::login::s3_credentials(args, endpoint)
        }
    }
}

/// The S3 endpoint of the configured S3 listener, `http://HOST:PORT` (an unspecified address
/// is reached on loopback); `None` when S3 is off or its port is chosen at start.
fn default_s3_endpoint(config: &Config) -> Option<String> {
    if !config.s3.enabled {
        return None;
    }
    let address = config.s3_listen();
    if address.port() == 0 {
        return None;
    }
    let ip = match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Some(format!("http://{}", SocketAddr::new(ip, address.port())))
}

fn s3_keys(config: &Config, command: S3KeysCommand) -> Result<(), String> {
    match command {
        S3KeysCommand::Create {
            tenant,
            scopes,
            description,
        } => {
            let scope = if scopes.is_empty() {
                "s3:read s3:write".to_owned()
            } else {
                scopes.join(" ")
            };
            let created = admin::run(
                config,
                AdminRequest::S3KeyCreate {
                    tenant,
                    scope,
                    description,
                },
            )?;
            let field = |name: &str| {
                created[name]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("the server's reply has no {name}"))
            };
            let id = field("access_key_id")?;
            let secret = field("secret_access_key")?;
            write_stdout(&format!(
                "AWS_ACCESS_KEY_ID={id}\nAWS_SECRET_ACCESS_KEY={secret}\n"
            ))
        }
        S3KeysCommand::List { tenant } => {
            write_lines(admin::run(config, AdminRequest::S3KeyList { tenant })?)
        }
        S3KeysCommand::Revoke { access_key_id } => {
            admin::run(config, AdminRequest::S3KeyRevoke { access_key_id })?;
            Ok(())
        }
    }
}

/// Whether `command` opens the data directory (keys, admin socket, RocksDB store), which must
/// then be owner-only.
fn uses_data_dir(command: &Command, config: &Config) -> bool {
    match command {
        Command::Config(_)
        | Command::Login(_)
        | Command::Logout(_)
        | Command::Mcp(_)
        | Command::Models(_)
        | Command::Ingest(_)
        | Command::Search(_)
        | Command::Edge(_)
        | Command::S3(S3Command::Credentials(_)) => false,
        Command::Migrate => matches!(config.storage, StorageConfig::Rocksdb { .. }),
        Command::Serve
        | Command::Token(_)
        | Command::Keys(_)
        | Command::User(_)
        | Command::Client(_)
        | Command::S3(S3Command::Keys(_) | S3Command::Usage { .. }) => true,
    }
}

fn user(config: &Config, command: UserCommand) -> Result<(), String> {
    match command {
        UserCommand::Add {
            tenant,
            username,
            password,
        } => {
            let password = read_password(&password)?;
            let user = admin::run(
                config,
                AdminRequest::UserAdd {
                    tenant,
                    username,
                    password,
                },
            )?;
            write_stdout(&format!("{user}\n"))
        }
        UserCommand::Passwd { username, password } => {
            let password = read_password(&password)?;
            let reply = admin::run(config, AdminRequest::UserPasswd { username, password })?;
            report_revoked(&reply);
            Ok(())
        }
        UserCommand::Disable { username } => {
            let reply = admin::run(
                config,
                AdminRequest::UserDisable {
                    username,
                    disabled: true,
                },
            )?;
            report_revoked(&reply);
            Ok(())
        }
        UserCommand::Enable { username } => {
            admin::run(
                config,
                AdminRequest::UserDisable {
                    username,
                    disabled: false,
                },
            )?;
            Ok(())
        }
        UserCommand::List => write_lines(admin::run(config, AdminRequest::UserList)?),
    }
}

fn client(config: &Config, command: ClientCommand) -> Result<(), String> {
    match command {
        ClientCommand::Add(args) => {
            let client = NewClient {
                client_id: args.client_id,
                name: args.name,
                confidential: args.confidential,
                redirect_uris: args.redirect_uris,
                grant_types: args.grant_types,
                scope: args.scope,
                tenant: args.tenant,
            };
            let created = admin::run(config, AdminRequest::ClientAdd { client })?;
            write_stdout(&format!("{created}\n"))
        }
        ClientCommand::List => write_lines(admin::run(config, AdminRequest::ClientList)?),
        ClientCommand::Remove { client_id } => {
            admin::run(config, AdminRequest::ClientRemove { client_id })?;
            Ok(())
        }
    }
}

/// Tells the operator how many sign-ins a user command ended.
fn report_revoked(reply: &serde_json::Value) {
    let revoked = reply["revoked_families"].as_u64().unwrap_or(0);
    let _ = writeln!(
        std::io::stderr(),
        "revoked the tokens of {revoked} sign-in(s)"
    );
}

/// Prints each element of a JSON array on its own line.
fn write_lines(list: serde_json::Value) -> Result<(), String> {
    let mut text = String::new();
    for item in list.as_array().into_iter().flatten() {
        text.push_str(&item.to_string());
        text.push('\n');
    }
    write_stdout(&text)
}

/// The password from stdin's first line, or prompted for twice on a terminal.
fn read_password(args: &PasswordArgs) -> Result<String, String> {
    use std::io::IsTerminal;
    if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_owned());
    }
    if !std::io::stdin().is_terminal() {
        return Err("no terminal to ask for the password on: pass --password-stdin".into());
    }
    let first = rpassword::prompt_password("password: ")
        .map_err(|e| format!("cannot read the password: {e}"))?;
    let second = rpassword::prompt_password("again: ")
        .map_err(|e| format!("cannot read the password: {e}"))?;
    if first != second {
        return Err("the passwords differ".into());
    }
    Ok(first)
}

/// `p8fs keys reseal`: every tenant not resealed yet (or `only`), one request each, then a
/// compaction of what the rewrites left in the store's files.
fn reseal(config: &Config, only: Option<String>) -> Result<(), String> {
    let (tenants, skipped) = match only {
        Some(tenant) => (vec![tenant], 0),
        None => {
            let listed = admin::run(config, AdminRequest::ResealTenants)?;
            let listed = listed.as_array().cloned().unwrap_or_default();
            let mut todo = Vec::new();
            for entry in &listed {
                if entry["resealed"] != Value::Bool(true)
                    && let Some(tenant) = entry["tenant"].as_str()
                {
                    todo.push(tenant.to_owned());
                }
            }
            let skipped = listed.len() - todo.len();
            (todo, skipped)
        }
    };
    let mut totals = serde_json::Map::new();
    let mut overwritten = Vec::new();
    let mut incomplete = Vec::new();
    for tenant in &tenants {
        let done = admin::run(
            config,
            AdminRequest::Reseal {
                tenant: tenant.clone(),
            },
        )?;
        write_stdout(&format!("{done}\n"))?;
        for field in ["examined", "rewritten", "chunks", "uploads_pending"] {
            let sum = totals.get(field).and_then(Value::as_u64).unwrap_or(0)
                + done[field].as_u64().unwrap_or(0);
            totals.insert(field.to_owned(), sum.into());
        }
        for name in done["overwritten"].as_array().into_iter().flatten() {
            overwritten.push(format!("tenant {tenant}: {}", name.as_str().unwrap_or("?")));
        }
        if done["complete"] != Value::Bool(true) {
            incomplete.push(tenant.clone());
        }
    }
    admin::run(config, AdminRequest::StorageCompact)?;
    totals.insert("tenants".to_owned(), tenants.len().into());
    totals.insert("skipped".to_owned(), skipped.into());
    totals.insert("incomplete".to_owned(), incomplete.into());
    write_stdout(&format!("{}\n", Value::Object(totals)))?;
    if !overwritten.is_empty() {
        return Err(format!(
            "clients wrote these records while they were being resealed, and the reseal may \
             have replaced that write with the earlier value; check them: {}",
            overwritten.join(", ")
        ));
    }
    Ok(())
}

fn write_stdout(text: &str) -> Result<(), String> {
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| format!("cannot write to stdout: {e}"))
}
