//! [`SimControl`]: a typed client of the simulator's control API, for tests, the demo and the
//! benchmarks. It only talks to `/sim/`; the WeChat side is for the code under test.

use std::time::Duration;

use serde::{Serialize, de::DeserializeOwned};
use serde_json::json;

use super::{
    Endpoint, Faults, MintedPhone, RepeatedCode, ScriptedAnswer, SimSession, SimStats, UserInfo,
};
use crate::quota::Quota;

#[derive(Debug, thiserror::Error)]
pub enum SimControlError {
    /// The simulator could not be reached or its answer not read. The URL is left out: it is
    /// only ever the simulator's, but every reqwest error in this code base is shown without one.
    #[error("simulator control call failed: {0}")]
    Http(#[source] reqwest::Error),
    /// The simulator refused the call (e.g. 404 unknown appid, 409 no session yet).
    #[error("simulator answered {status}: {message}")]
    Status { status: u16, message: String },
}

impl From<reqwest::Error> for SimControlError {
    fn from(e: reqwest::Error) -> Self {
        SimControlError::Http(e.without_url())
    }
}

/// Client of the control API of a simulator at `base_url` (cheap to clone).
#[derive(Clone, Debug)]
pub struct SimControl {
    base_url: String,
    http: reqwest::Client,
}

#[derive(serde::Deserialize)]
struct Minted {
    code: String,
}

#[derive(serde::Deserialize)]
struct MintedBatch {
    codes: Vec<String>,
}

impl SimControl {
    pub fn new(base_url: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("a plain HTTP client always builds");
        SimControl {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            http,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, SimControlError> {
        let resp = req.send().await?;
        let status = resp.status();
        if !status.is_success() {
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            let message = body["error"]
                .as_str()
                .unwrap_or("(no error message)")
                .to_owned();
            return Err(SimControlError::Status {
                status: status.as_u16(),
                message,
            });
        }
        Ok(resp.json().await?)
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, SimControlError> {
        self.send(
            self.http
                .post(format!("{}{path}", self.base_url))
                .json(body),
        )
        .await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, SimControlError> {
        self.send(self.http.get(format!("{}{path}", self.base_url)))
            .await
    }

    /// The simulated `wx.login()`: a fresh single-use code of `user` for `appid`.
    pub async fn mint_code(&self, appid: &str, user: &str) -> Result<String, SimControlError> {
        let m: Minted = self
            .post("/sim/login", &json!({ "appid": appid, "user": user }))
            .await?;
        Ok(m.code)
    }

    /// Many `wx.login()`s at once: one code per entry of `users`, in order (at most 10,000).
    pub async fn mint_codes(
        &self,
        appid: &str,
        users: &[&str],
    ) -> Result<Vec<String>, SimControlError> {
        let m: MintedBatch = self
            .post(
                "/sim/login/batch",
                &json!({ "appid": appid, "users": users }),
            )
            .await?;
        Ok(m.codes)
    }

    pub async fn faults(&self) -> Result<Faults, SimControlError> {
        self.get("/sim/faults").await
    }

    /// Replaces all faults (a storm starts counting now).
    pub async fn set_faults(&self, faults: &Faults) -> Result<(), SimControlError> {
        self.post::<Faults>("/sim/faults", faults).await.map(drop)
    }

    /// Replaces both quotas (`None` = unlimited); a window whose length changes starts empty.
    pub async fn set_quotas(
        &self,
        app: Option<Quota>,
        user: Option<Quota>,
    ) -> Result<(), SimControlError> {
        self.post::<serde_json::Value>("/sim/quotas", &json!({ "app": app, "user": user }))
            .await
            .map(drop)
    }

    pub async fn set_high_risk(
        &self,
        appid: &str,
        user: &str,
        high_risk: bool,
    ) -> Result<(), SimControlError> {
        let body = json!({ "appid": appid, "user": user, "high_risk": high_risk });
        self.post::<serde_json::Value>("/sim/risk", &body)
            .await
            .map(drop)
    }

    /// The simulated `wx.getUserInfo()`, encrypted under the user's current session_key.
    pub async fn user_info(&self, appid: &str, user: &str) -> Result<UserInfo, SimControlError> {
        self.post("/sim/userinfo", &json!({ "appid": appid, "user": user }))
            .await
    }

    /// The user's current session with the app, session_key included (what WeChat holds).
    pub async fn session(&self, appid: &str, user: &str) -> Result<SimSession, SimControlError> {
        self.post("/sim/session", &json!({ "appid": appid, "user": user }))
            .await
    }

    /// Queues raw answers for the next exchange calls, in order.
    pub async fn script(&self, answers: Vec<ScriptedAnswer>) -> Result<(), SimControlError> {
        self.post::<serde_json::Value>("/sim/script", &json!({ "answers": answers }))
            .await
            .map(drop)
    }

    pub async fn stats(&self) -> Result<SimStats, SimControlError> {
        self.get("/sim/stats").await
    }

    /// The codes that reached code validation more than once since the last reset, with when.
    pub async fn repeated_codes(&self) -> Result<Vec<RepeatedCode>, SimControlError> {
        self.get("/sim/codes/repeated").await
    }

    /// Clears stats, faults and scripts.
    pub async fn reset(&self) -> Result<(), SimControlError> {
        self.post::<serde_json::Value>("/sim/reset", &json!({}))
            .await
            .map(drop)
    }

    /// Like [`SimControl::reset`], and also forgets codes, sessions and risk marks.
    pub async fn reset_all(&self) -> Result<(), SimControlError> {
        self.post::<serde_json::Value>("/sim/reset?all=true", &json!({}))
            .await
            .map(drop)
    }

    /// The simulated `getPhoneNumber` button: a single-use phone code of `user` for `appid`,
    /// with a number derived from the user's name (country 86).
    pub async fn mint_phone_code(
        &self,
        appid: &str,
        user: &str,
    ) -> Result<MintedPhone, SimControlError> {
        self.post("/sim/phone", &json!({ "appid": appid, "user": user }))
            .await
    }

    /// Like [`SimControl::mint_phone_code`] with a given number: `phone` is the pure number or
    /// `+<country><pure>`, `country` its digits (86 when `None`).
    pub async fn mint_phone_code_for(
        &self,
        appid: &str,
        user: &str,
        phone: &str,
        country: Option<&str>,
    ) -> Result<MintedPhone, SimControlError> {
        let body = json!({ "appid": appid, "user": user, "phone": phone, "country": country });
        self.post("/sim/phone", &body).await
    }

    /// `countryCode` written as a number (`86`) instead of a string (`"86"`) from now on.
    pub async fn set_country_code_numeric(&self, numeric: bool) -> Result<(), SimControlError> {
        let body = json!({ "country_code_numeric": numeric });
        self.post::<serde_json::Value>("/sim/phone/settings", &body)
            .await
            .map(drop)
    }

    /// Kills every live access_token (plain and stable) of `appid`; returns how many.
    pub async fn revoke_tokens(&self, appid: &str) -> Result<u64, SimControlError> {
        let v: serde_json::Value = self
            .post("/sim/tokens/revoke", &json!({ "appid": appid }))
            .await?;
        Ok(v["revoked"].as_u64().unwrap_or(0))
    }

    /// Moves the clock of the access-token APIs forward (token expiry, phone codes, budgets).
    pub async fn advance_clock(&self, by: Duration) -> Result<(), SimControlError> {
        let body = json!({ "advance_secs": by.as_secs_f64() });
        self.post::<serde_json::Value>("/sim/clock", &body)
            .await
            .map(drop)
    }

    /// Queues raw answers for the next calls of one access-token endpoint, in order.
    pub async fn script_endpoint(
        &self,
        endpoint: Endpoint,
        answers: Vec<ScriptedAnswer>,
    ) -> Result<(), SimControlError> {
        let body = json!({ "endpoint": endpoint, "answers": answers });
        self.post::<serde_json::Value>("/sim/script", &body)
            .await
            .map(drop)
    }
}
