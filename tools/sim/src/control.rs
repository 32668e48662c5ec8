//! The control API under `/sim/`: what a test, the demo or a benchmark uses to play the user's
//! side (`wx.login()`, `wx.getUserInfo()`) and to steer the simulated WeChat (faults, quotas,
//! risk marks, scripted answers), and to read exact stats. JSON in, JSON out; bad input is a
//! 400 with `{"error": ...}`, never a panic.

use std::{sync::Arc, time::Instant};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Query, State, rejection::BytesRejection},
    http::{HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::json;

use super::{
    Shared,
    apis::Endpoint,
    config::Faults,
    identity,
    state::StateError,
    stats::SimStats,
    wire::{ScriptedAnswer, SimSession, UserInfo},
};
use crate::{payload, quota::Quota};

/// Control-API errors, answered as `{"error": "..."}`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("request body too large")]
    TooLarge,
    #[error(transparent)]
    State(#[from] StateError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::State(StateError::UnknownApp) => StatusCode::NOT_FOUND,
            ApiError::State(StateError::NoSession) => StatusCode::CONFLICT,
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

/// Parses a JSON body whatever its content type (curl's `-d` says form-urlencoded), with
/// errors as JSON rather than axum's plain-text rejections.
pub(crate) fn parse<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge,
        _ => ApiError::BadRequest(e.body_text()),
    })?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

/// Whole seconds as an integer (`300`, what clients expect), fractions only when there are some.
pub(crate) fn seconds(d: std::time::Duration) -> serde_json::Value {
    if d.subsec_nanos() == 0 {
        d.as_secs().into()
    } else {
        d.as_secs_f64().into()
    }
}

pub(crate) fn check_user(user: &str) -> Result<(), ApiError> {
    if user.is_empty() || user.len() > 128 || user.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "user must be 1..=128 chars without control characters".into(),
        ));
    }
    Ok(())
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/sim/login", post(login))
        .route("/sim/login/batch", post(login_batch))
        .route("/sim/faults", get(get_faults).post(set_faults))
        .route("/sim/quotas", get(get_quotas).post(set_quotas))
        .route("/sim/risk", post(set_risk))
        .route("/sim/userinfo", post(userinfo))
        .route("/sim/session", post(session))
        .route("/sim/script", post(script))
        .route("/sim/stats", get(stats))
        .route("/sim/codes/repeated", get(repeated_codes))
        .route("/sim/reset", post(reset))
        .merge(crate::apis::control_routes())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserRef {
    appid: String,
    user: String,
}

async fn login(
    State(s): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: UserRef = parse(body)?;
    check_user(&req.user)?;
    let (code, ttl) = s.lock().mint(&req.appid, &req.user, Instant::now())?;
    Ok(Json(json!({ "code": code, "expires_in": seconds(ttl) })).into_response())
}

/// At most this many codes per batch (the body limit allows a few thousand user names anyway).
const MAX_BATCH: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRef {
    appid: String,
    users: Vec<String>,
}

/// Many `wx.login()`s in one call, one code per entry of `users` (names may repeat), so that
/// benchmarks can mint large code pools quickly.
async fn login_batch(
    State(s): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: BatchRef = parse(body)?;
    if req.users.len() > MAX_BATCH {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_BATCH} users per batch"
        )));
    }
    req.users.iter().try_for_each(|u| check_user(u))?;
    let mut codes = Vec::with_capacity(req.users.len());
    let mut ttl = None;
    for user in &req.users {
        // One short lock per code, so a big batch never stalls the exchange path.
        let (code, t) = s.lock().mint(&req.appid, user, Instant::now())?;
        codes.push(code);
        ttl = Some(t);
    }
    let expires_in = ttl.map(seconds);
    Ok(Json(json!({ "codes": codes, "expires_in": expires_in })).into_response())
}

async fn get_faults(State(s): State<Arc<Shared>>) -> Json<Faults> {
    Json(s.lock().faults().clone())
}

