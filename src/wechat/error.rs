//! The classification of every code2Session outcome that is not a session, so that a caller
//! can act (retry, back off, tell the user, alert) without knowing WeChat's numbers.
//!
//! Nothing here carries WeChat's `errmsg`, the request URL, the code or the AppSecret: these
//! errors end up in logs, events and answers to clients.

use std::fmt;

/// What a caller should do, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Transient: try again later, with care (see [`ExchangeError::may_have_consumed_code`]).
    Retryable,
    /// 45011: wait for the next quota window, then retry while the code is valid.
    RateLimited,
    /// The code or the user is bad: tell the client to call `wx.login` again.
    Rejected,
    /// Our appid, secret or server IP is wrong: alert an operator; retrying cannot help.
    Misconfigured,
    /// An errcode we do not know: give up rather than burn quota.
    Unexpected,
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorClass::Retryable => "retryable",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::Rejected => "rejected",
            ErrorClass::Misconfigured => "misconfigured",
            ErrorClass::Unexpected => "unexpected",
        })
    }
}

/// Why a transient failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum RetryReason {
    /// errcode -1, "system busy". WeChat does not consume the code.
    #[error("WeChat is busy (errcode -1)")]
    Busy,
    /// A non-2xx status without a WeChat errcode in the body (typically a gateway's 502).
    #[error("HTTP status {0}")]
    HttpStatus(u16),
    /// No complete answer within the request timeout. The call may have reached WeChat.
    #[error("timed out")]
    Timeout,
    /// No connection (DNS, TCP, TLS). The request was never sent.
    #[error("could not connect")]
    Connect,
    /// The connection broke after it was made (reset, closed early). The call may have
    /// reached WeChat.
    #[error("connection failed mid-request")]
    Network,
    /// An answer that is not a usable code2Session answer: not JSON, truncated, oversized,
    /// HTML, or a "success" without openid or session_key.
    #[error("unusable answer body")]
    BadBody,
}

/// A code2Session call that did not produce a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ExchangeError {
    #[error("code2Session failed transiently: {reason}")]
    Retryable { reason: RetryReason },
    #[error("code2Session frequency limit reached (errcode 45011)")]
    RateLimited,
    /// 40029 invalid/expired code, 40163 code already used, 40226 high-risk user,
    /// 41008 missing code.
    #[error("code2Session rejected the code or user (errcode {errcode})")]
    Rejected { errcode: i64 },
    /// 40013 invalid appid, 40125 invalid secret, 41002/41004 missing appid/secret,
    /// 40164 IP not allow-listed, 40243 secret frozen.
    #[error("code2Session refused our app credentials or IP (errcode {errcode})")]
    Misconfigured { errcode: i64 },
    #[error("code2Session answered unknown errcode {errcode}")]
    Unexpected { errcode: i64 },
}

/// `errcode` of the frequency limit.
pub const ERRCODE_RATE_LIMITED: i64 = 45011;
/// `errcode` of "system busy".
pub const ERRCODE_BUSY: i64 = -1;

impl ExchangeError {
    /// Classifies a WeChat errcode; `None` for 0 (success).
    pub fn from_errcode(errcode: i64) -> Option<Self> {
        Some(match errcode {
            0 => return None,
            ERRCODE_BUSY => ExchangeError::Retryable {
                reason: RetryReason::Busy,
            },
            ERRCODE_RATE_LIMITED => ExchangeError::RateLimited,
            40029 | 40163 | 40226 | 41008 => ExchangeError::Rejected { errcode },
            40013 | 40125 | 41002 | 41004 | 40164 | 40243 => {
                ExchangeError::Misconfigured { errcode }
            }
            _ => ExchangeError::Unexpected { errcode },
        })
    }

    pub(crate) fn retryable(reason: RetryReason) -> Self {
        ExchangeError::Retryable { reason }
    }

