//! Wiring of the roles: each connects what it needs, says where it listens and what it
//! connects to, runs until `shutdown`, then finishes what it holds. Binaries and tests call
//! these; all logic lives in the modules they wire.

use std::sync::Arc;

use async_nats::jetstream;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Pipeline;
use crate::{
    contract::{access::Identity, topology::TopologyError},
    crypto::Keyring,
    exchange,
    settings::{App, Settings},
    upsert,
    upsert::db::{self, PersistenceError},
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

/// `wxlogin ingress`: the HTTP API on `listener`.
pub async fn ingress(
    settings: &Settings,
    keyring: Arc<Keyring>,
    apps: &[App],
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), RoleError> {
    crate::meter::install();
    let pipeline = tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        r = Pipeline::connect(settings, Identity::Ingress) => r?,
    };
    // Never migrated nor waited for: the ingress only reports the database in `/readyz`.
    let database = Some(db::Probe::new(&settings.database_url));
    let ingress = pipeline.ingress(keyring, apps, database);
    // Its own stop, after the server's: logins still in flight at SIGTERM get their replies.
    let replies_stop = CancellationToken::new();
    let replies = tokio::spawn(ingress.clone().listen_for_replies(replies_stop.clone()));
    let addr = listener.local_addr().map_err(runtime)?;
    tracing::info!(%addr, "ingress listening on http://{addr}");
    axum::serve(
        listener,
        // The peer address feeds the per-client login quota.
        ingress
            .router()
            .into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned())
    .await
    .map_err(runtime)?;
    replies_stop.cancel();
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
    let pipeline = tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        r = Pipeline::connect(settings, Identity::Worker) => r?,
    };
    // Before the limiters are made: they hold their metric handles.
    crate::meter::install();
    let topo = &pipeline.topology;
    let (stream, name) = (&pipeline.handles.codes, topo.exchange_consumer());
    let config = topo.exchange_consumer_config();
    let Some(consumer) = durable(stream, name, config, &shutdown).await? else {
        return Ok(());
    };
    let exchanger = Arc::new(pipeline.exchanger(keyring, apps)?);
    crate::meter::app_quota(settings.app_quota);
    let pauses = tokio::spawn(exchanger.clone().follow_fleet_pauses());
    // Session-key checks and resets, answered until the worker stops taking codes.
    let calls_stop = shutdown.child_token();
    let calls = tokio::spawn(exchange::answer_calls(
        exchanger.clone(),
        calls_stop.clone(),
    ));
    tracing::info!(
        wechat = %settings.wechat_base_url,
        quota = %settings.app_quota,
        concurrency = settings.worker_concurrency,
        apps = apps.len(),
        "exchange worker started"
    );
    let result = exchange::run(
        exchanger,
        consumer,
        settings.worker_concurrency,
        settings.worker_drain(),
        shutdown,
    )
    .await
    .map_err(runtime);
    pauses.abort();
    calls_stop.cancel();
    if let Ok(Err(e)) = calls.await {
        tracing::warn!(error = %e, "the worker could not answer session-key calls");
    }
    result
}

/// `wxlogin upserter`: applies result events to the user table.
pub async fn upserter(settings: &Settings, shutdown: CancellationToken) -> Result<(), RoleError> {
    // Without a master key the upserter still applies events; it cannot sign for services.
    let keyring = settings
        .keyring()
        .map_err(|e| RoleError::Config(e.to_string()))?
        .map(Arc::new);
    upserter_in(settings, keyring, shutdown, Backfill::LeftToMigrate).await
}

/// Who records the login history an upgrade needs from the results stream: it reads the
/// stream with a consumer of its own, which only the admin may create (`wxlogin migrate`, and
/// `wxlogin up`, which runs as the admin).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backfill {
    Here,
    LeftToMigrate,
}

async fn upserter_in(
    settings: &Settings,
    keyring: Option<Arc<Keyring>>,
    shutdown: CancellationToken,
    backfill: Backfill,
) -> Result<(), RoleError> {
    let pipeline = tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        r = Pipeline::connect(settings, Identity::Upserter) => r?,
    };
    crate::meter::install();
    let topo = &pipeline.topology;
    let (stream, name) = (&pipeline.handles.results, topo.upsert_consumer());
    let config = topo.upsert_consumer_config();
    let Some(consumer) = durable(stream, name, config, &shutdown).await? else {
        return Ok(());
    };
    let Some(db) = database(&pipeline, &shutdown, backfill).await? else {
        return Ok(());
    };
    tracing::info!(database = %db::describe_url(&settings.database_url), batch = settings.upsert_batch, "upserter started");
    let signing = match keyring {
        Some(keyring) => Some(tokio::spawn(upsert::sign::answer_signing(
            db.clone(),
            keyring,
            pipeline.nats.clone(),
            pipeline.topology.clone(),
            shutdown.child_token(),
        ))),
        None => {
            tracing::warn!("no master key: the upserter does not sign for services");
            None
        }
    };
    let upserter = upsert::Upserter {
        db,
        js: pipeline.js.clone(),
        topology: pipeline.topology.clone(),
        batch_size: settings.upsert_batch,
    };
    let result = upsert::run(upserter, consumer, shutdown)
        .await
        .map_err(runtime);
    if let Some(signing) = signing {
        signing.abort();
    }
    result
}