async fn set_faults(
    State(s): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Faults>, ApiError> {
    let faults: Faults = parse(body)?;
    faults.validate().map_err(ApiError::BadRequest)?;
    s.lock().set_faults(faults.clone(), Instant::now());
    Ok(Json(faults))
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Quotas {
    #[serde(default)]
    pub app: Option<Quota>,
    #[serde(default)]
    pub user: Option<Quota>,
}

async fn get_quotas(State(s): State<Arc<Shared>>) -> Json<Quotas> {
    let (app, user) = s.lock().quotas();
    Json(Quotas { app, user })
}

async fn set_quotas(
    State(s): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Quotas>, ApiError> {
    let q: Quotas = parse(body)?;
    s.lock().set_quotas(q.app, q.user);
    Ok(Json(q))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Risk {
    appid: String,
    user: String,
    high_risk: bool,
}

async fn set_risk(
    State(s): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let r: Risk = parse(body)?;
    check_user(&r.user)?;
    s.lock().set_high_risk(&r.appid, &r.user, r.high_risk)?;
    Ok(Json(json!({ "appid": r.appid, "user": r.user, "high_risk": r.high_risk })).into_response())
}

/// Plays `wx.getUserInfo()`: the profile, encrypted under the user's current session_key.
async fn userinfo(
    State(s): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<UserInfo>, ApiError> {
    let req: UserRef = parse(body)?;
    check_user(&req.user)?;
    let (session_key, open_id, union_id) = s.lock().session_of(&req.appid, &req.user)?;
    // Encryption happens outside the lock.
    let raw = identity::raw_profile(&req.user);
    let raw_data = serde_json::to_string(&raw).expect("a profile always serializes");
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let full = FullProfile {
        open_id: &open_id,
        union_id: union_id.as_deref(),
        raw: &raw,
        watermark: Watermark {
            timestamp,
            appid: &req.appid,
        },
    };
    let iv: [u8; 16] = rand::random();
    let plaintext = serde_json::to_vec(&full).expect("a profile always serializes");
    let encrypted_data = payload::encrypt(&session_key, &iv, &plaintext).ok_or_else(|| {
        ApiError::BadRequest("cannot encrypt: the session key is not 16 bytes".into())
    })?;
    Ok(Json(UserInfo {
        encrypted_data,
        iv: STANDARD.encode(iv),
        signature: payload::sign(&raw_data, &session_key),
        raw_data,
    }))
}

async fn session(
    State(s): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SimSession>, ApiError> {
    let req: UserRef = parse(body)?;
    check_user(&req.user)?;
    let (session_key, openid, unionid) = s.lock().session_of(&req.appid, &req.user)?;
    Ok(Json(SimSession {
        session_key,
        openid,
        unionid,
    }))
}

/// The decrypted `encryptedData`: the raw profile plus ids and the watermark.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FullProfile<'a> {
    open_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    union_id: Option<&'a str>,
    #[serde(flatten)]
    raw: &'a identity::RawProfile,
    watermark: Watermark<'a>,
}

#[derive(Serialize)]
struct Watermark<'a> {
    timestamp: u64,
    appid: &'a str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Script {
    /// Absent: code2Session's queue.
    #[serde(default)]
    endpoint: Option<Endpoint>,
    answers: Vec<ScriptedAnswer>,
}

async fn script(
    State(s): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let script: Script = parse(body)?;
    for a in &script.answers {
        // Checked here so that the exchange path can build its response without failing.
        if StatusCode::from_u16(a.status).is_err()
            || HeaderValue::from_str(&a.content_type).is_err()
        {
            return Err(ApiError::BadRequest(format!(
                "invalid scripted answer: status {} / content_type {:?}",
                a.status, a.content_type
            )));
        }
    }
    let queued = match script.endpoint {
        None => s.lock().push_scripts(script.answers),
        Some(endpoint) => (s.lock().apis.faults).push_scripts(endpoint, script.answers),
    };
    Ok(Json(json!({ "queued": queued })).into_response())
}

async fn stats(State(s): State<Arc<Shared>>) -> Json<SimStats> {
    Json(s.lock().stats())
}

async fn repeated_codes(State(s): State<Arc<Shared>>) -> Json<Vec<crate::wire::RepeatedCode>> {
    let state = s.lock();
    Json(state.codes.repeated(state.epoch))
}

#[derive(Deserialize)]
struct ResetQuery {
    #[serde(default)]
    all: bool,
}

async fn reset(
    State(s): State<Arc<Shared>>,
    q: Result<Query<ResetQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    s.lock().reset(q.all);
    Ok(Json(json!({ "reset": true, "all": q.all })).into_response())
}
