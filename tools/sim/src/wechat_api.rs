//! The WeChat side: `GET /sns/jscode2session`, answered the way WeChat answers it (HTTP 200,
//! `text/plain`, a JSON body, `rid:` in every errmsg), with the injected faults around it.
//! This is the hot path of every benchmark, so bodies are formatted by hand and the state is
//! locked once per call when no fault or latency is in play.

use std::{sync::Arc, time::Instant};

use axum::{
    extract::{RawQuery, State},
    http::{HeaderValue, StatusCode, header::CONTENT_TYPE},
    response::{IntoResponse, Response},
};
use rand::Rng;

use super::{
    Shared, identity,
    state::{Answer, Arrival, Injected, Params},
    wire::ScriptedAnswer,
};

/// WeChat's errmsg texts (before the `, rid: ...` suffix).
pub(crate) fn errmsg(errcode: i64) -> &'static str {
    match errcode {
        -1 => "system error",
        40029 => "invalid code",
        40163 => "code been used",
        45011 => "api minute-quota reach limit  mustslower  retry next minute",
        40226 => "high risk user",
        40013 => "invalid appid",
        40125 => "invalid appsecret",
        41002 => "appid missing",
        41004 => "appsecret missing",
        41008 => "missing code",
        _ => "unknown error",
    }
}

pub(crate) const BAD_GATEWAY_HTML: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

pub(crate) async fn jscode2session(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
) -> Response {
    // A query that does not even parse is treated as one with nothing in it (41002), as an
    // HTTP API that never answers 400 would.
    let params: Params = query
        .as_deref()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    let arrival = shared.lock().arrive(&params, Instant::now());
    match arrival {
        Arrival::Answered(answer) => render(answer),
        Arrival::Scripted(script) => scripted(script),
        Arrival::Hang => {
            // Never answered; released only so that shutdown does not wait forever.
            shared.until_shutdown().await;
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
        Arrival::Delayed { latency, injected } => {
            tokio::select! {
                () = tokio::time::sleep(latency) => {}
                () = shared.until_shutdown() => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
            }
            match injected {
                Some(Injected::Http502) => (
                    StatusCode::BAD_GATEWAY,
                    [(CONTENT_TYPE, "text/html")],
                    BAD_GATEWAY_HTML,
                )
                    .into_response(),
                Some(Injected::Garbage) => text(garbage()),
                None => {
                    let answer = shared.lock().exchange(&params, Instant::now());
                    render(answer)
                }
            }
        }
    }
}

fn text(body: impl Into<axum::body::Body>) -> Response {
    let mut resp = Response::new(body.into());
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// Every value interpolated below is base64, base64url or ASCII text without quotes or
/// backslashes, so hand formatting yields valid JSON.
fn render(answer: Answer) -> Response {
    let body = match answer {
        Answer::Session {
            session_key,
            openid,
            unionid: Some(unionid),
        } => format!(
            r#"{{"session_key":"{session_key}","openid":"{openid}","unionid":"{unionid}"}}"#
        ),
        Answer::Session {
            session_key,
            openid,
            ..
        } => format!(r#"{{"session_key":"{session_key}","openid":"{openid}"}}"#),
        Answer::Error(code) => format!(
            r#"{{"errcode":{code},"errmsg":"{}, rid: {}"}}"#,
            errmsg(code),
            identity::new_rid()
        ),
    };
    text(body)
}

pub(crate) fn scripted(s: ScriptedAnswer) -> Response {
    let mut resp = Response::new(s.body.into());
    // Both were validated when the script was queued.
    *resp.status_mut() = StatusCode::from_u16(s.status).unwrap_or(StatusCode::OK);
    if let Ok(ct) = HeaderValue::from_str(&s.content_type) {
        resp.headers_mut().insert(CONTENT_TYPE, ct);
    }
    resp
}

/// A body no JSON parser accepts: a truncated answer, an HTML fragment, nothing, or bytes that
/// are not even UTF-8.
pub(crate) fn garbage() -> Vec<u8> {
    let mut rng = rand::rng();
    match rng.random_range(0..5) {
        0 => {
            let key = identity::new_session_key();
            let cut = rng.random_range(0..key.len());
            format!(r#"{{"session_key":"{}"#, &key[..cut]).into_bytes()
        }
        1 => br#"{"errcode":-1,"errm"#.to_vec(),
        2 => b"<html><body><h1>Service Unavail".to_vec(),
        3 => Vec::new(),
        _ => {
            let mut bytes = vec![0xff_u8; 1];
            bytes.extend((0..rng.random_range(1..64)).map(|_| rng.random::<u8>()));
            bytes
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_never_parses_as_json() {
        for _ in 0..500 {
            assert!(serde_json::from_slice::<serde_json::Value>(&garbage()).is_err());
        }
    }

    #[test]
    fn every_answered_errcode_has_wechats_text() {
        for code in [
            -1, 40029, 40163, 45011, 40226, 40013, 40125, 41002, 41004, 41008,
        ] {
            assert_ne!(errmsg(code), "unknown error", "errcode {code}");
        }
    }
}
