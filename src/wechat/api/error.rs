//! [`ApiError`]: every non-success outcome of the access-token APIs (stable_token, phone
//! number, session-key check and reset), classified per API, since WeChat gives one errcode
//! different meanings on different endpoints (40013 is our appid on stable_token, another app's
//! phone code on getuserphonenumber).
//!
//! Nothing here carries WeChat's `errmsg`, the URL, the token, a code or the AppSecret: only the
//! IP WeChat saw on 40164, which is ours and what an operator must allow-list.

use std::net::IpAddr;

use crate::wechat::{ERRCODE_BUSY, ERRCODE_RATE_LIMITED, ErrorClass, RetryReason};

/// Which API answered: the errcode tables differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    StableToken,
    PhoneNumber,
    CheckSession,
    ResetSessionKey,
}

impl Api {
    /// The name in logs.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Api::StableToken => "stable_token",
            Api::PhoneNumber => "getuserphonenumber",
            Api::CheckSession => "checksession",
            Api::ResetSessionKey => "resetusersessionkey",
        }
    }
}

/// `errcode` of "caller IP not in the allow-list"; its errmsg names the IP WeChat saw.
pub const ERRCODE_IP_NOT_ALLOWED: i64 = 40164;

/// A call to one of the access-token APIs that did not give its answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// -1, a 5xx or a gateway's page, a timeout, no connection, a broken one, an unusable body.
    #[error("WeChat failed transiently: {reason}")]
    Retryable { reason: RetryReason },
    /// 45011.
    #[error("WeChat's frequency limit reached (errcode 45011)")]
    RateLimited,
    /// 40001 / 42001 / 40014: the token failed; the caller invalidates it (if still the same) and
    /// re-sends once.
    #[error("WeChat refused the access_token (errcode {errcode})")]
    TokenRejected { errcode: i64 },
    /// 40029 (phone code invalid/used/expired), 40013 on the phone API (code of another app),
    /// 40003 (openid not the code's or unknown), 40097, 87007, 87008, and 87009 on the reset.
    #[error("WeChat rejected the request (errcode {errcode})")]
    Rejected { errcode: i64 },
    /// Needs an operator: 40164 (with the IP WeChat saw, parsed from errmsg), 40243, 89503,
    /// 89506, 89507, 45009, 40001/40013/40125/41002/41004 on stable_token, 41001, 48001, 40002,
    /// 43002.
    #[error("WeChat refused our app, credentials or server (errcode {errcode}{})",
            seen_ip.map(|ip| format!(", caller IP {ip}")).unwrap_or_default())]
    Operator {
        errcode: i64,
        seen_ip: Option<IpAddr>,
    },
    #[error("WeChat answered unknown errcode {errcode}")]
    Unexpected { errcode: i64 },
}

impl ApiError {
    pub(crate) fn retryable(reason: RetryReason) -> Self {
        ApiError::Retryable { reason }
    }

    /// Classifies a non-zero errcode answered by `api`; `errmsg` is read only for 40164's IP.
    pub(crate) fn from_errcode(api: Api, errcode: i64, errmsg: Option<&str>) -> Self {
        let token_api = api != Api::StableToken;
        match errcode {
            ERRCODE_BUSY => ApiError::retryable(RetryReason::Busy),
            ERRCODE_RATE_LIMITED => ApiError::RateLimited,
            // On stable_token there is no token to reject: 40001 there is the AppSecret.
            40001 | 42001 | 40014 if token_api => ApiError::TokenRejected { errcode },
            40029 | 40013 if api == Api::PhoneNumber => ApiError::Rejected { errcode },
            40003 if token_api => ApiError::Rejected { errcode },
            40097 | 87007 | 87008 | 87009
                if matches!(api, Api::CheckSession | Api::ResetSessionKey) =>
            {
                ApiError::Rejected { errcode }
            }
            40001 | 40013 | 40125 | 41002 | 41004 if api == Api::StableToken => {
                ApiError::Operator {
                    errcode,
                    seen_ip: None,
                }
            }
            ERRCODE_IP_NOT_ALLOWED => ApiError::Operator {
                errcode,
                seen_ip: errmsg.and_then(seen_ip),
            },
            40243 | 89503 | 89506 | 89507 | 45009 | 41001 | 48001 | 40002 | 43002 => {
                ApiError::Operator {
                    errcode,
                    seen_ip: None,
                }
            }
            _ => ApiError::Unexpected { errcode },
        }
    }

    /// WeChat's errcode, or -1 for a transient failure that had none (timeout, 502, …).
    pub fn errcode(&self) -> i64 {
        match self {
            ApiError::Retryable { .. } => ERRCODE_BUSY,
            ApiError::RateLimited => ERRCODE_RATE_LIMITED,
            ApiError::TokenRejected { errcode }
            | ApiError::Rejected { errcode }
            | ApiError::Operator { errcode, .. }
            | ApiError::Unexpected { errcode } => *errcode,
        }
    }

    /// The class in one word. A rejected token is [`ErrorClass::Retryable`]: the caller re-sends
    /// once with a fresh token (match [`ApiError::TokenRejected`] to do that); an operator's
    /// error is [`ErrorClass::Misconfigured`].
    pub fn class(&self) -> ErrorClass {
        match self {
            ApiError::Retryable { .. } | ApiError::TokenRejected { .. } => ErrorClass::Retryable,
            ApiError::RateLimited => ErrorClass::RateLimited,
            ApiError::Rejected { .. } => ErrorClass::Rejected,
            ApiError::Operator { .. } => ErrorClass::Misconfigured,
            ApiError::Unexpected { .. } => ErrorClass::Unexpected,
        }
    }

