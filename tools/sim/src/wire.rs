//! The types the control API sends and receives, shared by the server side (`control`,
//! `state`) and its typed client ([`crate::SimControl`]) without either reaching into the other.

use serde::{Deserialize, Serialize};

/// A raw answer to send back, as is, to the next exchange call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptedAnswer {
    #[serde(default = "ok_status")]
    pub status: u16,
    #[serde(default = "text_plain")]
    pub content_type: String,
    #[serde(default)]
    pub body: String,
}

fn ok_status() -> u16 {
    200
}

fn text_plain() -> String {
    "text/plain".into()
}

impl ScriptedAnswer {
    /// HTTP 200, `text/plain`: how WeChat sends everything.
    pub fn wechat(body: impl Into<String>) -> Self {
        ScriptedAnswer {
            status: 200,
            content_type: text_plain(),
            body: body.into(),
        }
    }
}

/// What `wx.getUserInfo()` hands the mini program.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserInfo {
    pub encrypted_data: String,
    pub iv: String,
    pub raw_data: String,
    pub signature: String,
}

/// What WeChat knows of a user's session with an app, session_key included: tests need it to
/// hand-make encrypted payloads and to search for the key where it must never appear.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimSession {
    pub session_key: String,
    pub openid: String,
    pub unionid: Option<String>,
}

/// A phone code minted by `/sim/phone` (the simulated `getPhoneNumber` button), with the
/// number WeChat will answer for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MintedPhone {
    pub code: String,
    pub expires_in: f64,
    pub phone_number: String,
    pub pure_phone_number: String,
    pub country_code: String,
}

/// A code that reached WeChat's code validation more than once (`GET /sim/codes/repeated`):
/// the minted code, its user, and when each validation happened (Unix milliseconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepeatedCode {
    pub code: String,
    pub user: String,
    pub validated_at_ms: Vec<u64>,
}
