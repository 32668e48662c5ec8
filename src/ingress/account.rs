//! `GET /v1/me` and `POST /v1/logout`: what a bearer token stands for, and ending it.

use super::error_docs::{self, error_set};
use std::sync::Arc;

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

use super::{
    Ingress,
    error::{self, ApiError},
};
use crate::sessions::{Lookup, SessionRecord};

/// Who a token belongs to. A business service calls this to verify a token.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "appid": "wx0123456789abcdef",
    "openid": "oqG58CP7drmkLsxClOG-5YTrM6HI",
    "unionid": "ovtgHxG6MOLUKFLoRPTHijn1IBGn"
}))]
pub(crate) struct Me {
    appid: String,
    openid: String,
    /// Null unless the mini program is bound to an Open Platform account.
    unionid: Option<String>,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub(super) async fn session(
    ingress: &Ingress,
    headers: &HeaderMap,
) -> Result<(String, SessionRecord), ApiError> {
    let token = bearer(headers).ok_or(error::UNAUTHORIZED)?;
    match ingress.sessions.lookup(token).await {
        Ok(Lookup::Active(record)) => Ok((token.to_string(), record)),
        Ok(_) => Err(error::UNAUTHORIZED),
        Err(e) => {
            tracing::warn!(error = %e, "session store unavailable");
            Err(error::UNAVAILABLE)
        }
    }
}

/// What a token stands for.
#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "session",
    operation_id = "me",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The token is live.", body = Me),
        SessionErrors,
    ),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn me(State(ingress): State<Arc<Ingress>>, headers: HeaderMap) -> Response {
    match session(&ingress, &headers).await {
        Ok((_, record)) => Json(Me {
            appid: record.appid.into(),
            openid: record.openid,
            unionid: record.unionid,
        })
        .into_response(),
        Err(e) => e.into_response(),
    }
}

/// Ends the session: the token is dead in every ingress at once.
#[utoipa::path(
    post,
    path = "/v1/logout",
    tag = "session",
    operation_id = "logout",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Logged out."),
        SessionErrors,
    ),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn logout(State(ingress): State<Arc<Ingress>>, headers: HeaderMap) -> Response {
    let token = match session(&ingress, &headers).await {
        Ok((token, _)) => token,
        Err(e) => return e.into_response(),
    };
    match ingress.sessions.revoke(&token).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "session store unavailable");
            error::UNAVAILABLE.into_response()
        }
    }
}

error_set! {
    /// What the endpoints taking only a bearer token can answer besides success.
    SessionErrors {
        UNAUTHORIZED: error_docs::WHEN_UNAUTHORIZED,
        UNAVAILABLE: error_docs::WHEN_SESSIONS_UNAVAILABLE,
        REQUEST_TIMEOUT: error_docs::WHEN_REQUEST_TIMEOUT,
    }
}