    /// Whether the call may have reached the API's handler (and so spent a phone code). `false`
    /// only when it cannot have: no connection was made, or WeChat answered -1, 45011 or a token
    /// error, which it does before looking at the request.
    pub fn may_have_reached(&self) -> bool {
        !matches!(
            self,
            ApiError::Retryable {
                reason: RetryReason::Connect | RetryReason::Busy
            } | ApiError::RateLimited
                | ApiError::TokenRejected { .. }
        )
    }
}

/// The IP in a 40164 errmsg, e.g. `invalid ip 1.2.3.4 ipv6 ::ffff:1.2.3.4, not in whitelist
/// rid: ...`: the word after `invalid ip`, else the first word that is an IP.
fn seen_ip(errmsg: &str) -> Option<IpAddr> {
    let words = |s: &str| {
        s.split(|c: char| c.is_whitespace() || c == ',')
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let lower = errmsg.to_ascii_lowercase();
    let after_marker = lower
        .find("invalid ip")
        .and_then(|at| words(&lower[at + "invalid ip".len()..]).into_iter().next())
        .and_then(|w| w.parse().ok());
    after_marker.or_else(|| words(&lower).iter().find_map(|w| w.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(api: Api, errcode: i64) -> ApiError {
        ApiError::from_errcode(api, errcode, None)
    }

    #[test]
    fn token_errors_are_token_rejections_on_every_api_that_takes_a_token() {
        for api in [Api::PhoneNumber, Api::CheckSession, Api::ResetSessionKey] {
            for errcode in [40001, 42001, 40014] {
                let err = class(api, errcode);
                assert_eq!(err, ApiError::TokenRejected { errcode }, "{api:?}");
                assert!(!err.may_have_reached());
                assert_eq!(err.class(), ErrorClass::Retryable);
            }
        }
        assert!(matches!(
            class(Api::StableToken, 40001),
            ApiError::Operator { errcode: 40001, .. }
        ));
    }

    #[test]
    fn the_same_errcode_means_another_thing_on_another_api() {
        assert_eq!(
            class(Api::PhoneNumber, 40013),
            ApiError::Rejected { errcode: 40013 }
        );
        assert_eq!(
            class(Api::StableToken, 40013).class(),
            ErrorClass::Misconfigured
        );
        assert_eq!(
            class(Api::PhoneNumber, 40029),
            ApiError::Rejected { errcode: 40029 }
        );
        assert_eq!(
            class(Api::StableToken, 40029),
            ApiError::Unexpected { errcode: 40029 }
        );
        assert_eq!(
            class(Api::ResetSessionKey, 87009),
            ApiError::Rejected { errcode: 87009 }
        );
        assert_eq!(
            class(Api::PhoneNumber, 87009),
            ApiError::Unexpected { errcode: 87009 }
        );
    }

    #[test]
    fn every_operator_errcode_needs_an_operator_on_every_api() {
        let apis = [
            Api::StableToken,
            Api::PhoneNumber,
            Api::CheckSession,
            Api::ResetSessionKey,
        ];
        for api in apis {
            for errcode in [
                40164, 40243, 89503, 89506, 89507, 45009, 41001, 48001, 40002, 43002,
            ] {
                let err = class(api, errcode);
                assert!(
                    matches!(err, ApiError::Operator { .. }),
                    "{api:?} {errcode}"
                );
                assert_eq!(err.errcode(), errcode);
                assert!(err.may_have_reached());
            }
        }
        for errcode in [40125, 41002, 41004] {
            assert_eq!(
                class(Api::StableToken, errcode).class(),
                ErrorClass::Misconfigured
            );
        }
    }

    #[test]
    fn busy_and_rate_limit_and_connect_cannot_have_reached_the_handler() {
        for api in [Api::StableToken, Api::PhoneNumber] {
            assert_eq!(class(api, -1), ApiError::retryable(RetryReason::Busy));
            assert_eq!(class(api, 45011), ApiError::RateLimited);
            assert!(!class(api, -1).may_have_reached());
            assert!(!class(api, 45011).may_have_reached());
        }
        assert!(!ApiError::retryable(RetryReason::Connect).may_have_reached());
        for reason in [
            RetryReason::Timeout,
            RetryReason::Network,
            RetryReason::BadBody,
            RetryReason::HttpStatus(502),
        ] {
            let err = ApiError::retryable(reason);
            assert!(err.may_have_reached(), "{reason:?}");
            assert_eq!(err.errcode(), -1);
        }
        assert_eq!(
            class(Api::PhoneNumber, 99999).class(),
            ErrorClass::Unexpected
        );
    }

    #[test]
    fn a_40164_carries_the_ip_wechat_saw() {
        let msg = "invalid ip 1.2.3.4 ipv6 ::ffff:1.2.3.4, not in whitelist rid: 65a1-2b3c";
        assert_eq!(
            ApiError::from_errcode(Api::StableToken, 40164, Some(msg)),
            ApiError::Operator {
                errcode: 40164,
                seen_ip: Some("1.2.3.4".parse().unwrap())
            }
        );
        assert_eq!(
            seen_ip("invalid ip 2001:db8::7, not in whitelist"),
            Some("2001:db8::7".parse().unwrap())
        );
        assert_eq!(
            seen_ip("caller ip 10.0.0.9 not in whitelist"),
            Some("10.0.0.9".parse().unwrap())
        );
        assert_eq!(seen_ip("invalid ip, not in whitelist rid: 1"), None);
        assert_eq!(seen_ip(""), None);
        let err = ApiError::from_errcode(Api::PhoneNumber, 40164, None);
        assert_eq!(
            err,
            ApiError::Operator {
                errcode: 40164,
                seen_ip: None
            }
        );
        assert!(
            ApiError::from_errcode(Api::StableToken, 40164, Some(msg))
                .to_string()
                .contains("1.2.3.4")
        );
    }
}
