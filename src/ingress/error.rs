//! The one error shape of the HTTP API: `{"errcode": <int>, "errmsg": "<text>"}` with a status.
//! Errcodes are WeChat's where one fits, so clients handle one vocabulary.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub errcode: i64,
    pub errmsg: &'static str,
}

/// Every error answer of the HTTP API.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error, example = json!({"errcode": 40163, "errmsg": "code been used"}))]
pub struct Body {
    /// WeChat's errcode where one fits, else ours (`-1`: try again later).
    errcode: i64,
    /// Human-readable; do not parse it, branch on `errcode` and the HTTP status.
    errmsg: &'static str,
}

impl ApiError {
    /// The JSON body this error is answered with.
    pub fn body(&self) -> Body {
        Body {
            errcode: self.errcode,
            errmsg: self.errmsg,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

const fn e(status: StatusCode, errcode: i64, errmsg: &'static str) -> ApiError {
    ApiError {
        status,
        errcode,
        errmsg,
    }
}

pub const MISSING_CODE: ApiError = e(StatusCode::BAD_REQUEST, 41008, "missing code");
pub const MISSING_APPID: ApiError = e(
    StatusCode::BAD_REQUEST,
    41002,
    "missing appid: several apps are configured",
);
pub const UNKNOWN_APPID: ApiError = e(StatusCode::BAD_REQUEST, 40013, "invalid appid");
pub const INVALID_CODE: ApiError = e(StatusCode::BAD_REQUEST, 40029, "invalid code");
pub const CODE_USED: ApiError = e(StatusCode::CONFLICT, 40163, "code been used");
pub const HIGH_RISK: ApiError = e(
    StatusCode::FORBIDDEN,
    40226,
    "login blocked by WeChat risk control",
);
pub const UNAVAILABLE: ApiError = e(
    StatusCode::SERVICE_UNAVAILABLE,
    -1,
    "login pipeline unavailable, try again",
);
pub const EXPIRED: ApiError = e(
    StatusCode::SERVICE_UNAVAILABLE,
    -1,
    "WeChat did not complete the login before the code expired; call wx.login again",
);
pub const SERVER_MISCONFIGURED: ApiError = e(
    StatusCode::INTERNAL_SERVER_ERROR,
    -1,
    "login is misconfigured on the server",
);
pub const INVALID_PHONE_CODE: ApiError = e(
    StatusCode::BAD_REQUEST,
    40029,
    "invalid phone code: tap the button again",
);
pub const PHONE_CODE_SPENT: ApiError = e(
    StatusCode::SERVICE_UNAVAILABLE,
    -1,
    "WeChat did not answer for the phone code, which may have been spent: tap the button again",
);
pub const PHONE_CODE_OTHER_APP: ApiError = e(
    StatusCode::BAD_REQUEST,
    40013,
    "the phone code was issued to another app",
);
pub const SESSION_KEY_REPLACED: ApiError = e(
    StatusCode::CONFLICT,
    87009,
    "the session_key was replaced: call wx.login and log in again",
);
pub const UPSTREAM_UNEXPECTED: ApiError =
    e(StatusCode::BAD_GATEWAY, -1, "unexpected answer from WeChat");
pub const BODY_TOO_LARGE: ApiError = e(StatusCode::PAYLOAD_TOO_LARGE, 45002, "body too large");
pub const UNREADABLE_BODY: ApiError = e(
    StatusCode::BAD_REQUEST,
    47001,
    "body is not valid JSON or form data of the expected shape",
);
pub const UNSUPPORTED_MEDIA: ApiError = e(
    StatusCode::UNSUPPORTED_MEDIA_TYPE,
    47001,
    "send application/json or application/x-www-form-urlencoded",
);
pub const UNAUTHORIZED: ApiError = e(
    StatusCode::UNAUTHORIZED,
    40001,
    "missing, unknown, expired or revoked token",
);
pub const UNKNOWN_TICKET: ApiError = e(
    StatusCode::NOT_FOUND,
    40029,
    "unknown or expired ticket; call wx.login again",
);
pub const JSON_ONLY: ApiError = e(
    StatusCode::UNSUPPORTED_MEDIA_TYPE,
    47001,
    "send application/json",
);
pub const BODY_TIMEOUT: ApiError = e(
    StatusCode::REQUEST_TIMEOUT,
    47001,
    "the body did not arrive in time",
);
pub const TOO_MANY_ATTEMPTS: ApiError = e(
    StatusCode::TOO_MANY_REQUESTS,
    45011,
    "too many login attempts from this address; retry after the Retry-After seconds",
);
pub const OVERLOADED: ApiError = e(
    StatusCode::SERVICE_UNAVAILABLE,
    -1,
    "too many logins in flight on this server; retry shortly",
);
pub const REQUEST_TIMEOUT: ApiError = e(
    StatusCode::SERVICE_UNAVAILABLE,
    -1,
    "the request took too long; try again",
);
pub const NOT_FOUND: ApiError = e(StatusCode::NOT_FOUND, 40066, "no such endpoint");
pub const REQUIRES_GET: ApiError = e(StatusCode::METHOD_NOT_ALLOWED, 43001, "use GET here");
pub const REQUIRES_POST: ApiError = e(StatusCode::METHOD_NOT_ALLOWED, 43002, "use POST here");
