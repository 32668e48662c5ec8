//! `GET /v1/session-key`: whether the session_key of the bearer's session is still the user's
//! current one (`wxa/checksession`). The ingress never calls WeChat: it asks the workers over
//! NATS ([`crate::contract::events::CallRequested`]) and waits for the answer on its reply
//! subject. WeChat's 87009 ("invalid signature": the key was replaced, by a later `wx.login` or
//! a reset) marks the session, and `/v1/decrypt` then answers `409 87009` instead of failing on
//! ciphertext the key can no longer open.

use std::sync::Arc;

use axum::{
    Json,
    extract::State,
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use serde::Serialize;

use super::{
    Ingress, account,
    error::{self, ApiError},
    error_docs::{self, error_set},
};
use crate::contract::{
    LoginId,
    events::{self, CALL_REQUESTED_V1, CallAnswered, CallKind, CallOutcome, CallRequested},
    headers,
};

/// Whether the session's session_key is the user's current one.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"valid": true}))]
pub(crate) struct KeyCheck {
    /// `false`: WeChat replaced it; call `wx.login()` and log in again before decrypting.
    valid: bool,
}

/// Checks the session's session_key with WeChat.
#[utoipa::path(
    get,
    path = "/v1/session-key",
    tag = "session",
    operation_id = "session_key",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "What WeChat says of the session's key.", body = KeyCheck),
        SessionKeyErrors,
    ),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn get_session_key(
    State(ingress): State<Arc<Ingress>>,
    headers: HeaderMap,
) -> Response {
    check(&ingress, &headers)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn check(ingress: &Ingress, headers: &HeaderMap) -> Result<Response, ApiError> {
    let (token, record) = account::session(ingress, headers).await?;
    if record.key_stale {
        return Ok(Json(KeyCheck { valid: false }).into_response());
    }
    let request = CallRequested {
        v: CALL_REQUESTED_V1,
        call_id: LoginId::new(),
        kind: CallKind::CheckSession,
        appid: record.appid.clone(),
        openid: record.openid.clone(),
        session_key_sealed: record.session_key_sealed.clone(),
        requested_at_ms: ingress.clock.now_ms(),
    };
    let answer = ask_workers(ingress, &request).await?;
    match answer.outcome {
        CallOutcome::Checked { current: true } => {
            Ok(Json(KeyCheck { valid: true }).into_response())
        }
        CallOutcome::Checked { current: false } => {
            if let Err(e) = ingress.sessions.mark_key_stale(&token).await {
                // Answered anyway; the next check asks WeChat again.
                tracing::warn!(error = %e, "cannot mark the session's key stale");
            }
            Ok(Json(KeyCheck { valid: false }).into_response())
        }
        CallOutcome::Failed { errcode } => {
            tracing::warn!(errcode, "session-key check failed");
            Err(match errcode {
                -1 | 45011 => error::UNAVAILABLE,
                _ => error::SERVER_MISCONFIGURED,
            })
        }
        CallOutcome::Reset { .. } => Err(error::UPSTREAM_UNEXPECTED),
    }
}

/// Publishes a call for the workers and waits (`login_wait`) for its authentic answer.
async fn ask_workers(ingress: &Ingress, request: &CallRequested) -> Result<CallAnswered, ApiError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    ingress.calls.insert(request.call_id.clone(), tx);
    let mut headers = headers::for_reply(&request.call_id);
    headers.insert(headers::REPLY, ingress.reply_subject.as_str());
    let subject = ingress.topology.call_subject(&request.appid, request.kind);
    let sent = ingress
        .nats
        .publish_with_headers(subject, headers, events::encode(request))
        .await;
    let answer = match sent {
        Ok(()) => tokio::time::timeout(ingress.login_wait, rx).await,
        Err(e) => {
            tracing::warn!(error = %e, "cannot ask the workers");
            ingress.calls.remove(&request.call_id);
            return Err(error::UNAVAILABLE);
        }
    };
    ingress.calls.remove(&request.call_id);
    match answer {
        Ok(Ok(answer)) => Ok(answer),
        _ => {
            tracing::warn!("no worker answered the session-key check in time");
            Err(error::UNAVAILABLE)
        }
    }
}

error_set! {
    /// What `GET /v1/session-key` can answer besides 200.
    SessionKeyErrors {
        UNAUTHORIZED: error_docs::WHEN_UNAUTHORIZED,
        SERVER_MISCONFIGURED: "our WeChat configuration is wrong (the access_token refused, …); \
alert the operators",
        UPSTREAM_UNEXPECTED: error_docs::WHEN_UPSTREAM_UNEXPECTED,
        UNAVAILABLE: "no worker answered in time, or WeChat is busy; try again later",
        REQUEST_TIMEOUT: error_docs::WHEN_REQUEST_TIMEOUT,
    }
}
