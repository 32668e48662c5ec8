//! `POST /v1/login` and `GET /v1/login/{ticket}`.
//!
//! The token is minted before the code is published and travels only inside the client's
//! ticket (sealed), so whichever ingress process answers — now, or later through the ticket —
//! creates the session under the same token, and no token ever rests in NATS or the ledger.

use std::{sync::Arc, time::Duration};

use async_nats::HeaderMap;
use axum::{
    Json,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap as HttpHeaders, StatusCode},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

use super::{
    Ingress,
    body::{self, LoginBody},
    error::{self, ApiError},
    validate,
};
use crate::{
    events::{
        self, FailureReason, HEADER_LOGIN_ID, HEADER_MSG_ID, HEADER_REPLY, LOGIN_REQUESTED_V1,
        LoginOutcome, LoginRequested, LoginResult,
    },
    ledger::{self, LedgerEntry},
    sessions::{self, Lookup, SessionRecord},
};

const TICKET_AAD: &[u8] = b"wxlogin-ticket-v1";
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(3);
const RETRY_AFTER_MS: u64 = 500;

/// What a 202's ticket carries (sealed): enough for any ingress to finish the login.
#[derive(Debug, Serialize, Deserialize)]
struct Ticket {
    token: String,
    login_id: String,
    appid: String,
    code_key: String,
    received_at_ms: i64,
}

/// Logged in: our session token (never an openid, never the session_key).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"token": "wxl_T8n4dWyI29uldbO2e-4EEnJbYeGkfjlvxhI1L9udKlg", "expires_in": 604800}))]
pub(crate) struct TokenAnswer {
    /// Send it as `Authorization: Bearer <token>`.
    token: String,
    /// Seconds until the token expires.
    expires_in: i64,
}

/// Not ready yet: poll `GET /v1/login/{ticket}` after `retry_after_ms`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"ticket": super::openapi::EXAMPLE_TICKET, "retry_after_ms": 500}))]
pub(crate) struct Accepted {
    /// Sealed and opaque; it reveals nothing and only this deployment can read it.
    ticket: String,
    /// Wait this long before polling.
    retry_after_ms: u64,
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
        super::openapi::LoginErrors,
    ),
)]
#[tracing::instrument(skip_all, fields(login_id))]
pub async fn post_login(
    State(ingress): State<Arc<Ingress>>,
    headers: HttpHeaders,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    // One id for the login's whole path: this span, the NATS headers, the worker's and the
    // upserter's spans, the result event, and the answer's `Wxlogin-Login-Id` header.
    let login_id = uuid::Uuid::now_v7().simple().to_string();
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
    login_id: &str,
) -> Result<Response, ApiError> {
    let body = body::read(headers, body, ingress.max_body_bytes).await?;
    let appid = match body.appid {
        None | Some(serde_json::Value::Null) if ingress.appids.len() == 1 => {
            ingress.appids.iter().next().cloned().unwrap_or_default()
        }
        None | Some(serde_json::Value::Null) => return Err(error::MISSING_APPID),
        Some(serde_json::Value::String(a)) if ingress.appids.contains(&a) => a,
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
        login_id: login_id.to_owned(),
        code_key: ledger::code_key(&appid, &code),
        received_at_ms: events::now_ms(),
        appid,
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
        Ok(Ok(result)) => answer(ingress, &ticket, &result).await,
        _ => {
            ingress.waiters.remove(&ticket.login_id);
            accepted(ingress, &ticket)
        }
    }
}

/// Publishes the code; `Ok(true)` when JetStream says this code was already submitted.
async fn publish(ingress: &Ingress, ticket: &Ticket, code: &str) -> Result<bool, String> {
    let event = LoginRequested {
        v: LOGIN_REQUESTED_V1,
        login_id: ticket.login_id.clone(),
        appid: ticket.appid.clone(),
        code_sealed: ingress.keyring.seal_str(code, ticket.appid.as_bytes()),
        code_key: ticket.code_key.clone(),
        received_at_ms: ticket.received_at_ms,
    };
    let mut headers = HeaderMap::new();
    headers.insert(HEADER_MSG_ID, ticket.code_key.as_str());
    headers.insert(HEADER_REPLY, ingress.reply_subject.as_str());
    headers.insert(HEADER_LOGIN_ID, ticket.login_id.as_str());
    let subject = ingress.topology.code_subject(&ticket.appid);
    let fut = async {
        let ack = ingress
            .js
            .publish_with_headers(subject, headers, events::encode(&event))
            .await
            .map_err(|e| e.to_string())?;
        ack.await.map_err(|e| e.to_string())
    };
    let ack = tokio::time::timeout(PUBLISH_TIMEOUT, fut)
        .await
        .map_err(|_| "publish timed out".to_string())??;
    Ok(ack.duplicate)
}

