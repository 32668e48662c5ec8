//! A faithful WeChat simulator: `GET /sns/jscode2session` as WeChat serves it, the access-token
//! APIs (`/cgi-bin/token`, `/cgi-bin/stable_token`, the phone number, the session-key check and
//! reset; see `apis`), plus a control
//! API under `/sim/` to mint codes, inject faults, set quotas and read exact stats. Every test,
//! the demo and the benchmarks run against it, so it must be both faithful and fast.
//!
//! This file owns the server's lifecycle ([`spawn`], [`serve`], [`SimServer`]) and the routing;
//! - [`config`](SimConfig): apps, code lifetime, quotas, faults;
//! - `state`: the simulated WeChat's memory and its decisions;
//! - `wechat_api`: the code2Session endpoint and fault injection;
//! - `apis`: the access-token APIs, their faults and stats;
//! - `control`: the `/sim/` control API; [`SimControl`]: its typed client; `wire`: the types
//!   both exchange;
//! - `codes`: the minted codes; `stats`: exact counters and sliding windows;
//! - `identity`: ids, keys, profiles; [`payload`]: WeChat's encryption and signature of them;
//! - [`quota`]: the `N/<seconds>s` notation of the frequency limits;
//! - [`SimArgs`] / [`run`]: `wxlogin sim` on the command line.
//!
//! This crate depends on no wxlogin crate: a stand-in that shared code with what it stands in
//! for would pass every test where both sides make the same mistake.
//!
//! See `docs/simulator.md` for every endpoint, fault and stats field.

mod apis;
mod args;
mod client;
mod codes;
mod config;
mod control;
mod identity;
pub mod payload;
pub mod quota;
mod state;
mod stats;
mod wechat_api;
mod wire;

use std::{
    future::Future,
    io,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Instant,
};

use axum::{Router, extract::DefaultBodyLimit, routing::get, serve::ListenerExt};
use tokio::{
    net::TcpListener,
    sync::{oneshot, watch},
    task::JoinHandle,
};

pub use apis::{
    ApiConfig, ApiStats, Endpoint, EndpointFaults, EndpointStats, PhoneStats, StableTokenStats,
};
pub use args::{SimArgs, SimError, run};
pub use client::{SimControl, SimControlError};
pub use config::{DEMO_APPID, DEMO_SECRET, Faults, SimApp, SimAppParseError, SimConfig};
pub use quota::Quota;
pub use stats::{EntityStats, SimStats};
pub use wire::{MintedPhone, RepeatedCode, ScriptedAnswer, SimSession, UserInfo};

/// Control bodies are tiny; anything bigger is a mistake (413).
const CONTROL_BODY_LIMIT: usize = 64 * 1024;

/// What every handler shares.
pub(crate) struct Shared {
    state: Mutex<state::State>,
    /// Turns true when the server shuts down, to release hung and delayed calls.
    shutdown: watch::Receiver<bool>,
}

impl Shared {
    /// Locks the state. A panic while holding the lock cannot leave it half-updated in a way
    /// that matters to a simulator, so poisoning is ignored rather than spread.
    pub(crate) fn lock(&self) -> MutexGuard<'_, state::State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) async fn until_shutdown(&self) {
        let mut rx = self.shutdown.clone();
        // An error means the sender is gone, i.e. the server is gone too.
        let _ = rx.wait_for(|&down| down).await;
    }
}

/// A simulator serving in a tokio task. Dropping it shuts the server down in the background;
/// [`SimServer::shutdown`] does so and waits.
pub struct SimServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl SimServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, to use as the WeChat API base URL and the control API's.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn control(&self) -> SimControl {
        SimControl::new(self.base_url())
    }

    /// Stops accepting, releases hung calls, and waits for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "simulator ended with an error"),
            Err(e) => tracing::warn!(error = %e, "simulator task failed"),
        }
    }
}

/// Starts a simulator on `127.0.0.1:<free port>` in a tokio task.
pub async fn spawn(config: SimConfig) -> io::Result<SimServer> {
    config
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(config, listener, async move {
        // A dropped sender (SimServer dropped) also means stop.
        let _ = stopped.await;
    }));
    Ok(SimServer {
        addr,
        stop: Some(stop),
        task,
    })
}

/// Serves the simulator on `listener` until `shutdown` completes.
pub async fn serve(
    config: SimConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    config
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let (down_tx, down_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        state: Mutex::new(state::State::new(&config, Instant::now())),
        shutdown: down_rx,
    });
    let app = Router::new()
        .route("/sns/jscode2session", get(wechat_api::jscode2session))
        .merge(apis::routes())
        .merge(control::routes())
        .layer(DefaultBodyLimit::max(CONTROL_BODY_LIMIT))
        .with_state(shared);
    // Small answers on keep-alive connections: without NODELAY, Nagle's algorithm and delayed
    // ACKs can stall a response by tens of milliseconds.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = down_tx.send(true);
        })
        .await
}
