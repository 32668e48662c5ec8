//! The WeChat side of the access-token APIs: each handler reads its request, lets the faults
//! decide on arrival, runs the logic under the lock and renders WeChat's JSON (HTTP 200,
//! `application/json`, `rid:` in every errmsg). Every method reaches the handler, so that a
//! wrong one gets WeChat's errcode rather than the router's 405.

use std::{sync::Arc, time::Instant};

use axum::{
    Router,
    body::Bytes,
    extract::{RawQuery, State},
    http::{HeaderValue, Method, StatusCode, header::CONTENT_TYPE},
    response::{IntoResponse, Response},
    routing::any,
};
use serde_json::{Value, json};

use super::{
    ApiArrival, ApiInjected, Endpoint,
    bridge::{ApiQuery, AppHint, PhoneAnswer},
    errmsg,
};
use crate::{
    Shared, identity,
    state::State as SimState,
    wechat_api::{BAD_GATEWAY_HTML, garbage, scripted},
};

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/cgi-bin/token", any(token))
        .route("/cgi-bin/stable_token", any(stable_token))
        .route("/wxa/business/getuserphonenumber", any(phone_number))
        .route("/wxa/checksession", any(check_session))
        .route("/wxa/resetusersessionkey", any(reset_session_key))
}

fn query_of(raw: Option<String>) -> ApiQuery {
    // A query that does not parse is one with nothing in it, as at WeChat.
    raw.as_deref()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default()
}

/// The JSON body of a POST, else `None`.
fn json_body(method: &Method, body: &Bytes) -> Option<Value> {
    (method == Method::POST)
        .then(|| serde_json::from_slice(body).ok())
        .flatten()
}

fn json_response(body: String) -> Response {
    let mut resp = Response::new(body.into());
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; encoding=utf-8"),
    );
    resp
}

fn error_body(errcode: i64, message: Option<&str>) -> String {
    let text = message.unwrap_or_else(|| errmsg(errcode));
    json!({ "errcode": errcode, "errmsg": format!("{text}, rid: {}", identity::new_rid()) })
        .to_string()
}

/// Arrival, faults, then the logic (under the lock) and its rendering.
async fn serve<T>(
    shared: Arc<Shared>,
    endpoint: Endpoint,
    hint: AppHint<'_>,
    logic: impl FnOnce(&mut SimState, Instant) -> Result<T, i64>,
    render: impl FnOnce(T) -> Value,
) -> Response {
    let arrival = shared.lock().api_arrive(endpoint, hint);
    let injected = match arrival {
        ApiArrival::Go => None,
        ApiArrival::Scripted(script) => return scripted(script),
        ApiArrival::Hang => {
            shared.until_shutdown().await;
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        ApiArrival::Delayed { latency, injected } => {
            tokio::select! {
                () = tokio::time::sleep(latency) => {}
                () = shared.until_shutdown() => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
            }
            injected
        }
    };
    match injected {
        Some(ApiInjected::Http502) => (
            StatusCode::BAD_GATEWAY,
            [(CONTENT_TYPE, "text/html")],
            BAD_GATEWAY_HTML,
        )
            .into_response(),
        Some(ApiInjected::Garbage) => {
            let mut resp = Response::new(garbage().into());
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        Some(ApiInjected::Errcode { errcode, errmsg }) => {
            json_response(error_body(errcode, errmsg.as_deref()))
        }
        None => {
            let result = shared.lock().api_call(endpoint, logic);
            json_response(match result {
                Ok(value) => render(value).to_string(),
                Err(errcode) => error_body(errcode, None),
            })
        }
    }
}

fn token_json((token, expires_in): (String, u64)) -> Value {
    json!({ "access_token": token, "expires_in": expires_in })
}

async fn token(State(shared): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> Response {
    let q = query_of(raw);
    let hint = AppHint::Appid(q.appid.as_deref());
    serve(
        shared.clone(),
        Endpoint::Token,
        hint,
        |s, now| s.plain_token(&q, now),
        token_json,
    )
    .await
}

async fn stable_token(State(shared): State<Arc<Shared>>, method: Method, body: Bytes) -> Response {
    let body = json_body(&method, &body);
    let appid = body
        .as_ref()
        .and_then(|b| b.get("appid"))
        .and_then(Value::as_str);
    let hint = AppHint::Appid(appid);
    let logic = |s: &mut SimState, now| s.stable_token(body.as_ref(), now);
    serve(
        shared.clone(),
        Endpoint::StableToken,
        hint,
        logic,
        token_json,
    )
    .await
}

async fn phone_number(
    State(shared): State<Arc<Shared>>,
    method: Method,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let q = query_of(raw);
    let body = json_body(&method, &body);
    let token = q.access_token.as_deref();
    let logic = |s: &mut SimState, now| {
        if method != Method::POST {
            return Err(43002);
        }
        s.phone_number(token, body.as_ref(), now)
    };
    serve(
        shared.clone(),
        Endpoint::PhoneNumber,
        AppHint::Token(token),
        logic,
        phone_json,
    )
    .await
}

fn phone_json(a: PhoneAnswer) -> Value {
    let country = if a.numeric_country {
        a.number
            .country_code
            .parse::<u64>()
            .map_or(Value::Null, Value::from)
    } else {
        Value::from(a.number.country_code)
    };
    json!({
        "errcode": 0,
        "errmsg": "ok",
        "phone_info": {
            "phoneNumber": a.number.phone_number,
            "purePhoneNumber": a.number.pure_phone_number,
            "countryCode": country,
            "watermark": { "timestamp": a.timestamp, "appid": a.appid },
        },
    })
}

async fn check_session(
    State(shared): State<Arc<Shared>>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    session_key_call(shared, Endpoint::CheckSession, raw, body).await
}

async fn reset_session_key(
    State(shared): State<Arc<Shared>>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    session_key_call(shared, Endpoint::ResetSessionKey, raw, body).await
}

/// checksession and resetusersessionkey: the same query, the same checks.
async fn session_key_call(
    shared: Arc<Shared>,
    endpoint: Endpoint,
    raw: Option<String>,
    body: Bytes,
) -> Response {
    let q = query_of(raw);
    let has_body = !body.is_empty();
    let logic = |s: &mut SimState, now| {
        match endpoint {
        Endpoint::ResetSessionKey => s.reset_session_key(&q, has_body, now).map(|(openid, key)| {
            json!({ "errcode": 0, "errmsg": "ok", "openid": openid, "session_key": key })
        }),
        _ => (s.check_session(&q, has_body, now)).map(|()| json!({ "errcode": 0, "errmsg": "ok" })),
    }
    };
    let hint = AppHint::Token(q.access_token.as_deref());
    serve(shared.clone(), endpoint, hint, logic, |v| v).await
}
