//! Reading request bodies: size-capped, within the body deadline, of an accepted media type,
//! every failure a clear API error. The login body (JSON or a form) is parsed here too.

use axum::{
    body::Body,
    http::{HeaderMap, header},
};
use serde::Deserialize;

use super::error::{self, ApiError};

/// Fields are loosely typed on purpose: a number where a string belongs is a 400 with our
/// errcode, not a framework rejection. (The OpenAPI schema shows what a client should send.)
#[derive(Debug, Deserialize, Default, utoipa::ToSchema)]
#[schema(
    as = LoginRequest,
    description = "The code from `wx.login()`, as JSON or as a form.",
    example = json!({"appid": "wx0123456789abcdef", "code": "0c1Xb2ll2Xq0Ag4oJ8ml2bSbRz2Xb2lp"})
)]
pub(crate) struct LoginBody {
    /// The mini program's appid; may be left out when exactly one app is configured.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^wx[0-9a-f]{16}$")]
    pub appid: Option<serde_json::Value>,
    /// The one-time code from `wx.login()`; anything that cannot be a WeChat code is refused
    /// with 40029 before any upstream call.
    #[serde(default)]
    #[schema(value_type = String, required = true, pattern = "^[0-9A-Za-z_-]{8,128}$")]
    pub code: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, Default)]
struct FormBody {
    appid: Option<String>,
    code: Option<String>,
}

/// The media types a body may come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Media {
    Json,
    Form,
}

impl Media {
    fn of(headers: &HeaderMap) -> Option<Media> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if content_type.starts_with("application/json") {
            Some(Media::Json)
        } else if content_type.starts_with("application/x-www-form-urlencoded") {
            Some(Media::Form)
        } else {
            None
        }
    }
}

/// Whether a body error (or one of its causes) is of type `E`.
fn caused_by<E: std::error::Error + 'static>(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.is::<E>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// Reads a body of one of the `accepted` media types, at most `limit` bytes: 413 at once when
/// the declared length is too big (nothing is read), 415 for another media type, 408 when the
/// body does not arrive before the ingress's body deadline, 413 or 400 when it is too long or
/// breaks off.
pub(super) async fn read_bytes(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    accepted: &[Media],
) -> Result<(Media, bytes::Bytes), ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(error::BODY_TOO_LARGE);
    }
    let refused = if accepted == [Media::Json] {
        error::JSON_ONLY
    } else {
        error::UNSUPPORTED_MEDIA
    };
    let media = Media::of(headers)
        .filter(|m| accepted.contains(m))
        .ok_or(refused)?;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        if caused_by::<http_body_util::LengthLimitError>(&e) {
            error::BODY_TOO_LARGE
        } else if caused_by::<tower_http::timeout::TimeoutError>(&e) {
            error::BODY_TIMEOUT
        } else {
            error::UNREADABLE_BODY
        }
    })?;
    Ok((media, bytes))
}

/// Reads a login body, JSON or a form.
pub(super) async fn read(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<LoginBody, ApiError> {
    let (media, bytes) = read_bytes(headers, body, limit, &[Media::Json, Media::Form]).await?;
    parse_login(media, &bytes)
}

/// Parses the bytes of a login body (the fuzz target `login_body` calls this).
pub(crate) fn parse_login(media: Media, bytes: &[u8]) -> Result<LoginBody, ApiError> {
    match media {
        // An object only: serde would also read a struct from an array (`["wx…", "code"]`).
        Media::Json => match serde_json::from_slice(bytes) {
            Ok(serde_json::Value::Object(map)) => {
                serde_json::from_value(serde_json::Value::Object(map))
                    .map_err(|_| error::UNREADABLE_BODY)
            }
            _ => Err(error::UNREADABLE_BODY),
        },
        Media::Form => {
            let form: FormBody =
                serde_urlencoded::from_bytes(bytes).map_err(|_| error::UNREADABLE_BODY)?;
            Ok(LoginBody {
                appid: form.appid.map(serde_json::Value::String),
                code: form.code.map(serde_json::Value::String),
            })
        }
    }
}
