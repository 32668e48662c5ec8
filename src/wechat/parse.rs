//! Lenient reading of WeChat's answers ([`read_answer`], shared by every API) and of a
//! code2Session answer in particular ([`parse_answer`]): the body bytes are parsed as JSON whatever the
//! status and content type say (WeChat answers errors with HTTP 200 and `text/plain`), and
//! `errcode` may be absent, 0, a number or a numeric string. Unknown fields are ignored and
//! unknown errcodes kept as numbers.

use serde_json::{Map, Value};

use super::{
    Session, SessionKey,
    error::{ExchangeError, RetryReason},
};

/// The outcome of one answer, plus WeChat's `errmsg` (which carries the request id) for the
/// caller to log: it is never parsed, and never put into an error.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) result: Result<Session, ExchangeError>,
    pub(crate) errmsg: Option<String>,
}

/// errmsg is for logs only; a hostile or broken upstream must not be able to flood them.
const ERRMSG_LOG_MAX_CHARS: usize = 200;

/// What any WeChat answer says before its API's own fields are looked at: the reading shared by
/// code2Session and the access-token APIs.
#[derive(Debug)]
pub(crate) enum Reading {
    /// A success status and errcode 0 (or none): the API's fields are in this object.
    Success(Map<String, Value>),
    /// A non-zero errcode, whatever the status said.
    Errcode(i64),
    /// An error status without an errcode WeChat would give.
    HttpStatus(u16),
    /// Not a JSON object, or an errcode that cannot be read, behind a success status.
    BadBody,
}

/// Reads one answer leniently; the errmsg (cut, not yet redacted) is for the caller's debug log.
pub(crate) fn read_answer(status: u16, body: &[u8]) -> (Reading, Option<String>) {
    let object = json_object(body);
    let errmsg = object.as_ref().and_then(errmsg_of);
    let success_status = (200..300).contains(&status);

    let errcode = match object.as_ref().map(|o| errcode_of(o.get("errcode"))) {
        Some(Ok(code)) => Some(code),
        // An errcode we cannot read is no errcode: don't guess a class from it.
        Some(Err(())) if success_status => return (Reading::BadBody, errmsg),
        Some(Err(())) | None => None,
    };
    // WeChat's own answer wins over the status: a non-zero errcode is classified as such even
    // behind an unusual status.
    let reading = match (errcode, object) {
        (Some(code), _) if code != 0 => Reading::Errcode(code),
        // A gateway's error page, or a "success" body behind an error status: not to be trusted.
        _ if !success_status => Reading::HttpStatus(status),
        (_, Some(object)) => Reading::Success(object),
        (_, None) => Reading::BadBody,
    };
    (reading, errmsg)
}

pub(crate) fn parse_answer(status: u16, body: &[u8]) -> Parsed {
    let (reading, errmsg) = read_answer(status, body);
    let result = match reading {
        Reading::Errcode(code) => Err(ExchangeError::from_errcode(code).expect("non-zero")),
        Reading::HttpStatus(status) => {
            Err(ExchangeError::retryable(RetryReason::HttpStatus(status)))
        }
        Reading::BadBody => Err(ExchangeError::retryable(RetryReason::BadBody)),
        Reading::Success(object) => {
            session_of(&object).ok_or(ExchangeError::retryable(RetryReason::BadBody))
        }
    };
    Parsed { result, errmsg }
}

fn session_of(object: &Map<String, Value>) -> Option<Session> {
    Some(Session {
        openid: non_empty_str(object, "openid")?.to_owned(),
        unionid: non_empty_str(object, "unionid").map(str::to_owned),
        session_key: SessionKey::new(non_empty_str(object, "session_key")?.to_owned()),
    })
}

fn json_object(body: &[u8]) -> Option<Map<String, Value>> {
    // A UTF-8 byte-order mark is the kind of thing a proxy adds; it is not worth a retry.
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    match serde_json::from_slice(body).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Absent, null or "" → 0; an integer (also written 40029.0) or a numeric string → itself.
pub(crate) fn errcode_of(value: Option<&Value>) -> Result<i64, ()> {
    match value {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                    .map(|f| f as i64)
            })
            .ok_or(()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(0),
        Some(Value::String(s)) => s.trim().parse().map_err(|_| ()),
        Some(_) => Err(()),
    }
}

fn errmsg_of(object: &Map<String, Value>) -> Option<String> {
    match object.get("errmsg")? {
        Value::String(s) => Some(s.chars().take(ERRMSG_LOG_MAX_CHARS).collect()),
        _ => None,
    }
}

