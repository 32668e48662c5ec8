//! The HTTP API. A login is validated here, published to the codes stream, and answered from
//! the worker's reply (or a ticket when the reply is slow). Session lookups and logout read the
//! shared session store, so any ingress process can serve any token.

mod account;
mod body;
pub mod client_ip;
mod decrypt;
pub mod error;
pub mod guard;
mod login;
pub mod openapi;
mod ticket;
pub mod validate;

use std::{collections::HashSet, sync::Arc, time::Duration};

use async_nats::jetstream;
use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post},
};
use dashmap::DashMap;
use futures::StreamExt;
use sea_orm::DatabaseConnection;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::{
    crypto::Keyring,
    events::{HEADER_LOGIN_ID, LoginResult},
    ledger::Ledger,
    sessions::SessionStore,
    topology::Topology,
};

/// What [`crate::fuzzing`] reaches of this module's private parsers.
pub(crate) mod fuzz {
    pub use super::body::{Media, parse_login};
    pub use super::decrypt::{
        DecryptRequest, open as open_decrypt, parse_request as parse_decrypt,
    };

    pub fn decrypt_request(encrypted_data: String, iv: String) -> DecryptRequest {
        DecryptRequest {
            encrypted_data,
            iv,
            signed: None,
        }
    }
}

/// What every handler shares.
pub struct Ingress {
    pub nats: async_nats::Client,
    pub js: jetstream::Context,
    pub topology: Topology,
    pub appids: HashSet<String>,
    pub keyring: Arc<Keyring>,
    pub sessions: SessionStore,
    pub ledger: Ledger,
    pub db: DatabaseConnection,
    pub login_wait: Duration,
    pub max_body_bytes: usize,
    /// Limits on what clients send: per-client quota, in-flight bound, timeouts.
    pub guard: guard::Guard,
    /// Logins waiting for their worker's reply, by login id.
    waiters: DashMap<String, oneshot::Sender<LoginResult>>,
    reply_subject: String,
}

impl Ingress {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        nats: async_nats::Client,
        js: jetstream::Context,
        topology: Topology,
        appids: HashSet<String>,
        keyring: Arc<Keyring>,
        sessions: SessionStore,
        ledger: Ledger,
        db: DatabaseConnection,
        login_wait: Duration,
        limits: guard::Limits,
    ) -> Arc<Self> {
        let ingress_id = uuid::Uuid::new_v4().simple().to_string();
        let reply_subject = topology.reply_subject(&ingress_id);
        Arc::new(Ingress {
            nats,
            js,
            topology,
            appids,
            keyring,
            sessions,
            ledger,
            db,
            login_wait,
            max_body_bytes: limits.max_body_bytes,
            guard: guard::Guard::new(limits),
            waiters: DashMap::new(),
            reply_subject,
        })
    }

    /// Delivers worker replies to the logins waiting for them, until `shutdown`.
    pub async fn listen_for_replies(
        self: Arc<Self>,
        shutdown: CancellationToken,
    ) -> Result<(), async_nats::SubscribeError> {
        let mut replies = self.nats.subscribe(self.reply_subject.clone()).await?;
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => break,
                msg = replies.next() => match msg { Some(m) => m, None => break },
            };
            let login_id = msg
                .headers
                .as_ref()
                .and_then(|h| h.get(HEADER_LOGIN_ID))
                .map(|v| v.as_str().to_string());
            let Some(login_id) = login_id else { continue };
            match LoginResult::decode(&msg.payload) {
                Ok(result) => match self.waiters.remove(&login_id) {
                    Some((_, tx)) => {
                        let _ = tx.send(result);
                    }
                    // The request was already answered 202; its ticket reads the ledger.
                    None => {
                        crate::meter::late_reply();
                        tracing::debug!(%login_id, "reply arrived after its request was answered")
                    }
                },
                Err(e) => tracing::warn!(error = %e, "unreadable reply ignored"),
            }
        }
        Ok(())
    }

    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route(
                "/v1/login",
                post(login::post_login).route_layer(axum::middleware::from_fn_with_state(
                    self.clone(),
                    guard::login_guard,
                )),
            )
            // A ticket poll costs NATS reads like a login: the same quota and in-flight bound.
            .route(
                "/v1/login/{ticket}",
                get(ticket::get_ticket).route_layer(axum::middleware::from_fn_with_state(
                    self.clone(),
                    guard::login_guard,
                )),
            )
            .route("/v1/me", get(account::me))
            .route("/v1/logout", post(account::logout))
            .route("/v1/decrypt", post(decrypt::post_decrypt))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/openapi.json", get(openapi::openapi_json))
            .route("/metrics", get(crate::meter::metrics_handler))
            .route("/status", get(crate::meter::status_handler))
            // After every route: it applies to the routes added so far.
            .method_not_allowed_fallback(guard::method_not_allowed)
            .fallback(guard::not_found)
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                guard::request_deadline,
            ))
            .layer(tower_http::timeout::RequestBodyDeadlineLayer::new(
                self.guard.limits.body_timeout,
            ))
            .with_state(self.clone())
    }
}

/// Liveness: 200 while the process lives.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    responses((status = 200, description = "The process lives.", body = String, content_type = "text/plain", example = "ok")),
)]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: whether NATS and the database answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Readiness {
    /// `ok` or `unavailable`.
    nats: &'static str,
    /// `ok` or `unavailable`.
    database: &'static str,
}

/// Readiness: 200 when NATS and the database answer, else 503.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    responses(
        (status = 200, description = "Ready.", body = Readiness, example = json!({"nats": "ok", "database": "ok"})),
        (status = 503, description = "NATS or the database does not answer.", body = Readiness, example = json!({"nats": "ok", "database": "unavailable"})),
    ),
)]
async fn readyz(State(ingress): State<Arc<Ingress>>) -> impl IntoResponse {
    let nats_ok = matches!(
        ingress.nats.connection_state(),
        async_nats::connection::State::Connected
    );
    let db_ok = tokio::time::timeout(
        Duration::from_secs(2),
        crate::persistence::ping(&ingress.db),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    let status = if nats_ok && db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |ok| if ok { "ok" } else { "unavailable" };
    (
        status,
        Json(Readiness {
            nats: word(nats_ok),
            database: word(db_ok),
        }),
    )
}
