//! The HTTP API as an OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! attributes and the body types' `ToSchema` derives, served at `GET /openapi.json` and
//! committed as `docs/openapi.json` (`tests/openapi.rs` fails when the two differ; regenerate
//! with `cargo run -- openapi > docs/openapi.json`).
//!
//! Error answers are not written out by hand: each endpoint names the [`ApiError`] constants it
//! can answer with (the `*Errors` types below), and their status, errcode and errmsg come from
//! those constants, grouped by status with one example each.

use std::{collections::BTreeMap, sync::LazyLock};

use axum::{http::header, response::IntoResponse};
use serde::Serialize;
use utoipa::{
    Modify, OpenApi,
    openapi::{
        ContentBuilder, HeaderBuilder, ObjectBuilder, OpenApi as Document, RefOr, Response,
        ResponseBuilder, Type,
        example::ExampleBuilder,
        schema::Ref,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use super::{account, decrypt, error, error::ApiError, login, ticket};
use crate::crypto::wxbiz::WxBizError;

/// The document; see [`document`] and [`json`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "wxlogin",
        description = "WeChat Mini Program login at high volume. A mini program sends the one-time \
code from `wx.login()` to `POST /v1/login` and gets a session token of ours; other services \
verify that token with `GET /v1/me`.\n\nEvery error is JSON `{\"errcode\": <int>, \"errmsg\": \
\"<text>\"}`; errcodes are WeChat's where one fits. Branch on the HTTP status and `errcode`, \
never on `errmsg`. An unknown path answers `404 40066`; a known path with the wrong method \
`405 43001` (use GET) or `405 43002` (use POST)."
    ),
    paths(
        login::post_login,
        ticket::get_ticket,
        account::me,
        account::logout,
        decrypt::post_decrypt,
        super::healthz,
        super::readyz,
        openapi_json,
    ),
    components(schemas(error::Body)),
    modifiers(&BearerAuth),
    tags(
        (name = "login", description = "Exchanging a `wx.login()` code for a session token."),
        (name = "session", description = "Using and ending a session token."),
        (name = "operations", description = "Probes and this document."),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("wxl_ session token from POST /v1/login")
                    .description(Some(
                        "`Authorization: Bearer <token>`, the token of a 200 login answer.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document of the HTTP API.
pub fn document() -> Document {
    ApiDoc::openapi()
}

/// The document as pretty-printed JSON with a final newline: exactly what `GET /openapi.json`
/// serves, `wxlogin openapi` prints and `docs/openapi.json` holds.
pub fn json() -> String {
    let mut text = document()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    text.push('\n');
    text
}

static JSON: LazyLock<String> = LazyLock::new(json);

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    responses((status = 200, description = "This OpenAPI 3.1 document.", content_type = "application/json", body = Object)),
)]
pub(super) async fn openapi_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], JSON.as_str())
}

/// A real ticket (sealed; it reveals nothing), for the examples.
pub(super) const EXAMPLE_TICKET: &str = concat!(
    "v1.4eb9a03c.aP87sL83hIuMNk00dln8vvYTTzSZZ2FAgmlLZyp2mmcfeLh5MYkqwac73t46-NS5fSP9",
    "z6n4zNfPsmnlD6b7cHaJwChRv4kYt0ZFc6O7d_U_lcRNUkR9dJVmLA4-R8hDYF-QbmRqHt8z4MLcuH8r",
    "sn582uyMhFi_qXOku4sTvH8fI0n_UqwQ9wbkmP4Z62XSvUmJFghldmop8_TM6ZMDdZTerAjIEA9h0H_Z",
    "Tv9PmhbKudGBbEk0AP4sqiq9yS0yghMk5XI92j8mEW46pt4N8zvsNjY2LYdI9ijWfAD6HGa2L2RBKzFZ",
    "-OmxIu17npdXInQO2xwVMg",
);

/// One error an endpoint can answer with, and when.
struct Case {
    name: &'static str,
    error: ApiError,
    when: &'static str,
}

