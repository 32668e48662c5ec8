//! Reading a login body: JSON or a form, size-capped, every failure a clear API error.

use axum::{
    body::Body,
    http::{HeaderMap, header},
};
use serde::Deserialize;

use super::error::{self, ApiError};

/// Fields are loosely typed on purpose: a number where a string belongs is a 400 with our
/// errcode, not a framework rejection.
#[derive(Debug, Deserialize, Default)]
pub struct LoginBody {
    #[serde(default)]
    pub appid: Option<serde_json::Value>,
    #[serde(default)]
    pub code: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, Default)]
struct FormBody {
    appid: Option<String>,
    code: Option<String>,
}

fn is_length_limit(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = e.source();
    }
    false
}

pub async fn read(headers: &HeaderMap, body: Body, limit: usize) -> Result<LoginBody, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(error::BODY_TOO_LARGE);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let is_json = content_type.starts_with("application/json");
    let is_form = content_type.starts_with("application/x-www-form-urlencoded");
    if !is_json && !is_form {
        return Err(error::UNSUPPORTED_MEDIA);
    }
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        if is_length_limit(&e) {
            error::BODY_TOO_LARGE
        } else {
            error::UNREADABLE_BODY
        }
    })?;
    if is_json {
        serde_json::from_slice::<LoginBody>(&bytes).map_err(|_| error::UNREADABLE_BODY)
    } else {
        let form: FormBody =
            serde_urlencoded::from_bytes(&bytes).map_err(|_| error::UNREADABLE_BODY)?;
        Ok(LoginBody {
            appid: form.appid.map(serde_json::Value::String),
            code: form.code.map(serde_json::Value::String),
        })
    }
}
