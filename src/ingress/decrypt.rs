//! `POST /v1/decrypt`: opens the `encryptedData` a mini program got from `wx.getUserInfo` /
//! `getPhoneNumber` with the session_key of the bearer token's login, and checks a `rawData`
//! signature. The session_key is opened from the session record only for this request and
//! never leaves the process; answers carry the decrypted data or an official errcode, never key
//! material. A decrypted `unionId` the session did not know is published as an event on the
//! results stream, which the upserter applies to the user row whether it comes before or after
//! the login's own result (and replays rebuild), so logins from other apps of the same Open
//! Platform account can be joined to it. The ingress itself never touches the database.

use super::error_docs::{self, error_set};
use std::sync::Arc;

use axum::{
    Json,
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::{
    Ingress, account, body,
    error::{self, ApiError},
};
use crate::{
    contract::{
        events::{self, UNIONID_LEARNED, UNIONID_LEARNED_V1, UnionidLearned},
        headers,
    },
    crypto::wxbiz::{self, WxBizError},
    sessions::SessionRecord,
};

/// User-info payloads are well under 2 KB; room for long avatar URLs, not for abuse.
pub(super) const MAX_DECRYPT_BODY_BYTES: usize = 16 * 1024;

/// Loosely typed, so that a number where a string belongs is our 400, not a framework's.
/// (The OpenAPI schema shows what a client should send.)
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(
    as = DecryptRequest,
    description = "What `wx.getUserInfo()` (or a legacy `getPhoneNumber`) gave the mini program: \
`encryptedData` and `iv`, and optionally both `rawData` and `signature`.",
    example = json!(example_userinfo())
)]
struct Raw {
    /// Base64, as WeChat gave it.
    #[serde(default, rename = "encryptedData")]
    #[schema(value_type = String, required = true)]
    encrypted_data: Option<Value>,
    /// Base64 of 16 bytes, as WeChat gave it.
    #[serde(default)]
    #[schema(value_type = String, required = true)]
    iv: Option<Value>,
    /// The profile in clear; when sent, `signature` must be sent too and is checked.
    #[serde(default, rename = "rawData")]
    #[schema(value_type = Option<String>)]
    raw_data: Option<Value>,
    /// `hex(sha1(rawData + session_key))`, as WeChat gave it.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    signature: Option<Value>,
}

/// A well-formed decrypt request (its contents are checked by [`wxbiz`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DecryptRequest {
    pub encrypted_data: String,
    pub iv: String,
    /// `rawData` and its `signature`, when the client sent them (both or neither).
    pub signed: Option<(String, String)>,
}

pub(super) const BAD_REQUEST: ApiError = ApiError {
    status: StatusCode::BAD_REQUEST,
    errcode: 47001,
    errmsg: "body must be JSON with string fields encryptedData and iv, and optionally both rawData and signature",
};

/// The session's key cannot be opened: sealed under a master key this process no longer has.
pub(super) const KEY_UNAVAILABLE: ApiError = ApiError {
    status: StatusCode::INTERNAL_SERVER_ERROR,
    errcode: -1,
    errmsg: "this session's key cannot be used; call wx.login and log in again",
};

/// The official demo's errcodes, answered 400.
pub(super) fn wxbiz_error(e: WxBizError) -> ApiError {
    let errmsg = match e {
        WxBizError::IllegalAesKey => "session_key is not 16 bytes of base64",
        WxBizError::IllegalIv => "iv is not 16 bytes of base64",
        WxBizError::IllegalBuffer => {
            "encryptedData is not this user's data for this app (made with an older session_key? call wx.login, log in again, then fetch the data again)"
        }
        WxBizError::DecodeBase64 => "encryptedData is not valid base64",
        WxBizError::SignatureMismatch => "signature does not match sha1(rawData + session_key)",
    };
    ApiError {
        status: StatusCode::BAD_REQUEST,
        errcode: i64::from(e.code()),
        errmsg,
    }
}

/// Parses the JSON body of a decrypt request.
pub(crate) fn parse_request(bytes: &[u8]) -> Result<DecryptRequest, ApiError> {
    // An object only: serde would also read the struct from an array.
    let raw: Raw = match serde_json::from_slice(bytes) {
        Ok(Value::Object(map)) => {
            serde_json::from_value(Value::Object(map)).map_err(|_| error::UNREADABLE_BODY)?
        }
        _ => return Err(error::UNREADABLE_BODY),
    };
    let text = |v: Option<Value>| match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(BAD_REQUEST),
    };
    let (Some(encrypted_data), Some(iv)) = (text(raw.encrypted_data)?, text(raw.iv)?) else {
        return Err(BAD_REQUEST);
    };
    let signed = match (text(raw.raw_data)?, text(raw.signature)?) {
        (Some(raw_data), Some(signature)) => Some((raw_data, signature)),
        (None, None) => None,
        _ => return Err(BAD_REQUEST),
    };
    Ok(DecryptRequest {
        encrypted_data,
        iv,
        signed,
    })
}

