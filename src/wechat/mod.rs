//! The WeChat client ([`WechatClient`]): code2Session and the classification of every answer
//! WeChat can give it ([`ExchangeError`], [`ErrorClass`], [`RetryReason`]); and the
//! access-token APIs (stable_token, phone number, session-key check and reset; [`ApiError`]).
//!
//! - `client`: the HTTP call (TLS always verified, pooled, timeouts, capped body);
//! - `api`: the access-token APIs on the same client;
//! - `parse`: lenient reading of WeChat's answers;
//! - `error`: what each outcome means for the caller.
//!
//! The `session_key` is wrapped in [`SessionKey`] so that it cannot end up in a log, an event
//! or an answer to a client by accident.

mod api;
mod client;
mod error;
mod parse;

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

pub use api::{
    AccessToken, ApiError, ERRCODE_IP_NOT_ALLOWED, FetchedToken, PhoneInfo, SessionKeyCheck,
    session_key_signature,
};
pub use client::{ClientOptions, DEFAULT_BASE_URL, MAX_BODY_BYTES, WechatClient};
pub use error::{
    ClientBuildError, ERRCODE_BUSY, ERRCODE_RATE_LIMITED, ErrorClass, ExchangeError, RetryReason,
};
/// For the fuzz entry points in [`crate::fuzzing`].
pub(crate) use parse::parse_answer;

/// A user's WeChat `session_key` (base64 of 16 bytes, as WeChat sends it). Redacted in
/// `Debug`; no `Display`, no `Serialize`: reading it takes an explicit [`SessionKey::expose`].
#[derive(Clone)]
pub struct SessionKey(SecretString);

impl SessionKey {
    pub fn new(key: String) -> Self {
        SessionKey(SecretString::from(key))
    }

    /// The key as WeChat sent it, for decryption, signature checks or sealing.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

/// A successful code2Session exchange.
#[derive(Debug, Clone)]
pub struct Session {
    pub openid: String,
    /// Present only when the mini program is bound to an Open Platform account.
    pub unionid: Option<String>,
    pub session_key: SessionKey,
}
