//! WeChat's access-token APIs on [`WechatClient`](super::WechatClient): `stable_token`, the
//! phone number (`getuserphonenumber`), and the session-key check and reset; their answers
//! ([`AccessToken`], [`FetchedToken`], [`PhoneInfo`], [`SessionKeyCheck`]) and errors
//! ([`ApiError`]).
//!
//! - `call`: the HTTP calls, on the same pooled client, timeouts, body cap, TLS and no-redirect
//!   policy as code2Session;
//! - `parse`: each answer's fields, after the lenient reading shared with code2Session;
//! - `error`: what each errcode means on each API.
//!
//! Which token to use, when to refetch it and whether a phone code may be sent again are the
//! caller's business; this layer makes one call and says what came back.

mod call;

mod error;
mod parse;

use std::{fmt, time::Duration};

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

pub use call::session_key_signature;
pub use error::{ApiError, ERRCODE_IP_NOT_ALLOWED};

use super::error::ClientBuildError;

/// An access_token: a credential for the whole app. Redacted in `Debug`; no `Display`, no
/// `Serialize`: reading it takes an explicit [`AccessToken::expose`].
#[derive(Clone)]
pub struct AccessToken(SecretString);

impl AccessToken {
    pub fn new(token: String) -> Self {
        AccessToken(SecretString::from(token))
    }

    /// The token as WeChat sent it, for a request's query or for sealing.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl PartialEq for AccessToken {
    /// Constant-time, so that comparing a presented token with the shared one leaks nothing.
    fn eq(&self, other: &Self) -> bool {
        self.expose()
            .as_bytes()
            .ct_eq(other.expose().as_bytes())
            .into()
    }
}

impl Eq for AccessToken {}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

/// A token from `stable_token`, with the lifetime it had left when WeChat answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedToken {
    pub token: AccessToken,
    pub expires_in: Duration,
}

/// A user's phone number as `getuserphonenumber` answered it. `Debug` redacts both numbers.
/// Checking that `watermark_appid` is ours is the caller's job.
#[derive(Clone, PartialEq, Eq)]
pub struct PhoneInfo {
    /// With the country prefix for foreign numbers (`+1…`), as WeChat sent it.
    pub phone_number: String,
    /// Never with the prefix.
    pub pure_phone_number: String,
    /// Always a string of digits, whether WeChat sent `"86"` or `86`.
    pub country_code: String,
    pub watermark_appid: String,
    /// Unix seconds.
    pub watermark_timestamp: i64,
}

impl fmt::Debug for PhoneInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhoneInfo")
            .field("phone_number", &"<redacted>")
            .field("pure_phone_number", &"<redacted>")
            .field("country_code", &self.country_code)
            .field("watermark_appid", &self.watermark_appid)
            .field("watermark_timestamp", &self.watermark_timestamp)
            .finish()
    }
}

/// What `checksession` said of the session_key we hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionKeyCheck {
    /// errcode 0: the user's current key.
    Current,
    /// errcode 87009: replaced (a newer `wx.login`, or a reset); the user must log in again.
    Stale,
}

/// The URLs of the access-token APIs under one base URL, built once with the client.
#[derive(Debug)]
pub(crate) struct ApiUrls {
    stable_token: Url,
    phone_number: Url,
    check_session: Url,
    reset_session_key: Url,
}

impl ApiUrls {
    pub(crate) fn new(base_url: &str) -> Result<Self, ClientBuildError> {
        let url = |path| super::client::endpoint_url_for(base_url, path);
        Ok(ApiUrls {
            stable_token: url("cgi-bin/stable_token")?,
            phone_number: url("wxa/business/getuserphonenumber")?,
            check_session: url("wxa/checksession")?,
            reset_session_key: url("wxa/resetusersessionkey")?,
        })
    }
}

#[cfg(test)]
mod tests;
