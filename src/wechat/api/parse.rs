//! The access-token APIs' answers, read with the lenient reader every WeChat answer goes
//! through ([`crate::wechat::parse::read_answer`]); then each API's own fields. A success
//! without them is a bad body, never a guess.

use std::time::Duration;

use serde_json::{Map, Value};

use super::{AccessToken, FetchedToken, PhoneInfo, SessionKeyCheck, error::Api, error::ApiError};
use crate::wechat::{
    RetryReason, SessionKey,
    parse::{Reading, errcode_of, non_empty_str, read_answer},
};

/// One answer's outcome plus its errmsg (cut, not redacted) for the caller's debug log.
#[derive(Debug)]
pub(crate) struct ApiParsed<T> {
    pub(crate) result: Result<T, ApiError>,
    pub(crate) errmsg: Option<String>,
}

const BAD_BODY: ApiError = ApiError::Retryable {
    reason: RetryReason::BadBody,
};

/// Reads an answer of `api` and hands a success's object to `fields`.
fn parse_with<T>(
    api: Api,
    status: u16,
    body: &[u8],
    fields: impl FnOnce(&Map<String, Value>) -> Option<T>,
) -> ApiParsed<T> {
    let (reading, errmsg) = read_answer(status, body);
    let result = match reading {
        Reading::Success(object) => fields(&object).ok_or(BAD_BODY),
        Reading::Errcode(code) => Err(ApiError::from_errcode(api, code, errmsg.as_deref())),
        Reading::HttpStatus(status) => Err(ApiError::retryable(RetryReason::HttpStatus(status))),
        Reading::BadBody => Err(BAD_BODY),
    };
    ApiParsed { result, errmsg }
}

pub(crate) fn parse_stable_token(status: u16, body: &[u8]) -> ApiParsed<FetchedToken> {
    parse_with(Api::StableToken, status, body, |o| {
        let token = non_empty_str(o, "access_token")?;
        let expires_in = integer(o.get("expires_in")?).filter(|s| *s > 0)?;
        Some(FetchedToken {
            token: AccessToken::new(token.to_owned()),
            expires_in: Duration::from_secs(u64::try_from(expires_in).ok()?),
        })
    })
}

pub(crate) fn parse_phone_number(status: u16, body: &[u8]) -> ApiParsed<PhoneInfo> {
    parse_with(Api::PhoneNumber, status, body, |o| {
        let info = o.get("phone_info")?.as_object()?;
        let watermark = info.get("watermark")?.as_object()?;
        Some(PhoneInfo {
            phone_number: non_empty_str(info, "phoneNumber")?.to_owned(),
            pure_phone_number: non_empty_str(info, "purePhoneNumber")?.to_owned(),
            country_code: country_code(info.get("countryCode")?)?,
            watermark_appid: non_empty_str(watermark, "appid")?.to_owned(),
            watermark_timestamp: integer(watermark.get("timestamp")?)?,
        })
    })
}

/// 87009 is not an error here: it is the answer "the key you hold is not the current one".
pub(crate) fn parse_check_session(status: u16, body: &[u8]) -> ApiParsed<SessionKeyCheck> {
    let mut parsed = parse_with(Api::CheckSession, status, body, |_| {
        Some(SessionKeyCheck::Current)
    });
    if parsed.result == Err(ApiError::Rejected { errcode: 87009 }) {
        parsed.result = Ok(SessionKeyCheck::Stale);
    }
    parsed
}

pub(crate) fn parse_reset_session_key(status: u16, body: &[u8]) -> ApiParsed<SessionKey> {
    parse_with(Api::ResetSessionKey, status, body, |o| {
        Some(SessionKey::new(non_empty_str(o, "session_key")?.to_owned()))
    })
}

/// "86" or 86 → "86"; anything else (empty, fractional, an object) is no country code.
fn country_code(value: &Value) -> Option<String> {
    let code = match value {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.as_u64()?.to_string(),
        _ => return None,
    };
    (!code.is_empty() && code.bytes().all(|b| b.is_ascii_digit())).then_some(code)
}

