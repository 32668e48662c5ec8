//! The HTTP API. A login (or a phone code) is validated here, published to the codes stream,
//! and answered from the worker's reply (or a ticket when the reply is slow). Session lookups and logout read the
//! shared session store, so any ingress process can serve any token.

mod account;
mod body;
pub mod client_ip;
mod decrypt;
pub mod error;
mod error_docs;
pub mod guard;
mod keep_alive;
mod login;
pub mod openapi;
mod phone;
mod session_key;
mod ticket;
pub mod validate;
mod watch;

use crate::clock::Clock;
use std::{collections::HashSet, sync::Arc, time::Duration};

use async_nats::jetstream;
use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use dashmap::DashMap;
use futures::StreamExt;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi as _;
use utoipa_axum::{
    router::{OpenApiRouter, UtoipaMethodRouter},
    routes,
};

use crate::{
    contract::ledger::Ledger,
    contract::topology::Topology,
    contract::{AppId, LoginId},
    contract::{
        events::{CallAnswered, LoginResult, Trust},
        headers,
    },
    crypto::Keyring,
    sessions::SessionStore,
};

/// What [`crate::fuzzing`] reaches of this module's private parsers.
pub(crate) mod fuzz {
    pub(crate) use super::body::{Media, parse_login};
    pub(crate) use super::decrypt::{
        DecryptRequest, open as open_decrypt, parse_request as parse_decrypt,
    };

