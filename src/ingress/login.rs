//! `POST /v1/login` and `GET /v1/login/{ticket}`.
//!
//! The token is minted before the code is published and travels only inside the client's
//! ticket (sealed), so whichever ingress process answers — now, or later through the ticket —
//! creates the session under the same token, and no token ever rests in NATS or the ledger.
//!
//! One user per code: a login gets a session only from a result that names it, or — for a
//! submission JetStream folded into an earlier one as a duplicate — from the code's result if
//! the code had none *after* this submission reached the stream (read from the leader once the
//! publish was acknowledged: the server's order, no clocks compared). That fact travels in the
//! ticket; everything else that finds the code's result is a reuse, `409 40163`.

use super::error_docs::{self, error_set};
use crate::contract::headers;
use crate::contract::{AppId, CodeKey, LoginId};
use std::sync::Arc;

use axum::{
    Json,
    body::Body,
    extract::State,
    http::HeaderMap as HttpHeaders,
    response::{IntoResponse, Response},
};
use serde::Serialize;

use super::{
    Ingress,
    body::{self, LoginBody},
    error::{self, ApiError},
    ticket::{Accepted, Ticket, accepted},
    validate,
    watch::ResultWatch,
};
use crate::{
    contract::events::{
        self, FailureReason, LOGIN_REQUESTED_V1, LoginOutcome, LoginRequested, LoginResult, Trust,
    },
    sessions::{self, Lookup, SessionRecord},
    settings::PUBLISH_TIMEOUT,
};

/// Logged in: our session token (never an openid, never the session_key).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"token": "wxl_T8n4dWyI29uldbO2e-4EEnJbYeGkfjlvxhI1L9udKlg", "expires_in": 604800}))]
pub(crate) struct TokenAnswer {
    /// Send it as `Authorization: Bearer <token>`.
    token: String,
    /// Seconds until the token expires.
    expires_in: i64,
}

/// Exchanges a `wx.login()` code for a session token.
///
/// The code is exchanged with WeChat at most once. When that takes longer than
/// `WXLOGIN_LOGIN_WAIT_MS`, the answer is `202` with a ticket to poll. On `40029` or `40163`
/// call `wx.login()` again for a fresh code; never resend the same code.
#[utoipa::path(
    post,
    path = "/v1/login",
    tag = "login",
    operation_id = "login",
    request_body(
        description = "The code from `wx.login()`, as JSON or as a form.",
        content(
            (LoginBody = "application/json"),
            (LoginBody = "application/x-www-form-urlencoded"),
        ),
    ),
    responses(
        (status = 200, description = "Logged in.", body = TokenAnswer),
        (status = 202, description = "Not ready within `WXLOGIN_LOGIN_WAIT_MS`: poll `GET /v1/login/{ticket}` after `retry_after_ms`.", body = Accepted),
        LoginErrors,
    ),
)]
#[tracing::instrument(skip_all, fields(login_id))]
pub(super) async fn post_login(
    State(ingress): State<Arc<Ingress>>,
    headers: HttpHeaders,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    // One id for the login's whole path: this span, the NATS headers, the worker's and the
    // upserter's spans, the result event, and the answer's `Wxlogin-Login-Id` header.
    let login_id = LoginId::new();
    tracing::Span::current().record("login_id", login_id.as_str());
    let (mut response, errcode) = match login(&ingress, &headers, body, &login_id).await {
        Ok(r) => (r, 0),
        Err(e) => {
            let errcode = e.errcode;
            (e.into_response(), errcode)
        }
    };
    let status = response.status().as_u16();
    crate::meter::login_answered(status, errcode, started);
    tracing::debug!(status, errcode, "login answered");
    if let Ok(v) = axum::http::HeaderValue::from_str(&login_id) {
        // HTTP header names are lower case (the NATS header is `Wxlogin-Login-Id`).
        let name = axum::http::HeaderName::from_static("wxlogin-login-id");
        response.headers_mut().insert(name, v);
    }
    response
}