/// Checks the signature if any, decrypts, and checks the data is this user's.
pub(crate) fn open(
    session_key: &str,
    req: &DecryptRequest,
    appid: &str,
    openid: &str,
) -> Result<Map<String, Value>, WxBizError> {
    if let Some((raw_data, signature)) = &req.signed
        && !wxbiz::verify_signature(raw_data, session_key, signature)
    {
        return Err(WxBizError::SignatureMismatch);
    }
    let data = wxbiz::decrypt(session_key, &req.encrypted_data, &req.iv, appid)?;
    // Phone-number data has no openId; user info that names someone else is not this user's.
    match data.get("openId") {
        Some(Value::String(id)) if id != openid => Err(WxBizError::IllegalBuffer),
        _ => Ok(data),
    }
}

/// Decrypts user data with the session_key of the token's login.
///
/// WeChat encrypts the data under the user's *current* session_key; a `wx.login()` after the
/// data was obtained may replace that key, and the data then no longer decrypts (`-41003`, or
/// `-41005` when `rawData` is signed): log in first, then get the data, then decrypt it.
#[utoipa::path(
    post,
    path = "/v1/decrypt",
    tag = "session",
    operation_id = "decrypt",
    security(("bearer" = [])),
    request_body(content = Raw, content_type = "application/json"),
    responses(
        (status = 200, description = "The decrypted object: user info (`openId`, `unionId`, `nickName`, …) or a phone number, with its `watermark`.",
            body = Object, example = json!(example_profile())),
        DecryptErrors,
    ),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn post_decrypt(
    State(ingress): State<Arc<Ingress>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match decrypt(&ingress, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn decrypt(ingress: &Ingress, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    // The token first: nobody without a session gets their body read.
    let (token, record) = account::session(ingress, headers).await?;
    if record.key_stale {
        return Err(error::SESSION_KEY_REPLACED);
    }
    let bytes = body::read_bytes(headers, body, MAX_DECRYPT_BODY_BYTES, &[body::Media::Json])
        .await?
        .1;
    let req = parse_request(&bytes)?;
    let aad = format!("{}:{}", record.appid, record.openid);
    let session_key = Zeroizing::new(
        ingress
            .keyring
            .open_string(&record.session_key_sealed, aad.as_bytes())
            .map_err(|e| {
                // SealError never carries key material; an unknown key id is the usual cause.
                tracing::error!(error = %e, "cannot open a session's sealed session_key");
                KEY_UNAVAILABLE
            })?,
    );
    let data = open(&session_key, &req, &record.appid, &record.openid).map_err(|e| {
        tracing::debug!(errcode = e.code(), "user data refused");
        wxbiz_error(e)
    })?;
    if record.unionid.is_none()
        && let Some(Value::String(unionid)) = data.get("unionId")
        && !unionid.is_empty()
    {
        store_unionid(ingress, &token, &record, unionid).await;
    }
    Ok(Json(data).into_response())
}

/// Publishes a newly learnt unionid for the upserter, then records it on this session (so the
/// session's next decrypts do not publish it again). A failure is logged, not answered — the
/// client asked for its data, and got it — and leaves the session without it, so the next
/// decrypt publishes again: nothing learnt is lost for good.
async fn store_unionid(ingress: &Ingress, token: &str, record: &SessionRecord, unionid: &str) {
    let event = UnionidLearned {
        v: UNIONID_LEARNED_V1,
        event: UNIONID_LEARNED.into(),
        login_id: record.login_id.clone(),
        appid: record.appid.clone(),
        openid: record.openid.clone(),
        unionid: unionid.to_owned(),
        session_key_sealed: record.session_key_sealed.clone(),
        learned_at_ms: ingress.clock.now_ms(),
    };
    let subject = ingress
        .topology
        .unionid_subject(&record.appid, &record.login_id);
    let published = super::login::publish_acked(
        ingress,
        subject,
        headers::for_unionid(&event),
        events::encode(&event),
    );
    if let Err(e) = published.await {
        crate::meter::nats_error("publish_unionid");
        tracing::warn!(error = %e, "cannot publish the unionid; the next decrypt will");
        return;
    }
    tracing::debug!("unionid published for the upserter");
    if let Err(e) = ingress.sessions.set_unionid(token, unionid).await {
        tracing::warn!(error = %e, "cannot store the unionid on the session");
    }
}

error_set! {
    /// What `POST /v1/decrypt` can answer besides 200.
    DecryptErrors {
        SESSION_KEY_REPLACED: "a session-key check found that WeChat replaced this session's \
key (87009): call `wx.login()` and log in again, then get the data again",
        UNREADABLE_BODY: "the body is not a JSON object",
        BAD_REQUEST(BAD_REQUEST): "`encryptedData` or `iv` missing or not strings, or \
only one of `rawData` and `signature`",
        ILLEGAL_AES_KEY(wxbiz_error(WxBizError::IllegalAesKey)):
            "the session's session_key is not 16 bytes of base64",
        ILLEGAL_IV(wxbiz_error(WxBizError::IllegalIv)): "`iv` is not 16 bytes of base64",
        ILLEGAL_BUFFER(wxbiz_error(WxBizError::IllegalBuffer)):
            "cannot decrypt with this session's key, or the data names another appid or user: \
usually data obtained before a later `wx.login()`; get the data again and decrypt that",
        DECODE_BASE64(wxbiz_error(WxBizError::DecodeBase64)):
            "`encryptedData` is not base64 (a `+` turned into a space?)",
        SIGNATURE_MISMATCH(wxbiz_error(WxBizError::SignatureMismatch)):
            "`signature` is not `sha1(rawData + session_key)`: forged, or made under an older \
session_key",
        UNAUTHORIZED: error_docs::WHEN_UNAUTHORIZED,
        BODY_TIMEOUT: error_docs::WHEN_BODY_TIMEOUT,
        BODY_TOO_LARGE: "the body is larger than 16 KiB",
        JSON_ONLY: "the content type is not `application/json`",
        KEY_UNAVAILABLE(KEY_UNAVAILABLE): "this session's key was sealed under a \
master key the server no longer has; log in again",
        UNAVAILABLE: error_docs::WHEN_SESSIONS_UNAVAILABLE,
        REQUEST_TIMEOUT: error_docs::WHEN_REQUEST_TIMEOUT,
    }
}

/// What the simulator's `wx.getUserInfo()` gave the demo user alice: a decrypt request.
pub(crate) fn example_userinfo() -> serde_json::Value {
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
pub(crate) fn example_profile() -> serde_json::Value {
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
    fn a_request_needs_string_data_and_iv_and_both_or_neither_of_raw_data_and_signature() {
        let ok = parse_request(br#"{"encryptedData":"ZA==","iv":"aXY=","extra":1}"#).unwrap();
        assert_eq!(ok.signed, None);
        let signed = parse_request(
            br#"{"encryptedData":"ZA==","iv":"aXY=","rawData":"{}","signature":"ab"}"#,
        )
        .unwrap();
        assert_eq!(signed.signed, Some(("{}".into(), "ab".into())));
        for bad in [
            &br#"{"iv":"aXY="}"#[..],
            br#"{"encryptedData":"ZA=="}"#,
            br#"{"encryptedData":5,"iv":"aXY="}"#,
            br#"{"encryptedData":"ZA==","iv":["x"]}"#,
            br#"{"encryptedData":"ZA==","iv":"aXY=","rawData":"{}"}"#,
            br#"{"encryptedData":"ZA==","iv":"aXY=","signature":"ab"}"#,
        ] {
            assert_eq!(
                parse_request(bad),
                Err(BAD_REQUEST),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(parse_request(b"[]"), Err(error::UNREADABLE_BODY));
        assert_eq!(parse_request(b"{"), Err(error::UNREADABLE_BODY));
    }

    #[test]
    fn every_wxbiz_error_is_a_400_with_the_official_code() {
        for e in [
            WxBizError::IllegalAesKey,
            WxBizError::IllegalIv,
            WxBizError::IllegalBuffer,
            WxBizError::DecodeBase64,
            WxBizError::SignatureMismatch,
        ] {
            let api = wxbiz_error(e);
            assert_eq!(api.status, StatusCode::BAD_REQUEST);
            assert_eq!(api.errcode, i64::from(e.code()));
        }
    }

    #[test]
    fn data_naming_another_openid_is_refused() {
        let key = "HyVFkGl5F5OQWJZZaNzBBg==";
        let iv = [7u8; 16];
        let plain = br#"{"openId":"oOther","watermark":{"appid":"wx00000000000000a1"}}"#;
        let req = DecryptRequest {
            encrypted_data: wxbiz::encrypt(key, &iv, plain).unwrap(),
            iv: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, iv),
            signed: None,
        };
        assert_eq!(
            open(key, &req, "wx00000000000000a1", "oMe"),
            Err(WxBizError::IllegalBuffer)
        );
        assert!(open(key, &req, "wx00000000000000a1", "oOther").is_ok());
    }
}