/// The error responses of one endpoint: grouped by status, one example per errcode.
fn error_responses(cases: &[Case]) -> BTreeMap<String, RefOr<Response>> {
    let mut by_status: BTreeMap<u16, Vec<&Case>> = BTreeMap::new();
    for case in cases {
        by_status
            .entry(case.error.status.as_u16())
            .or_default()
            .push(case);
    }
    by_status
        .into_iter()
        .map(|(status, cases)| {
            let description = cases
                .iter()
                .map(|c| format!("`{}`: {}", c.error.errcode, c.when))
                .collect::<Vec<_>>()
                .join("; ");
            let examples = cases.iter().map(|c| {
                (
                    c.name.to_string(),
                    ExampleBuilder::new()
                        .summary(format!("{} {}", c.error.errcode, c.error.errmsg))
                        .description(c.when)
                        .value(Some(value(&c.error.body())))
                        .build(),
                )
            });
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Error")))
                .examples_from_iter(examples)
                .build();
            let mut response = ResponseBuilder::new()
                .description(description)
                .content("application/json", content);
            if cases
                .iter()
                .any(|c| status == 429 || c.error == error::OVERLOADED)
            {
                response = response.header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
                        .description(Some("Seconds to wait before trying again."))
                        .build(),
                );
            }
            (status.to_string(), RefOr::T(response.build()))
        })
        .collect()
}

fn value(body: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(body).expect("an error body serializes")
}

/// `error::NAME`, or the expression given for it.
macro_rules! case_error {
    ($name:ident) => {
        error::$name
    };
    ($name:ident $error:expr) => {
        $error
    };
}