async fn login(
    ingress: &Ingress,
    headers: &HttpHeaders,
    body: Body,
    login_id: &LoginId,
) -> Result<Response, ApiError> {
    let body = body::read(headers, body, ingress.max_body_bytes).await?;
    let appid: AppId = match body.appid {
        // With one app configured, the appid may be left out.
        None | Some(serde_json::Value::Null) => {
            let mut apps = ingress.appids.iter();
            match (apps.next(), apps.next()) {
                (Some(only), None) => only.clone(),
                _ => return Err(error::MISSING_APPID),
            }
        }
        Some(serde_json::Value::String(a)) if ingress.appids.contains(a.as_str()) => a.into(),
        Some(_) => return Err(error::UNKNOWN_APPID),
    };
    let code = match body.code {
        None | Some(serde_json::Value::Null) => return Err(error::MISSING_CODE),
        Some(serde_json::Value::String(c)) if validate::is_plausible_code(&c) => c,
        Some(_) => return Err(error::INVALID_CODE),
    };
    // While NATS is away, say so at once instead of buffering the publish.
    if !matches!(
        ingress.nats.connection_state(),
        async_nats::connection::State::Connected
    ) {
        return Err(error::UNAVAILABLE);
    }
    let ticket = Ticket {
        token: sessions::new_token(),
        login_id: login_id.clone(),
        code_key: CodeKey::of(&appid, &code),
        received_at_ms: ingress.clock.now_ms(),
        appid,
        joined: false,
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    ingress.waiters.insert(ticket.login_id.clone(), tx);
    let published = publish(ingress, &ticket, &code).await;
    let duplicate = match published {
        Ok(duplicate) => duplicate,
        Err(e) => {
            ingress.waiters.remove(&ticket.login_id);
            crate::meter::nats_error("publish_code");
            tracing::warn!(error = %e, "cannot publish the login code");
            return Err(error::UNAVAILABLE);
        }
    };
    tracing::debug!(duplicate, "code published");
    if duplicate {
        ingress.waiters.remove(&ticket.login_id);
        return duplicate_login(ingress, ticket).await;
    }
    match tokio::time::timeout(ingress.login_wait, rx).await {
        Ok(Ok(result)) => answer(ingress, &ticket, &result, IfStoreDown::Ticket).await,
        _ => {
            ingress.waiters.remove(&ticket.login_id);
            accepted(ingress, &ticket)
        }
    }
}

/// Publishes the code; `Ok(true)` when JetStream says this code was already submitted.
async fn publish(ingress: &Ingress, ticket: &Ticket, code: &str) -> Result<bool, String> {
    let mut event = LoginRequested {
        v: LOGIN_REQUESTED_V1,
        login_id: ticket.login_id.clone(),
        appid: ticket.appid.clone(),
        code_sealed: String::new(),
        code_key: ticket.code_key.clone(),
        received_at_ms: ticket.received_at_ms,
        phone: None,
    };
    event.seal_code(&ingress.keyring, code);
    let headers = headers::for_code(&event, &ingress.reply_subject);
    let subject = ingress.topology.code_subject(&ticket.appid);
    let ack = publish_acked(ingress, subject, headers, events::encode(&event)).await?;
    Ok(ack.duplicate)
}

/// Publishes to JetStream and waits for its acknowledgement, within [`PUBLISH_TIMEOUT`]: every
/// publish of the ingress (codes, learnt unionids).
pub(super) async fn publish_acked(
    ingress: &Ingress,
    subject: String,
    headers: async_nats::HeaderMap,
    payload: bytes::Bytes,
) -> Result<async_nats::jetstream::publish::PublishAck, String> {
    let fut = async {
        let ack = ingress
            .js
            .publish_with_headers(subject, headers, payload)
            .await
            .map_err(|e| e.to_string())?;
        ack.await.map_err(|e| e.to_string())
    };
    tokio::time::timeout(PUBLISH_TIMEOUT, fut)
        .await
        .map_err(|_| "publish timed out".to_string())?
}

/// The same code was submitted before (JetStream folded ours into that message). If the code
/// has a result now, its exchange may have ended before we arrived: a reuse, 409. If it has
/// none, we arrived before the end and share the outcome, waiting for it on the result's
/// subject (no polling).
async fn duplicate_login(ingress: &Ingress, mut ticket: Ticket) -> Result<Response, ApiError> {
    let (watch, stored) = ResultWatch::start(ingress, &ticket.appid, &ticket.code_key).await?;
    if stored.is_some() {
        return Err(error::CODE_USED);
    }
    ticket.joined = true;
    match watch.wait(ingress.login_wait).await {
        Some(result) => answer(ingress, &ticket, &result, IfStoreDown::Ticket).await,
        // Joined: whatever went wrong, the ticket keeps that and finishes the login.
        None => accepted(ingress, &ticket),
    }
}

/// What a successful exchange answers while its session cannot be written (the session store
/// unreachable or refusing writes).
#[derive(Debug, Clone, Copy)]
pub(super) enum IfStoreDown {
    /// The login's own request: 202 with its ticket, as when the reply is slow. The result is
    /// recorded and the token travels in the ticket, so a poll makes the session once the
    /// store takes writes again; a 503 would throw away an exchange WeChat will not repeat.
    Ticket,
    /// A ticket poll: 503 -1; the ticket stays good and the client polls again.
    Unavailable,
}

/// Turns a login's result into the HTTP answer, creating the session on success. The one
/// place a session is made: only from a result naming this login, or the code's result for a
/// duplicate that joined it in time (see the module's top).
pub(super) async fn answer(
    ingress: &Ingress,
    ticket: &Ticket,
    result: &LoginResult,
    if_store_down: IfStoreDown,
) -> Result<Response, ApiError> {
    // Only a result a worker wrote, for this ticket's code: NATS carries it, and whoever can
    // publish there could otherwise name any openid. Not a reuse: the code's real result may
    // still come (the reply path) or be the ledger's (after a forged reply); never a session.
    if result.trust(&ingress.keyring) == Trust::Forged
        || result.code_key != ticket.code_key
        || result.appid != ticket.appid
    {
        crate::meter::untrusted("result");
        tracing::warn!("a result that fails authentication, or is another code's: ignored");
        return Err(error::UNAVAILABLE);
    }
    if !result.answers(&ticket.login_id, ticket.joined) {
        tracing::debug!("the code's result belongs to another login: a reuse");
        return Err(error::CODE_USED);
    }
    match &result.outcome {
        LoginOutcome::Success {
            openid,
            unionid,
            session_key_sealed,
        } => {
            let now = ingress.clock.now_ms();
            let record = SessionRecord {
                v: 1,
                appid: result.appid.clone(),
                openid: openid.clone(),
                unionid: unionid.clone(),
                session_key_sealed: session_key_sealed.clone(),
                login_id: ticket.login_id.clone(),
                created_at_ms: now,
                expires_at_ms: now + ingress.topology.session_ttl.as_millis() as i64,
                key_stale: false,
            };
            match ingress.sessions.create(&ticket.token, &record).await {
                Ok(Lookup::Active(rec)) => Ok(Json(TokenAnswer {
                    token: ticket.token.clone(),
                    expires_in: (rec.expires_at_ms - now).max(0) / 1000,
                })
                .into_response()),
                Ok(_) => Err(error::UNAUTHORIZED),
                Err(e) => {
                    tracing::warn!(error = %e, ?if_store_down, "session store unavailable");
                    match if_store_down {
                        IfStoreDown::Ticket => accepted(ingress, ticket),
                        IfStoreDown::Unavailable => Err(error::UNAVAILABLE),
                    }
                }
            }
        }
        LoginOutcome::Failure { errcode, reason } => Err(failure_answer(*errcode, *reason)),
        // A phone code's result under a login code's key: cannot be made without the master
        // key (the key namespaces differ), so never a session.
        LoginOutcome::Phone { .. } => {
            tracing::warn!("a phone result answers a login: ignored");
            Err(error::UPSTREAM_UNEXPECTED)
        }
    }
}

fn failure_answer(errcode: i64, reason: FailureReason) -> ApiError {
    match (reason, errcode) {
        (FailureReason::AlreadyUsed, _) | (FailureReason::Rejected, 40163) => error::CODE_USED,
        (FailureReason::Rejected, 40226) => error::HIGH_RISK,
        (FailureReason::Rejected, 41008) => error::MISSING_CODE,
        (FailureReason::Rejected, _) => error::INVALID_CODE,
        (FailureReason::Expired, _) => error::EXPIRED,
        (FailureReason::Misconfigured, _) => error::SERVER_MISCONFIGURED,
        (FailureReason::Unexpected, _) => error::UPSTREAM_UNEXPECTED,
    }
}

error_set! {
    /// What `POST /v1/login` can answer besides 200 and 202.
    LoginErrors {
        MISSING_CODE: error_docs::WHEN_MISSING_CODE,
        MISSING_APPID: "`appid` left out while several apps are configured",
        UNKNOWN_APPID: "`appid` is not one of the configured apps",
        INVALID_CODE: error_docs::WHEN_INVALID_CODE,
        UNREADABLE_BODY: "the body is not valid JSON or form data of the expected shape",
        CODE_USED: error_docs::WHEN_CODE_USED,
        HIGH_RISK: error_docs::WHEN_HIGH_RISK,
        BODY_TIMEOUT: error_docs::WHEN_BODY_TIMEOUT,
        BODY_TOO_LARGE: "the body is larger than `WXLOGIN_MAX_BODY_BYTES`",
        UNSUPPORTED_MEDIA: "the content type is neither `application/json` nor a form",
        TOO_MANY_ATTEMPTS: "this client address made too many login attempts \
(`WXLOGIN_CLIENT_QUOTA`); wait `Retry-After` seconds",
        SERVER_MISCONFIGURED: error_docs::WHEN_MISCONFIGURED,
        UPSTREAM_UNEXPECTED: error_docs::WHEN_UPSTREAM_UNEXPECTED,
        UNAVAILABLE: error_docs::WHEN_UNAVAILABLE,
        EXPIRED: error_docs::WHEN_EXPIRED,
        OVERLOADED: "this server has too many logins in flight; wait `Retry-After` seconds",
        REQUEST_TIMEOUT: error_docs::WHEN_REQUEST_TIMEOUT,
    }
}
