//! Wiring of the roles: each connects what it needs, says where it listens and what it
//! connects to, runs until `shutdown`, then finishes what it holds. Binaries and tests call
//! these; all logic lives in the modules they wire.

use std::{collections::HashSet, sync::Arc};

use async_nats::jetstream;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    crypto::Keyring,
    exchange::{self, Exchanger},
    ingress::Ingress,
    ledger::Ledger,
    natsd,
    persistence::{self, PersistenceError},
    sessions::SessionStore,
    settings::{App, Settings},
    topology::{Handles, Topology, TopologyError},
    upserter,
    wechat::{ClientOptions, WechatClient},
};

#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error("cannot connect to NATS at {url}: {reason}")]
    Nats { url: String, reason: String },
    #[error(
        "NATS at {url} is nats-server {version}; wxlogin needs {}.{} or newer (see scripts/install-nats-server.sh)",
        natsd::MIN_VERSION.0, natsd::MIN_VERSION.1
    )]
    OldNats { url: String, version: String },
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error(transparent)]
    Persistence(#[from] PersistenceError),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Runtime(String),
}

fn runtime(e: impl std::fmt::Display) -> RoleError {
    RoleError::Runtime(e.to_string())
}

pub fn topology(settings: &Settings) -> Topology {
    Topology {
        prefix: settings.nats_prefix.clone(),
        replicas: settings.nats_replicas,
        code_ttl: settings.code_ttl(),
        session_ttl: settings.session_ttl(),
    }
}

/// Connects to NATS, checks the server is recent enough, and ensures the streams and buckets.
pub async fn connect_nats(
    settings: &Settings,
    role: &str,
) -> Result<(async_nats::Client, jetstream::Context, Handles), RoleError> {
    let url = settings.nats_url.clone();
    let client = async_nats::ConnectOptions::new()
        .name(format!("wxlogin-{role}"))
        .connection_timeout(std::time::Duration::from_secs(5))
        .connect(url.as_str())
        .await
        .map_err(|e| RoleError::Nats {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    let version = client.server_info().version;
    if natsd::parse_version(&format!("v{version}")).is_none_or(|v| v < natsd::MIN_VERSION) {
        return Err(RoleError::OldNats { url, version });
    }
    let js = jetstream::new(client.clone());
    let handles = topology(settings).ensure(&js).await?;
    tracing::info!(role, nats = %url, server_version = %version, prefix = %settings.nats_prefix, "connected to NATS");
    Ok((client, js, handles))
}

fn wechat_client(settings: &Settings) -> Result<WechatClient, RoleError> {
    let extra_root_ca_pem = match &settings.wechat_ca_file {
        Some(path) => Some(std::fs::read(path).map_err(|e| {
            RoleError::Config(format!(
                "cannot read wechat_ca_file {}: {e}",
                path.display()
            ))
        })?),
        None => None,
    };
    WechatClient::new(ClientOptions {
        base_url: settings.wechat_base_url.clone(),
        extra_root_ca_pem,
        request_timeout: std::time::Duration::from_millis(settings.wechat_timeout_ms),
        ..ClientOptions::default()
    })
    .map_err(runtime)
}

/// `wxlogin ingress`: the HTTP API on `listener`.
pub async fn ingress(
    settings: &Settings,
    keyring: Arc<Keyring>,
    apps: &[App],
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), RoleError> {
    let (client, js, handles) = connect_nats(settings, "ingress").await?;
    let db = persistence::connect(&settings.database_url).await?;
    let appids: HashSet<String> = apps.iter().map(|a| a.appid.clone()).collect();
    let ingress = Ingress::new(
        client,
        js,
        topology(settings),
        appids,
        keyring,
        SessionStore::new(handles.sessions),
        Ledger::new(handles.ledger),
        db,
        settings.login_wait(),
        settings.max_body_bytes,
    );
    let replies = tokio::spawn(ingress.clone().listen_for_replies(shutdown.clone()));
    let addr = listener.local_addr().map_err(runtime)?;
    tracing::info!(%addr, "ingress listening on http://{addr}");
    axum::serve(listener, ingress.router())
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await
        .map_err(runtime)?;
    shutdown.cancel();
    let _ = replies.await;
    tracing::info!("ingress stopped");
    Ok(())
}

/// `wxlogin worker`: one exchange worker process.
pub async fn worker(
    settings: &Settings,
    keyring: Arc<Keyring>,
    apps: &[App],
    shutdown: CancellationToken,
) -> Result<(), RoleError> {
    if apps.is_empty() {
        return Err(RoleError::Config(
            "no apps configured: set WXLOGIN_APPS=appid=secret".into(),
        ));
    }
    let (client, js, handles) = connect_nats(settings, "worker").await?;
    let topo = topology(settings);
    let consumer = handles
        .codes
        .get_or_create_consumer(
            &topo.exchange_consumer(),
            topo.exchange_consumer_config(20_000),
        )
        .await
        .map_err(runtime)?;
    let exchanger = Exchanger::new(
        wechat_client(settings)?,
        apps,
        settings.app_quota,
        keyring,
        Ledger::new(handles.ledger),
        js,
        client,
        topo,
    );
    tracing::info!(
        wechat = %settings.wechat_base_url,
        quota = %settings.app_quota,
        concurrency = settings.worker_concurrency,
        apps = apps.len(),
        "exchange worker started"
    );
    exchange::run(
        Arc::new(exchanger),
        consumer,
        settings.worker_concurrency,
        shutdown,
    )
    .await
    .map_err(runtime)
}

/// `wxlogin upserter`: applies result events to the user table.
pub async fn upserter(settings: &Settings, shutdown: CancellationToken) -> Result<(), RoleError> {
    let (_client, _js, handles) = connect_nats(settings, "upserter").await?;
    let db = persistence::connect(&settings.database_url).await?;
    let topo = topology(settings);
    let consumer = handles
        .results
        .get_or_create_consumer(&topo.upsert_consumer(), topo.upsert_consumer_config())
        .await
        .map_err(runtime)?;
    tracing::info!(database = %persistence::describe_url(&settings.database_url), batch = settings.upsert_batch, "upserter started");
    upserter::run(db, consumer, settings.upsert_batch, shutdown)
        .await
        .map_err(runtime)
}

/// `wxlogin up`: all three roles in one process. The first role to fail stops the others.
pub async fn all_in_one(
    settings: &Settings,
    keyring: Arc<Keyring>,
    apps: &[App],
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), RoleError> {
    // Migrate once before the roles open their pools.
    persistence::migrate(&settings.database_url).await?;
    let stop_all = |r: Result<(), RoleError>| {
        if r.is_err() {
            shutdown.cancel();
        }
        r
    };
    let (a, b, c) = tokio::join!(
        async {
            stop_all(ingress(settings, keyring.clone(), apps, listener, shutdown.clone()).await)
        },
        async { stop_all(worker(settings, keyring.clone(), apps, shutdown.clone()).await) },
        async { stop_all(upserter(settings, shutdown.clone()).await) },
    );
    a.and(b).and(c)
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested: finishing what we hold");
}
