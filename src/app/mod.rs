//! The `wxlogin` command line: each subcommand loads the settings, wires one role from
//! [`roles`] and hands it a shutdown signal.
//! - [`Pipeline`]: what every role shares, connected once; each stage is made from it;
//! - [`connect`]: a process's NATS connection as its identity (credentials, TLS, inbox);
//! - [`nats_auth`]: `wxlogin nats auth`, the seeds and the server's authorization block;
//! - [`roles`]: each role (`ingress`, `worker`, `upserter`, `up`) run until shutdown;
//! - [`dev`]: what only `wxlogin up` does (development key, private nats-server, demo);
//! - [`replay`](mod@replay): `wxlogin replay` (from the stream or a file) and its progress bar;
//! - [`events`]: `wxlogin events export|import|schemas`, events as files and their schemas;
//! - [`parked`](mod@parked): `wxlogin parked list|retry`, the events a stage set aside;
//! - `token`: `wxlogin token status`, the fleet's access_token per appid (never the token);
//! - `session_key`: `wxlogin session-key reset`, a user's new session_key through a worker.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

pub mod connect;
pub mod dev;
pub mod events;
pub mod nats_auth;
pub mod parked;
mod pipeline;
pub mod replay;
pub mod roles;
pub mod session_key;
pub mod token;

pub use pipeline::Pipeline;

use crate::{
    crypto::{Keyring, MasterKey},
    settings::Settings,
    upsert::db,
};
use wxlogin_sim as sim;

#[derive(Debug, Parser)]
#[command(
    name = "wxlogin",
    version,
    about = "WeChat Mini Program login at high volume"
)]
pub struct Cli {
    /// TOML settings file; WXLOGIN_* environment variables override it.
    #[arg(long, global = true, env = "WXLOGIN_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run ingress, worker and upserter in one process (the embedded default).
    Up(UpArgs),
    /// Run the HTTP API.
    Ingress,
    /// Run an exchange worker (run as many as you like).
    Worker,
    /// Run the user-upsert consumer.
    Upserter,
    /// Apply database migrations, create or update the NATS streams and consumers, and exit
    /// (as the admin identity: the roles may not change them).
    Migrate,
    /// Re-feed retained result events (or an export file's) into the user table.
    Replay(ReplayArgs),
    /// Result events as files: export, import, and their JSON Schemas.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Events a stage could not apply (a newer writer's, or refused by the database).
    #[command(subcommand)]
    Parked(parked::ParkedCommand),
    /// NATS security: `wxlogin nats auth --out DIR` writes each role's seed and the
    /// server's authorization block for this prefix.
    #[command(subcommand)]
    Nats(nats_auth::NatsCommand),
    /// The fleet's access_token per appid (`wxlogin token status`): never the token itself.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// `wxlogin session-key reset --appid A --openid O`: have WeChat replace a user's
    /// session_key (through a worker).
    #[command(subcommand)]
    SessionKey(session_key::SessionKeyCommand),
    /// Run the WeChat simulator.
    Sim(sim::SimArgs),
    /// Print a new random master key (base64) for WXLOGIN_MASTER_KEY.
    GenKey,
    /// Print the HTTP API as OpenAPI 3.1 JSON (what GET /openapi.json serves).
    Openapi,
    /// Drive logins against an ingress and report throughput, latency and memory.
    Bench(wxlogin_bench::BenchArgs),
    /// The simplest NATS login pipeline, which `wxlogin bench` runs as its reference.
    #[command(hide = true)]
    BenchReference(wxlogin_bench::reference::ReferenceArgs),
}

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Also start the WeChat simulator with a demo app, and use it instead of WeChat.
    #[arg(long)]
    pub sim: bool,
    /// Where the simulator listens with --sim.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub sim_addr: SocketAddr,
}

