//! The control endpoints of the access-token APIs: mint a phone code (the simulated
//! `getPhoneNumber` button), revoke an app's tokens, advance the simulator's clock, and switch
//! how `countryCode` is written. Same conventions as the rest of `/sim/`.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{State, rejection::BytesRejection},
    response::{IntoResponse, Response},
    routing::post,
};
use serde::Deserialize;
use serde_json::json;

use super::phone::Number;
use crate::{
    Shared,
    control::{ApiError, check_user, parse, seconds},
};

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/sim/phone", post(mint_phone))
        .route("/sim/phone/settings", post(phone_settings))
        .route("/sim/tokens/revoke", post(revoke))
        .route("/sim/clock", post(advance_clock))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PhoneRef {
    appid: String,
    user: String,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    country: Option<String>,
}

async fn mint_phone(
    State(s): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: PhoneRef = parse(body)?;
    check_user(&req.user)?;
    let number = Number::parse(req.phone.as_deref(), req.country.as_deref(), &req.user)
        .map_err(ApiError::BadRequest)?;
    let answer = json!({
        "phone_number": number.phone_number,
        "pure_phone_number": number.pure_phone_number,
        "country_code": number.country_code,
    });
    let (code, ttl) = s.lock().mint_phone(&req.appid, &req.user, number)?;
    let mut answer = answer;
    answer["code"] = code.into();
    answer["expires_in"] = seconds(ttl);
    Ok(Json(answer).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PhoneSettings {
    country_code_numeric: bool,
}

async fn phone_settings(
    State(s): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: PhoneSettings = parse(body)?;
    s.lock().apis.config.country_code_numeric = req.country_code_numeric;
    Ok(Json(json!({ "country_code_numeric": req.country_code_numeric })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppRef {
    appid: String,
}

async fn revoke(
    State(s): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: AppRef = parse(body)?;
    let revoked = s.lock().revoke_tokens(&req.appid)?;
    Ok(Json(json!({ "appid": req.appid, "revoked": revoked })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    advance_secs: f64,
}

async fn advance_clock(
    State(s): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: Advance = parse(body)?;
    let by = Duration::try_from_secs_f64(req.advance_secs)
        .ok()
        .filter(|d| *d <= Duration::from_secs(30 * 86_400))
        .ok_or_else(|| ApiError::BadRequest("advance_secs must be within 0..=2592000".into()))?;
    let offset = s.lock().apis.advance_clock(by);
    Ok(Json(json!({ "offset_secs": seconds(offset) })).into_response())
}