pub(crate) fn non_empty_str<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    object
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::ErrorClass;

    fn err(status: u16, body: &str) -> ExchangeError {
        parse_answer(status, body.as_bytes()).result.unwrap_err()
    }

    const BAD_BODY: ExchangeError = ExchangeError::Retryable {
        reason: RetryReason::BadBody,
    };

    #[test]
    fn errcode_is_read_as_number_string_float_or_absence() {
        assert_eq!(errcode_of(None), Ok(0));
        assert_eq!(errcode_of(Some(&Value::Null)), Ok(0));
        assert_eq!(errcode_of(Some(&serde_json::json!(40029))), Ok(40029));
        assert_eq!(errcode_of(Some(&serde_json::json!(-1))), Ok(-1));
        assert_eq!(errcode_of(Some(&serde_json::json!("40163"))), Ok(40163));
        assert_eq!(errcode_of(Some(&serde_json::json!(" -1 "))), Ok(-1));
        assert_eq!(errcode_of(Some(&serde_json::json!(45011.0))), Ok(45011));
        assert_eq!(errcode_of(Some(&serde_json::json!(""))), Ok(0));
        assert_eq!(errcode_of(Some(&serde_json::json!("oops"))), Err(()));
        assert_eq!(errcode_of(Some(&serde_json::json!(1.5))), Err(()));
        assert_eq!(errcode_of(Some(&serde_json::json!([1]))), Err(()));
    }

    #[test]
    fn a_success_needs_both_openid_and_session_key() {
        let ok = parse_answer(200, br#"{"session_key":"k==","openid":"o1"}"#);
        let session = ok.result.unwrap();
        assert_eq!(session.openid, "o1");
        assert_eq!(session.unionid, None);
        assert_eq!(session.session_key.expose(), "k==");
        assert_eq!(err(200, r#"{"openid":"o1"}"#), BAD_BODY);
        assert_eq!(err(200, r#"{"session_key":"k==","openid":""}"#), BAD_BODY);
        assert_eq!(err(200, r#"{"session_key":7,"openid":"o"}"#), BAD_BODY);
        assert_eq!(err(200, "{}"), BAD_BODY);
    }

    #[test]
    fn an_empty_unionid_is_no_unionid() {
        let parsed = parse_answer(200, br#"{"session_key":"k","openid":"o","unionid":""}"#);
        assert_eq!(parsed.result.unwrap().unionid, None);
    }

    #[test]
    fn a_byte_order_mark_and_whitespace_do_not_break_the_parse() {
        let body = b"\xEF\xBB\xBF \n{\"errcode\":40029,\"errmsg\":\"invalid code, rid: 1\"}\n";
        let parsed = parse_answer(200, body);
        assert_eq!(
            parsed.result.unwrap_err(),
            ExchangeError::Rejected { errcode: 40029 }
        );
        assert_eq!(parsed.errmsg.as_deref(), Some("invalid code, rid: 1"));
    }

    #[test]
    fn non_objects_and_non_json_are_bad_bodies() {
        for body in [
            "",
            "null",
            "[]",
            "\"x\"",
            "40029",
            "<html>",
            "{\"errcode\":",
        ] {
            assert_eq!(err(200, body), BAD_BODY, "{body:?}");
        }
        assert_eq!(err(200, r#"{"errcode":"nope"}"#), BAD_BODY);
    }

    #[test]
    fn an_error_status_without_an_errcode_is_that_status() {
        assert_eq!(
            err(502, "<html>502</html>"),
            ExchangeError::retryable(RetryReason::HttpStatus(502))
        );
        assert_eq!(
            err(404, r#"{"errcode":0}"#),
            ExchangeError::retryable(RetryReason::HttpStatus(404))
        );
        assert_eq!(
            err(500, r#"{"openid":"o","session_key":"k"}"#),
            ExchangeError::retryable(RetryReason::HttpStatus(500))
        );
    }

    #[test]
    fn an_errcode_behind_an_error_status_still_classifies() {
        assert_eq!(err(503, r#"{"errcode":-1}"#).class(), ErrorClass::Retryable);
        assert_eq!(
            err(403, r#"{"errcode":40164}"#).class(),
            ErrorClass::Misconfigured
        );
    }

    #[test]
    fn a_very_long_errmsg_is_cut_for_the_logs() {
        let body = format!(r#"{{"errcode":40029,"errmsg":"{}"}}"#, "x".repeat(10_000));
        let parsed = parse_answer(200, body.as_bytes());
        assert_eq!(parsed.errmsg.unwrap().len(), ERRMSG_LOG_MAX_CHARS);
    }
}