/// Where a read of the results stream starts.
#[derive(Debug, clap::Args)]
pub struct FromArgs {
    /// Start at this result-stream sequence (default: the beginning).
    #[arg(long, conflicts_with = "from_time")]
    pub from_seq: Option<u64>,
    /// Start at this time (RFC 3339, e.g. 2026-11-21T00:00:00Z).
    #[arg(long)]
    pub from_time: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub from: FromArgs,
    /// Replay an export file (`wxlogin events export`) instead, straight into the database:
    /// no NATS needed.
    #[arg(long, conflicts_with_all = ["from_seq", "from_time"])]
    pub file: Option<PathBuf>,
    /// With --file: the recording deployment's master key(s), if not this one's.
    #[arg(long, requires = "file")]
    pub key_file: Option<PathBuf>,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Sim(args) = cli.command {
        return Ok(sim::run(args, roles::shutdown_signal()).await?);
    }
    if let Command::GenKey = cli.command {
        println!("{}", MasterKey::generate().to_base64());
        return Ok(());
    }
    if let Command::Openapi = cli.command {
        print!("{}", crate::ingress::openapi::json());
        return Ok(());
    }
    if let Command::Events(events::EventsCommand::Schemas { out }) = cli.command {
        return events::run(&Settings::default(), events::EventsCommand::Schemas { out }).await;
    }
    if let Command::Bench(args) = cli.command {
        wxlogin_bench::run(args).await?;
        return Ok(());
    }
    if let Command::BenchReference(args) = cli.command {
        return wxlogin_bench::reference::serve(args).await;
    }
    let mut settings = Settings::load(cli.config.as_deref())?;
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        roles::shutdown_signal().await;
        on_signal.cancel();
    });
    match cli.command {
        Command::Up(args) => dev::up(&mut settings, args, shutdown).await,
        Command::Ingress => {
            let listener = bind(settings.http_addr).await?;
            let (keyring, apps) = (required_keyring(&settings)?, settings.resolve_apps()?);
            Ok(roles::ingress(&settings, keyring, &apps, listener, shutdown).await?)
        }
        Command::Worker => {
            let (keyring, apps) = (required_keyring(&settings)?, settings.resolve_apps()?);
            serve_metrics(&settings, &shutdown).await?;
            Ok(roles::worker(&settings, keyring, &apps, shutdown).await?)
        }
        Command::Upserter => {
            serve_metrics(&settings, &shutdown).await?;
            Ok(roles::upserter(&settings, shutdown).await?)
        }
        Command::Migrate => {
            // NATS first: a worker refusing a drifted consumer must not wait for the database.
            let pipeline = roles::migrate_nats(&settings).await?;
            tracing::info!(prefix = %settings.nats_prefix, "NATS streams, buckets and consumers applied");
            let url = &settings.database_url;
            crate::upsert::prepare(url, &pipeline.js, &pipeline.topology).await?;
            tracing::info!(database = %db::describe_url(url), "migrations applied");
            Ok(())
        }
        Command::Replay(args) => replay::replay(&settings, args).await,
        Command::Events(command) => events::run(&settings, command).await,
        Command::Parked(command) => parked::run(&settings, command).await,
        Command::Nats(command) => nats_auth::run(&settings, command),
        Command::Token(command) => token::run(&settings, command).await,
        Command::SessionKey(command) => session_key::run(&settings, command).await,
        Command::Sim(_)
        | Command::GenKey
        | Command::Openapi
        | Command::Bench(_)
        | Command::BenchReference(_) => {
            unreachable!("handled above")
        }
    }
}

/// A worker or upserter has no HTTP port of its own: `/metrics` on `metrics_addr` if set.
async fn serve_metrics(settings: &Settings, shutdown: &CancellationToken) -> anyhow::Result<()> {
    let Some(addr) = settings.metrics_addr else {
        return Ok(());
    };
    let listener = bind(addr).await?;
    tokio::spawn(crate::meter::serve(listener, shutdown.clone()));
    Ok(())
}

pub(crate) async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

fn required_keyring(settings: &Settings) -> anyhow::Result<Arc<Keyring>> {
    match settings.keyring()? {
        Some(k) => Ok(Arc::new(k)),
        None => bail!(
            "WXLOGIN_MASTER_KEY (or master_key_file) is required; make one with `wxlogin gen-key`"
        ),
    }
}