/// The upserter's database, migrated (and backfilled on an upgrade, where `backfill` says so:
/// otherwise such an upgrade is refused, naming `wxlogin migrate`); while it is away the
/// upserter waits for it (logins go on, their results wait in the stream), for as long as it
/// takes. A migration that fails is not waited for: it needs an operator. `None` if shut down.
async fn database(
    pipeline: &Pipeline,
    shutdown: &CancellationToken,
    backfill: Backfill,
) -> Result<Option<sea_orm::DatabaseConnection>, RoleError> {
    let url = &pipeline.settings.database_url;
    let mut wait = std::time::Duration::from_millis(500);
    loop {
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            r = async {
                match backfill {
                    Backfill::Here => upsert::prepare(url, &pipeline.js, &pipeline.topology).await,
                    Backfill::LeftToMigrate => db::connect(url).await.map_err(upsert::UpsertError::Db),
                }
            } => r,
        };
        match connected {
            Ok(db) => return Ok(Some(db)),
            Err(upsert::UpsertError::Db(e)) if !e.is_unavailable() => return Err(e.into()),
            Err(e) => {
                crate::meter::database_error("connect");
                tracing::warn!(error = %e, database = %db::describe_url(url), "database unavailable; the upserter waits for it (logins go on)");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(std::time::Duration::from_secs(10));
    }
}

/// The NATS half of `wxlogin migrate` (and of `up`): as the admin identity, creates or updates
/// the streams and buckets and applies the durable consumers' settings. The roles' own NATS
/// users may not; they wait for this.
pub async fn migrate_nats(settings: &Settings) -> Result<Pipeline, RoleError> {
    let pipeline = Pipeline::connect(settings, Identity::Admin).await?;
    pipeline.topology.apply_consumers(&pipeline.handles).await?;
    Ok(pipeline)
}

/// `wxlogin up`: all three roles in one process. The first role to fail stops the others.
pub async fn all_in_one(
    settings: &Settings,
    keyring: Arc<Keyring>,
    apps: &[App],
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), RoleError> {
    // The database is the upserter's alone (it migrates, and waits while the database is away):
    // logins never wait for it. The consumers take the settings first, as `migrate` would.
    tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        r = migrate_nats(settings) => { r?; }
    };
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
        async {
            let keyring = Some(keyring.clone());
            stop_all(upserter_in(settings, keyring, shutdown.clone(), Backfill::Here).await)
        },
    );
    a.and(b).and(c)
}

/// Binds the durable consumer `name` on `stream` (waiting through a NATS blip, or for `wxlogin
/// migrate` to make it: a role's NATS user may not) and keeps its backlog gauge current; `None`
/// if shut down meanwhile. Refuses one whose settings differ from `config`: `wxlogin migrate`
/// applies them.
async fn durable(
    stream: &jetstream::stream::Stream,
    name: String,
    config: jetstream::consumer::pull::Config,
    shutdown: &CancellationToken,
) -> Result<Option<jetstream::consumer::PullConsumer>, RoleError> {
    let what = format!("the consumer {name}");
    let make = || async {
        stream
            .get_consumer::<jetstream::consumer::pull::Config>(&name)
            .await
            .map_err(|e| format!("{e}: run `wxlogin migrate` as the admin identity"))
    };
    let Some(consumer) = retry_until_shutdown(&what, shutdown, make).await? else {
        return Ok(None);
    };
    let drift = crate::contract::topology::consumer_drift(&config, &consumer.cached_info().config);
    if !drift.is_empty() {
        return Err(RoleError::Config(format!(
            "the durable consumer {name} differs from the settings ({}): run `wxlogin migrate` to apply them",
            drift.join("; ")
        )));
    }
    tokio::spawn(crate::meter::watch_consumer(
        consumer.clone(),
        name,
        shutdown.clone(),
    ));
    Ok(Some(consumer))
}

/// Retries a start-up step through a NATS blip (up to ~30 s); `None` if shut down meanwhile.
async fn retry_until_shutdown<
    T,
    E: std::fmt::Display,
    F: std::future::Future<Output = Result<T, E>>,
>(
    what: &str,
    shutdown: &CancellationToken,
    mut step: impl FnMut() -> F,
) -> Result<Option<T>, RoleError> {
    for attempt in 1.. {
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            r = step() => r,
        };
        match outcome {
            Ok(v) => return Ok(Some(v)),
            Err(e) if attempt < 30 => {
                tracing::warn!(error = %e, attempt, "cannot set up {what} yet; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            }
            Err(e) => return Err(RoleError::Runtime(format!("cannot set up {what}: {e}"))),
        }
    }
    unreachable!("the loop returns")
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