/// Declares a set of error answers for `responses(...)` of `#[utoipa::path]`: entries are
/// `NAME: "when"` for `error::NAME`, or `NAME(expression): "when"`.
macro_rules! error_set {
    ($(#[$doc:meta])* $set:ident { $($name:ident $(($error:expr))?: $when:expr,)+ }) => {
        $(#[$doc])*
        pub(crate) struct $set;

        impl utoipa::IntoResponses for $set {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                error_responses(&[$(Case {
                    name: stringify!($name),
                    error: case_error!($name $($error)?),
                    when: $when,
                }),+])
            }
        }
    };
}

const WHEN_INVALID_CODE: &str = "invalid code: refused here without any upstream call when it \
cannot be a WeChat code (8–128 chars of `[0-9A-Za-z_-]`), or rejected by WeChat (expired, or \
issued for another appid); call `wx.login()` again";
const WHEN_CODE_USED: &str = "the code was already used; call `wx.login()` again, never resend it";
const WHEN_HIGH_RISK: &str = "WeChat's risk control blocks this user";
const WHEN_UNAVAILABLE: &str =
    "the pipeline cannot take logins now (NATS or the ledger unreachable); try again later";
const WHEN_EXPIRED: &str = "WeChat kept failing until the code expired; call `wx.login()` again";
const WHEN_MISCONFIGURED: &str =
    "our WeChat configuration is wrong (bad secret, IP not allow-listed…); alert the operators";
const WHEN_UPSTREAM_UNEXPECTED: &str = "WeChat answered something we could not classify";
const WHEN_MISSING_CODE: &str = "no `code` in the body";
const WHEN_REQUEST_TIMEOUT: &str = "the request took longer than the server allows; try again";
const WHEN_BODY_TIMEOUT: &str = "the body did not arrive in time";
const WHEN_UNAUTHORIZED: &str = "missing, unknown, expired or revoked token: log in again";
const WHEN_SESSIONS_UNAVAILABLE: &str = "the session store cannot be reached; try again later";

error_set! {
    /// What `POST /v1/login` can answer besides 200 and 202.
    LoginErrors {
        MISSING_CODE: WHEN_MISSING_CODE,
        MISSING_APPID: "`appid` left out while several apps are configured",
        UNKNOWN_APPID: "`appid` is not one of the configured apps",
        INVALID_CODE: WHEN_INVALID_CODE,
        UNREADABLE_BODY: "the body is not valid JSON or form data of the expected shape",
        CODE_USED: WHEN_CODE_USED,
        HIGH_RISK: WHEN_HIGH_RISK,
        BODY_TIMEOUT: WHEN_BODY_TIMEOUT,
        BODY_TOO_LARGE: "the body is larger than `WXLOGIN_MAX_BODY_BYTES`",
        UNSUPPORTED_MEDIA: "the content type is neither `application/json` nor a form",
        TOO_MANY_ATTEMPTS: "this client address made too many login attempts \
(`WXLOGIN_CLIENT_QUOTA`); wait `Retry-After` seconds",
        SERVER_MISCONFIGURED: WHEN_MISCONFIGURED,
        UPSTREAM_UNEXPECTED: WHEN_UPSTREAM_UNEXPECTED,
        UNAVAILABLE: WHEN_UNAVAILABLE,
        EXPIRED: WHEN_EXPIRED,
        OVERLOADED: "this server has too many logins in flight; wait `Retry-After` seconds",
        REQUEST_TIMEOUT: WHEN_REQUEST_TIMEOUT,
    }
}

error_set! {
    /// What `GET /v1/login/{ticket}` can answer besides 200 and 202.
    TicketErrors {
        MISSING_CODE: WHEN_MISSING_CODE,
        INVALID_CODE: WHEN_INVALID_CODE,
        UNAUTHORIZED: "the session this ticket created has since been logged out or expired",
        UNKNOWN_TICKET: "the ticket is unknown, forged, or older than a code could still be \
exchanged; call `wx.login()` again",
        CODE_USED: WHEN_CODE_USED,
        HIGH_RISK: WHEN_HIGH_RISK,
        SERVER_MISCONFIGURED: WHEN_MISCONFIGURED,
        UPSTREAM_UNEXPECTED: WHEN_UPSTREAM_UNEXPECTED,
        TOO_MANY_ATTEMPTS: "this client address made too many login attempts and ticket polls \
(`WXLOGIN_CLIENT_QUOTA`); wait `Retry-After` seconds",
        UNAVAILABLE: WHEN_UNAVAILABLE,
        EXPIRED: WHEN_EXPIRED,
        OVERLOADED: "this server has too many logins in flight; wait `Retry-After` seconds",
        REQUEST_TIMEOUT: WHEN_REQUEST_TIMEOUT,
    }
}

error_set! {
    /// What the endpoints taking only a bearer token can answer besides success.
    SessionErrors {
        UNAUTHORIZED: WHEN_UNAUTHORIZED,
        UNAVAILABLE: WHEN_SESSIONS_UNAVAILABLE,
        REQUEST_TIMEOUT: WHEN_REQUEST_TIMEOUT,
    }
}

error_set! {
    /// What `POST /v1/decrypt` can answer besides 200.
    DecryptErrors {
        UNREADABLE_BODY: "the body is not a JSON object",
        BAD_REQUEST(decrypt::BAD_REQUEST): "`encryptedData` or `iv` missing or not strings, or \
only one of `rawData` and `signature`",
        ILLEGAL_AES_KEY(decrypt::wxbiz_error(WxBizError::IllegalAesKey)):
            "the session's session_key is not 16 bytes of base64",
        ILLEGAL_IV(decrypt::wxbiz_error(WxBizError::IllegalIv)): "`iv` is not 16 bytes of base64",
        ILLEGAL_BUFFER(decrypt::wxbiz_error(WxBizError::IllegalBuffer)):
            "cannot decrypt with this session's key, or the data names another appid or user: \
usually data obtained before a later `wx.login()`; get the data again and decrypt that",
        DECODE_BASE64(decrypt::wxbiz_error(WxBizError::DecodeBase64)):
            "`encryptedData` is not base64 (a `+` turned into a space?)",
        SIGNATURE_MISMATCH(decrypt::wxbiz_error(WxBizError::SignatureMismatch)):
            "`signature` is not `sha1(rawData + session_key)`: forged, or made under an older \
session_key",
        UNAUTHORIZED: WHEN_UNAUTHORIZED,
        BODY_TIMEOUT: WHEN_BODY_TIMEOUT,
        BODY_TOO_LARGE: "the body is larger than 16 KiB",
        JSON_ONLY: "the content type is not `application/json`",
        KEY_UNAVAILABLE(decrypt::KEY_UNAVAILABLE): "this session's key was sealed under a \
master key the server no longer has; log in again",
        UNAVAILABLE: WHEN_SESSIONS_UNAVAILABLE,
        REQUEST_TIMEOUT: WHEN_REQUEST_TIMEOUT,
    }
}

/// What the simulator's `wx.getUserInfo()` gave the demo user alice: a decrypt request.
pub(super) fn example_userinfo() -> serde_json::Value {
    serde_json::json!({
        "encryptedData": concat!(
            "LYoSJH7q6Cv/g6gXlQz1mzHHeiAvwOkaHxWpvSSWAIhKTneBGEA4e75ivGjwdKaGxXm2djtdsNlqRlgR",
            "SPgnsvr+2h9t/fecrK/Hm8uw+auMiA3X9JoJL/h6506AEj1o6u5KScaw/LpwHfO9nz/R9sLCB9uNinMm",
            "ngMBlr3HynS5LaQFZ2Y7hOp2P1RkSJyooKJbl8/Y1DUl/caJU35+manJ3KhMWhj5q3xIvAothNO7/wbp",
            "va31c5Nt3zUtbVP/03JYQVXO8g6oSJI62MH6L9miOq2fTUewnlKgiXXVCE/D89Nf0vM3TYtJ8wkqqvYp",
            "r4TqDba5ooXbu/83dQdWbNnwsZrI/RQyRbnovaLFPgVeAIIbpZUt3WzKYEQVGaCNj0OZm9oK/HKF2aPa",
            "tu4hGrZRJ+5kw8l3UO+Qx12DgXiYTeMp1+sMz/IlVmibKfHYZ3vlcY+F8TYUskaSBeuZVA==",
        ),
        "iv": "dzY5Z3ClH7glNyJ4BwMBiA==",
        "rawData": concat!(
            r#"{"nickName":"alice","gender":1,"language":"zh_CN","city":"Guangzhou","#,
            r#""province":"Guangdong","country":"CN","avatarUrl":"#,
            r#""https://thirdwx.qlogo.cn/mmopen/vi_32/K9gGyX8OAK8aH8Myj6djqSaXI8jbj6xP/132"}"#,
        ),
        "signature": "362e04f767a14b8e77d2da2992f0f87229cfe4d3",
    })
}

/// What `POST /v1/decrypt` answered for [`example_userinfo`].
pub(super) fn example_profile() -> serde_json::Value {
    serde_json::json!({
        "openId": "oqG58CP7drmkLsxClOG-5YTrM6HI",
        "unionId": "ovtgHxG6MOLUKFLoRPTHijn1IBGn",
        "nickName": "alice",
        "gender": 1,
        "language": "zh_CN",
        "city": "Guangzhou",
        "province": "Guangdong",
        "country": "CN",
        "avatarUrl": "https://thirdwx.qlogo.cn/mmopen/vi_32/K9gGyX8OAK8aH8Myj6djqSaXI8jbj6xP/132",
        "watermark": {"appid": "wx0123456789abcdef", "timestamp": 1795224240},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_sharing_a_status_are_one_response_with_an_example_each() {
        use utoipa::IntoResponses as _;
        let responses = LoginErrors::responses();
        let doc = serde_json::to_value(&responses).unwrap();
        let examples = doc["503"]["content"]["application/json"]["examples"]
            .as_object()
            .unwrap();
        let mut names = examples.keys().collect::<Vec<_>>();
        names.sort();
        assert_eq!(
            names,
            ["EXPIRED", "OVERLOADED", "REQUEST_TIMEOUT", "UNAVAILABLE"]
        );
        assert_eq!(
            examples["EXPIRED"]["value"]["errmsg"],
            error::EXPIRED.errmsg
        );
        assert_eq!(
            doc["409"]["content"]["application/json"]["examples"]["CODE_USED"]["value"]["errcode"],
            40163
        );
        assert!(doc.get("200").is_none());
        // Retry-After is documented where it is sent: 429, and 503 when overloaded.
        assert!(doc["429"]["headers"]["Retry-After"].is_object());
        assert!(doc["503"]["headers"]["Retry-After"].is_object());
        assert!(doc["409"].get("headers").is_none());
        let session = serde_json::to_value(SessionErrors::responses()).unwrap();
        assert!(session["503"].get("headers").is_none());
    }

    #[test]
    fn the_documented_code_pattern_is_the_one_the_ingress_enforces() {
        let doc = serde_json::to_value(document()).unwrap();
        let pattern =
            &doc["components"]["schemas"]["LoginRequest"]["properties"]["code"]["pattern"];
        let expected = format!(
            "^[0-9A-Za-z_-]{{{},{}}}$",
            super::super::validate::MIN_CODE_LEN,
            super::super::validate::MAX_CODE_LEN
        );
        assert_eq!(pattern.as_str(), Some(expected.as_str()));
    }
}