    /// WeChat's errcode, or -1 for a transient failure that had none (timeout, 502, …).
    pub fn errcode(&self) -> i64 {
        match self {
            ExchangeError::Retryable { .. } => ERRCODE_BUSY,
            ExchangeError::RateLimited => ERRCODE_RATE_LIMITED,
            ExchangeError::Rejected { errcode }
            | ExchangeError::Misconfigured { errcode }
            | ExchangeError::Unexpected { errcode } => *errcode,
        }
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            ExchangeError::Retryable { .. } => ErrorClass::Retryable,
            ExchangeError::RateLimited => ErrorClass::RateLimited,
            ExchangeError::Rejected { .. } => ErrorClass::Rejected,
            ExchangeError::Misconfigured { .. } => ErrorClass::Misconfigured,
            ExchangeError::Unexpected { .. } => ErrorClass::Unexpected,
        }
    }

    /// Whether a later attempt with the same code can succeed: transient failures and the
    /// frequency limit (after the window). Whether it is *safe* to retry is a separate
    /// question: see [`ExchangeError::may_have_consumed_code`].
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ExchangeError::Retryable { .. } | ExchangeError::RateLimited
        )
    }

    /// Whether WeChat may have consumed the code in this call. `false` only when we know it did
    /// not: no connection was made, or WeChat said busy (-1) or rate-limited (45011), which it
    /// answers before looking at the code. After a timeout or a broken connection a retry may
    /// meet 40163 even though the first call "failed".
    pub fn may_have_consumed_code(&self) -> bool {
        !matches!(
            self,
            ExchangeError::Retryable {
                reason: RetryReason::Connect | RetryReason::Busy
            } | ExchangeError::RateLimited
        )
    }
}

/// Why a [`super::WechatClient`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    #[error("base_url is not an http(s) URL")]
    BaseUrl,
    #[error("extra_root_ca_pem holds no usable PEM certificate")]
    RootCa,
    #[error("could not build the HTTP client")]
    Http(#[source] reqwest::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_errcode_lands_in_its_class() {
        let cases = [
            (-1, ErrorClass::Retryable),
            (45011, ErrorClass::RateLimited),
            (40029, ErrorClass::Rejected),
            (40163, ErrorClass::Rejected),
            (40226, ErrorClass::Rejected),
            (41008, ErrorClass::Rejected),
            (40013, ErrorClass::Misconfigured),
            (40125, ErrorClass::Misconfigured),
            (41002, ErrorClass::Misconfigured),
            (41004, ErrorClass::Misconfigured),
            (40164, ErrorClass::Misconfigured),
            (40243, ErrorClass::Misconfigured),
            (99999, ErrorClass::Unexpected),
            (-2, ErrorClass::Unexpected),
        ];
        for (code, class) in cases {
            let err = ExchangeError::from_errcode(code).unwrap();
            assert_eq!(err.class(), class, "errcode {code}");
            assert_eq!(err.errcode(), code);
        }
        assert_eq!(ExchangeError::from_errcode(0), None);
    }

    #[test]
    fn only_busy_and_rate_limit_and_connect_are_known_not_to_consume_the_code() {
        let keeps = [
            ExchangeError::retryable(RetryReason::Busy),
            ExchangeError::retryable(RetryReason::Connect),
            ExchangeError::RateLimited,
        ];
        assert!(
            keeps
                .iter()
                .all(|e| !e.may_have_consumed_code() && e.is_retryable())
        );
        for reason in [
            RetryReason::Timeout,
            RetryReason::Network,
            RetryReason::BadBody,
            RetryReason::HttpStatus(502),
        ] {
            let err = ExchangeError::retryable(reason);
            assert!(
                err.may_have_consumed_code() && err.is_retryable(),
                "{reason:?}"
            );
            assert_eq!(err.errcode(), -1);
        }
        assert!(!ExchangeError::Rejected { errcode: 40163 }.is_retryable());
    }
}
