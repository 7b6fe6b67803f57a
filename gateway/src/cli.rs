//! The command line: `p8fs serve`, `p8fs migrate`, `p8fs config show`, `p8fs token issue`,
//! `p8fs keys rotate`.
//! Scripts rely on `--listen`, `--data-dir` and `--config` (and `P8FS_LISTEN`, `P8FS_DATA_DIR`)
//! being accepted by every subcommand, and on `p8fs token issue` printing only the token.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use p8fs_auth::{Issuer, KeyRing, ScopeSet};
use p8fs_core::{Clock, SystemClock, TenantId};

use crate::config::{Config, Overrides};
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
    /// Access tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration as TOML, secrets redacted.
    Show,
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
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a new signing key; old public keys stay published until their tokens expire.
    Rotate {
        /// How long old public keys stay in the JWKS.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        retain: Duration,
    },
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
    let overrides = Overrides {
        listen: cli.common.listen,
        data_dir: cli.common.data_dir.clone(),
    };
    let config = Config::load(cli.common.config.as_deref(), std::env::vars(), &overrides)?;
    match cli.command {
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
        Command::Token(TokenCommand::Issue(args)) => issue(&config, &args),
        Command::Keys(KeysCommand::Rotate { retain }) => {
            let clock: Arc<dyn Clock> = Arc::new(SystemClock);
            let keys = KeyRing::load_or_create(&server::keys_dir(&config), clock)
                .map_err(|e| e.to_string())?;
            let kid = keys.rotate(retain).map_err(|e| e.to_string())?;
            write_stdout(&format!("new signing key {kid}\n"))
        }
    }
}

fn issue(config: &Config, args: &IssueArgs) -> Result<(), String> {
    let tenant = TenantId::new(args.tenant.clone()).map_err(|e| e.to_string())?;
    let scopes = ScopeSet::parse(&args.scope).map_err(|e| e.to_string())?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("cannot create data_dir {}: {e}", config.data_dir.display()))?;
    let keys = Arc::new(
        KeyRing::load_or_create(&server::keys_dir(config), clock.clone())
            .map_err(|e| e.to_string())?,
    );
    let issuer = Issuer::new(keys, server::token_config(config), clock);
    let token = issuer
        .issue(&tenant, &args.sub, &args.client_id, &scopes, args.ttl)
        .map_err(|e| e.to_string())?;
    write_stdout(&format!("{}\n", token.token))
}

fn write_stdout(text: &str) -> Result<(), String> {
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| format!("cannot write to stdout: {e}"))
}