/// The same code was submitted before. If its exchange already ended, this is a reuse: 409.
/// Otherwise wait for the first exchange and share its outcome.
async fn duplicate_login(ingress: &Ingress, ticket: Ticket) -> Result<Response, ApiError> {
    if let Some(LedgerEntry::Done { .. }) =
        ledger_get(ingress, &ticket.appid, &ticket.code_key).await?
    {
        return Err(error::CODE_USED);
    }
    let deadline = tokio::time::Instant::now() + ingress.login_wait;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Some(LedgerEntry::Done { result }) =
            ledger_get(ingress, &ticket.appid, &ticket.code_key).await?
        {
            return answer(ingress, &ticket, &result).await;
        }
    }
    accepted(ingress, &ticket)
}

async fn ledger_get(
    ingress: &Ingress,
    appid: &str,
    code_key: &str,
) -> Result<Option<LedgerEntry>, ApiError> {
    ingress.ledger.get(appid, code_key).await.map_err(|e| {
        tracing::warn!(error = %e, "code ledger unavailable");
        error::UNAVAILABLE
    })
}

fn accepted(ingress: &Ingress, ticket: &Ticket) -> Result<Response, ApiError> {
    let sealed = ingress.keyring.seal(
        &serde_json::to_vec(ticket).expect("ticket serializes"),
        TICKET_AAD,
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            ticket: sealed,
            retry_after_ms: RETRY_AFTER_MS,
        }),
    )
        .into_response())
}

/// Follows a `202` ticket: answers like `POST /v1/login` (200, 202 again, or the login's
/// error) for as long as the code could still be exchanged; then `404 40029`.
#[utoipa::path(
    get,
    path = "/v1/login/{ticket}",
    tag = "login",
    operation_id = "login_ticket",
    params(("ticket" = String, Path, description = "The `ticket` of a `202` answer.")),
    responses(
        (status = 200, description = "Logged in.", body = TokenAnswer),
        (status = 202, description = "Still not ready: poll again after `retry_after_ms`.", body = Accepted),
        super::openapi::TicketErrors,
    ),
)]
#[tracing::instrument(skip_all, fields(login_id))]
pub async fn get_ticket(
    State(ingress): State<Arc<Ingress>>,
    Path(sealed): Path<String>,
) -> Response {
    let ticket = match ingress
        .keyring
        .open(&sealed, TICKET_AAD)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Ticket>(&bytes).ok())
    {
        Some(t) => t,
        None => return error::UNKNOWN_TICKET.into_response(),
    };
    tracing::Span::current().record("login_id", ticket.login_id.as_str());
    let age = Duration::from_millis(
        events::now_ms()
            .saturating_sub(ticket.received_at_ms)
            .max(0) as u64,
    );
    if age > ingress.topology.ledger_max_age() {
        return error::UNKNOWN_TICKET.into_response();
    }
    let result = match ledger_get(&ingress, &ticket.appid, &ticket.code_key).await {
        Ok(Some(LedgerEntry::Done { result })) => answer(&ingress, &ticket, &result).await,
        Ok(_) if age > ingress.topology.code_ttl + 2 * ingress.topology.exchange_ack_wait => {
            Err(error::EXPIRED)
        }
        Ok(_) => accepted(&ingress, &ticket),
        Err(e) => Err(e),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Turns a login's result into the HTTP answer, creating the session on success.
async fn answer(
    ingress: &Ingress,
    ticket: &Ticket,
    result: &LoginResult,
) -> Result<Response, ApiError> {
    match &result.outcome {
        LoginOutcome::Success {
            openid,
            unionid,
            session_key_sealed,
        } => {
            let now = events::now_ms();
            let record = SessionRecord {
                v: 1,
                appid: result.appid.clone(),
                openid: openid.clone(),
                unionid: unionid.clone(),
                session_key_sealed: session_key_sealed.clone(),
                login_id: ticket.login_id.clone(),
                created_at_ms: now,
                expires_at_ms: now + ingress.topology.session_ttl.as_millis() as i64,
            };
            match ingress.sessions.create(&ticket.token, &record).await {
                Ok(Lookup::Active(rec)) => Ok(Json(TokenAnswer {
                    token: ticket.token.clone(),
                    expires_in: (rec.expires_at_ms - now).max(0) / 1000,
                })
                .into_response()),
                Ok(_) => Err(error::UNAUTHORIZED),
                Err(e) => {
                    tracing::warn!(error = %e, "session store unavailable");
                    Err(error::UNAVAILABLE)
                }
            }
        }
        LoginOutcome::Failure { errcode, reason } => Err(failure_answer(*errcode, *reason)),
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