/// An integer written as a number or a numeric string (WeChat is not consistent).
fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Null => None,
        Value::String(s) if s.trim().is_empty() => None,
        other => errcode_of(Some(other)).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::ErrorClass;

    const PHONE_OK: &str = r#"{"errcode":0,"errmsg":"ok","phone_info":{"phoneNumber":"+8613800000000",
        "purePhoneNumber":"13800000000","countryCode":COUNTRY,
        "watermark":{"timestamp":1700000000,"appid":"wx1111111111111111"}}}"#;

    fn phone(country: &str) -> Result<PhoneInfo, ApiError> {
        parse_phone_number(200, PHONE_OK.replace("COUNTRY", country).as_bytes()).result
    }

    #[test]
    fn a_country_code_is_a_string_whether_sent_as_a_string_or_a_number() {
        for sent in [r#""86""#, "86"] {
            let info = phone(sent).unwrap();
            assert_eq!(info.country_code, "86", "{sent}");
            assert_eq!(info.phone_number, "+8613800000000");
            assert_eq!(info.pure_phone_number, "13800000000");
            assert_eq!(info.watermark_appid, "wx1111111111111111");
            assert_eq!(info.watermark_timestamp, 1_700_000_000);
        }
        assert_eq!(phone(r#""1""#).unwrap().country_code, "1");
        for bad in [r#""""#, "86.5", "-86", r#""8a""#, "null", "{}"] {
            assert_eq!(phone(bad), Err(BAD_BODY), "{bad}");
        }
    }

    #[test]
    fn a_phone_success_without_its_fields_is_a_bad_body() {
        for body in [
            r#"{"errcode":0,"errmsg":"ok"}"#,
            r#"{"errcode":0,"phone_info":null}"#,
            r#"{"phone_info":{"phoneNumber":"1","purePhoneNumber":"1","countryCode":"86"}}"#,
            r#"{"phone_info":{"phoneNumber":"","purePhoneNumber":"1","countryCode":"86",
                "watermark":{"timestamp":1,"appid":"wx"}}}"#,
            r#"{"phone_info":{"phoneNumber":"1","purePhoneNumber":"1","countryCode":"86",
                "watermark":{"timestamp":1}}}"#,
        ] {
            let err = parse_phone_number(200, body.as_bytes()).result.unwrap_err();
            assert_eq!(err, BAD_BODY, "{body}");
            assert!(err.may_have_reached());
        }
    }

    #[test]
    fn a_phone_watermark_timestamp_may_be_a_numeric_string() {
        let body = PHONE_OK
            .replace("COUNTRY", "86")
            .replace("1700000000", r#""1700000001""#);
        let info = parse_phone_number(200, body.as_bytes()).result.unwrap();
        assert_eq!(info.watermark_timestamp, 1_700_000_001);
    }

    #[test]
    fn phone_errcodes_are_classified_for_the_phone_api() {
        let err = |b: &str| parse_phone_number(200, b.as_bytes()).result.unwrap_err();
        assert_eq!(
            err(r#"{"errcode":40029,"errmsg":"invalid code rid: 1"}"#),
            ApiError::Rejected { errcode: 40029 }
        );
        assert_eq!(
            err(r#"{"errcode":"40013"}"#),
            ApiError::Rejected { errcode: 40013 }
        );
        assert_eq!(
            err(r#"{"errcode":42001}"#),
            ApiError::TokenRejected { errcode: 42001 }
        );
        assert_eq!(
            parse_phone_number(502, b"<html>bad gateway</html>").result,
            Err(ApiError::retryable(RetryReason::HttpStatus(502)))
        );
        assert_eq!(parse_phone_number(200, b"garbage").result, Err(BAD_BODY));
    }

    #[test]
    fn a_stable_token_needs_a_token_and_a_positive_lifetime() {
        let ok = parse_stable_token(200, br#"{"access_token":"T0K","expires_in":7200}"#);
        let fetched = ok.result.unwrap();
        assert_eq!(fetched.token.expose(), "T0K");
        assert_eq!(fetched.expires_in, Duration::from_secs(7200));
        let string_lifetime =
            parse_stable_token(200, br#"{"access_token":"T","expires_in":"300"}"#);
        assert_eq!(string_lifetime.result.unwrap().expires_in.as_secs(), 300);
        for body in [
            r#"{"access_token":"T"}"#,
            r#"{"access_token":"","expires_in":7200}"#,
            r#"{"access_token":"T","expires_in":0}"#,
            r#"{"access_token":"T","expires_in":-5}"#,
            r#"{"access_token":"T","expires_in":null}"#,
            r#"{"expires_in":7200}"#,
        ] {
            let parsed = parse_stable_token(200, body.as_bytes());
            assert_eq!(parsed.result.unwrap_err(), BAD_BODY, "{body}");
        }
    }

    #[test]
    fn a_stable_token_errmsg_is_kept_for_the_log_and_its_ip_read() {
        let body = br#"{"errcode":40164,"errmsg":"invalid ip 1.2.3.4 ipv6 ::ffff:1.2.3.4, not in whitelist rid: 6a"}"#;
        let parsed = parse_stable_token(200, body);
        assert_eq!(
            parsed.result.unwrap_err(),
            ApiError::Operator {
                errcode: 40164,
                seen_ip: Some("1.2.3.4".parse().unwrap())
            }
        );
        assert!(parsed.errmsg.unwrap().contains("rid: 6a"));
    }

    #[test]
    fn checksession_answers_current_on_0_and_stale_on_87009() {
        let check = |b: &str| parse_check_session(200, b.as_bytes()).result;
        assert_eq!(
            check(r#"{"errcode":0,"errmsg":"ok"}"#),
            Ok(SessionKeyCheck::Current)
        );
        assert_eq!(
            check(r#"{"errcode":87009,"errmsg":"invalid signature"}"#),
            Ok(SessionKeyCheck::Stale)
        );
        assert_eq!(
            check(r#"{"errcode":87008}"#),
            Err(ApiError::Rejected { errcode: 87008 })
        );
        assert_eq!(check("not json"), Err(BAD_BODY));
        assert_eq!(
            parse_check_session(500, b"").result.unwrap_err().class(),
            ErrorClass::Retryable
        );
    }

    #[test]
    fn a_reset_answers_the_new_key_or_a_bad_body() {
        let ok = parse_reset_session_key(
            200,
            br#"{"errcode":0,"errmsg":"ok","openid":"o1","session_key":"bmV3a2V5"}"#,
        );
        assert_eq!(ok.result.unwrap().expose(), "bmV3a2V5");
        let missing = parse_reset_session_key(200, br#"{"errcode":0,"openid":"o1"}"#);
        assert_eq!(missing.result.unwrap_err(), BAD_BODY);
        let stale = parse_reset_session_key(200, br#"{"errcode":87009}"#);
        assert_eq!(
            stale.result.unwrap_err(),
            ApiError::Rejected { errcode: 87009 }
        );
    }
}