    pub(crate) fn decrypt_request(encrypted_data: String, iv: String) -> DecryptRequest {
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
    pub appids: HashSet<AppId>,
    pub keyring: Arc<Keyring>,
    pub sessions: SessionStore,
    pub ledger: Ledger,
    /// Only reported by `/readyz`: no answer of the ingress depends on the database.
    pub database: Option<Arc<crate::upsert::db::Probe>>,
    pub login_wait: Duration,
    pub clock: Clock,
    pub max_body_bytes: usize,
    /// Limits on what clients send: per-client quota, in-flight bound, timeouts.
    pub guard: guard::Guard,
    /// Logins waiting for their worker's reply, by login id.
    waiters: DashMap<LoginId, oneshot::Sender<LoginResult>>,
    /// Calls waiting for a worker's answer (session-key checks), by call id.
    calls: DashMap<LoginId, oneshot::Sender<CallAnswered>>,
    reply_subject: String,
}

/// What an ingress is made of; [`crate::app::Pipeline::ingress`] fills it from the settings.
pub struct IngressParts {
    pub nats: async_nats::Client,
    pub js: jetstream::Context,
    pub topology: Topology,
    /// The apps this ingress serves.
    pub appids: HashSet<AppId>,
    pub keyring: Arc<Keyring>,
    pub sessions: SessionStore,
    pub ledger: Ledger,
    /// What `/readyz` reports as the database (`None`: not known).
    pub database: Option<Arc<crate::upsert::db::Probe>>,
    /// How long a login waits for its worker before answering 202 with a ticket.
    pub login_wait: Duration,
    pub limits: guard::Limits,
    /// The time this ingress goes by: when a code was received, when a session ends.
    pub clock: Clock,
}

impl Ingress {
    pub fn new(parts: IngressParts) -> Arc<Self> {
        let IngressParts {
            nats,
            js,
            topology,
            appids,
            keyring,
            sessions,
            ledger,
            database,
            login_wait,
            limits,
            clock,
        } = parts;
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
            database,
            login_wait,
            clock,
            max_body_bytes: limits.max_body_bytes,
            guard: guard::Guard::new(limits),
            waiters: DashMap::new(),
            calls: DashMap::new(),
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
            let Some(login_id) = headers::login_id(msg.headers.as_ref()) else {
                continue;
            };
            if self.calls.contains_key(login_id) {
                self.deliver_call_answer(login_id, &msg.payload);
                continue;
            }
            match LoginResult::decode(&msg.payload) {
                // Anyone who can publish to the reply subject could send one: a reply that is
                // not a worker's result for this very login must not take the waiter, or the
                // real reply would find none (the login then answers 202 and its ticket reads
                // the ledger). `answer` checks the code too.
                Ok(result)
                    if result.login_id.as_str() != login_id
                        || result.trust(&self.keyring) == Trust::Forged =>
                {
                    crate::meter::untrusted("result");
                    tracing::warn!(%login_id, "a reply that fails authentication ignored");
                }
                Ok(result) => match self.waiters.remove(login_id) {
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

    /// A worker's answer to a call of ours: only an authentic one, for this very call.
    fn deliver_call_answer(&self, call_id: &str, payload: &[u8]) {
        match CallAnswered::decode(payload) {
            Ok(answer)
                if answer.call_id.as_str() == call_id && answer.is_authentic(&self.keyring) =>
            {
                if let Some((_, tx)) = self.calls.remove(call_id) {
                    let _ = tx.send(answer);
                }
            }
            Ok(_) => {
                crate::meter::untrusted("call_answer");
                tracing::warn!(%call_id, "a call answer that fails authentication ignored");
            }
            Err(e) => tracing::warn!(error = %e, "unreadable call answer ignored"),
        }
    }

    /// The HTTP API: every route of [`api`], with the login guard, the deadlines, and
    /// `Connection: close` on answers that left a body unread.
    pub fn router(self: &Arc<Self>) -> Router {
        let (routes, _) = api(Some(self)).split_for_parts();
        routes
            // After every route: it applies to the routes added so far.
            .method_not_allowed_fallback(guard::method_not_allowed)
            .fallback(guard::not_found)
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                guard::request_deadline,
            ))
            // Outside the request deadline, so that its 408 (the handler dropped, the body
            // perhaps unread) is marked too; the body it tracks is the one under the deadline.
            .layer(axum::middleware::from_fn(keep_alive::close_if_body_unread))
            .layer(tower_http::timeout::RequestBodyDeadlineLayer::new(
                self.guard.limits.body_timeout,
            ))
            .with_state(self.clone())
    }
}

/// Every route of the HTTP API, in one list: the router serves it and the OpenAPI document
/// ([`openapi::document`]) is made from it. `ingress`: the one whose login guard (per-client
/// quota, in-flight bound) wraps the login routes; `None` when only the document is wanted.
pub(crate) fn api(ingress: Option<&Arc<Ingress>>) -> OpenApiRouter<Arc<Ingress>> {
    let guarded = |(schemas, paths, method): UtoipaMethodRouter<Arc<Ingress>>| {
        let method = match ingress {
            Some(ingress) => method.route_layer(axum::middleware::from_fn_with_state(
                ingress.clone(),
                guard::login_guard,
            )),
            None => method,
        };
        (schemas, paths, method)
    };
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(guarded(routes!(login::post_login)))
        // A ticket poll costs NATS reads like a login: the same quota and in-flight bound.
        .routes(guarded(routes!(ticket::get_ticket)))
        .routes(routes!(account::me))
        .routes(routes!(account::logout))
        .routes(routes!(decrypt::post_decrypt))
        // A phone code is exchanged like a login code: the same quota and in-flight bound.
        .routes(guarded(routes!(phone::post_phone)))
        .routes(guarded(routes!(phone::get_phone_ticket)))
        // Each check is a WeChat call a worker makes: the same quota and in-flight bound.
        .routes(guarded(routes!(session_key::get_session_key)))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(openapi::openapi_json))
        // Served, not part of the API document: Prometheus text and the live page on it.
        .route("/metrics", get(crate::meter::metrics_handler))
        .route("/status", get(crate::meter::status_handler))
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
    /// `ok`, `unavailable` or `unknown` (not looked at yet: looks run in the background, so a
    /// hanging database never stalls this answer). Reported, never gating: logins go on
    /// without the database (the upserter catches up when it returns).
    database: &'static str,
}

/// Readiness: 200 when NATS answers (logins need nothing else), else 503; the body also
/// reports the database.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    responses(
        (status = 200, description = "Ready: NATS answers (the database may not).", body = Readiness, example = json!({"nats": "ok", "database": "unavailable"})),
        (status = 503, description = "NATS does not answer.", body = Readiness, example = json!({"nats": "unavailable", "database": "ok"})),
    ),
)]
async fn readyz(State(ingress): State<Arc<Ingress>>) -> impl IntoResponse {
    let nats_ok = matches!(
        ingress.nats.connection_state(),
        async_nats::connection::State::Connected
    );
    let database = match &ingress.database {
        None => "unknown",
        Some(probe) => probe.status(),
    };
    let status = if nats_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            nats: if nats_ok { "ok" } else { "unavailable" },
            database,
        }),
    )
}
