//! A mini program's side of a login, as `clients/miniprogram/` does it: post the code from
//! `wx.login()`, follow a 202's ticket until the answer is final, use the token. The load
//! generator drives thousands of these; wxlogin's own tests use the same one, so "how a client
//! follows a ticket" is written once. Failures are labelled by step, status and errcode only
//! (never a code or a token).

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

/// One simulated mini program of one app, against one ingress.
#[derive(Clone)]
pub struct MiniProgram {
    pub http: reqwest::Client,
    /// The ingress, e.g. `http://127.0.0.1:8080`.
    pub api: String,
    pub appid: String,
    /// How long a 202's ticket is followed before giving up (the answer stays a 202).
    pub patience: Duration,
    /// Keep polling through transport errors and `503 login pipeline unavailable` while
    /// following a ticket: the ticket stays good while NATS is away, so a patient client
    /// outlasts an outage. Off: such an answer is final.
    pub through_outages: bool,
}

/// An HTTP answer: its status and JSON body (`Null` if it had none).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    /// The answer came from polling a 202's ticket.
    pub via_ticket: bool,
}

impl Answer {
    /// The token of a 200 login answer.
    pub fn token(&self) -> Option<&str> {
        (self.status == 200).then(|| self.body["token"].as_str())?
    }

    pub fn errcode(&self) -> Option<i64> {
        self.body["errcode"].as_i64()
    }

    /// `login: 409 errcode 40163`: what went wrong, without any secret.
    pub fn label(&self, step: &str) -> String {
        match self.errcode() {
            Some(errcode) => format!("{step}: {} errcode {errcode}", self.status),
            None => format!("{step}: {}", self.status),
        }
    }
}

impl MiniProgram {
    pub fn new(http: reqwest::Client, api: impl Into<String>, appid: impl Into<String>) -> Self {
        MiniProgram {
            http,
            api: api.into(),
            appid: appid.into(),
            patience: Duration::from_secs(60),
            through_outages: false,
        }
    }

    /// `POST /v1/login` with the code; the first answer, as is (a 202 is not followed).
    pub async fn post_login(&self, code: &str) -> Result<Answer, String> {
        let body = json!({ "appid": self.appid, "code": code });
        let url = format!("{}/v1/login", self.api);
        read(self.http.post(url).json(&body).send().await, "login").await
    }

    /// A login: the code posted, a 202's ticket followed until the answer is final.
    pub async fn login(&self, code: &str) -> Result<Answer, String> {
        let first = self.post_login(code).await?;
        self.follow(first).await
    }

    /// Follows the tickets of `answer` while it is a 202, waiting the `retry_after_ms` the
    /// server asks for; the final answer, or the last 202 once [`Self::patience`] ran out.
    pub async fn follow(&self, mut answer: Answer) -> Result<Answer, String> {
        let give_up = Instant::now() + self.patience;
        while answer.status == 202 && Instant::now() < give_up {
            let wait = answer.body["retry_after_ms"].as_u64().unwrap_or(500);
            tokio::time::sleep(Duration::from_millis(wait.min(5_000))).await;
            let ticket = answer.body["ticket"]
                .as_str()
                .ok_or("202 without a ticket")?;
            let url = format!("{}/v1/login/{ticket}", self.api);
            let next = match read(self.http.get(url).send().await, "ticket").await {
                Ok(next) => next,
                Err(_) if self.through_outages => continue,
                Err(e) => return Err(e),
            };
            if self.through_outages && is_outage(&next) {
                continue;
            }
            answer = next;
            answer.via_ticket = true;
        }
        Ok(answer)
    }

    /// `GET /v1/me` with the token: who it logs in.
    pub async fn me(&self, token: &str) -> Result<Answer, String> {
        let url = format!("{}/v1/me", self.api);
        read(self.http.get(url).bearer_auth(token).send().await, "me").await
    }

    /// The load generator's unit: a login, then the token checked with `/v1/me`.
    /// `Ok(via_ticket)`, or a label of what went wrong.
    pub async fn login_and_check(&self, code: &str) -> Result<bool, String> {
        let answer = self.login(code).await?;
        let step = if answer.via_ticket { "ticket" } else { "login" };
        let Some(token) = answer.token() else {
            return Err(match answer.status {
                202 => format!("ticket: still pending after {} s", self.patience.as_secs()),
                200 => "answer without token".into(),
                _ => answer.label(step),
            });
        };
        match self.me(token).await? {
            me if me.status == 200 => Ok(answer.via_ticket),
            me => Err(me.label("me")),
        }
    }
}

/// The ingress cannot reach NATS right now; the ticket is still good.
fn is_outage(answer: &Answer) -> bool {
    answer.status == 503
        && answer.body["errmsg"]
            .as_str()
            .is_some_and(|m| m.contains("unavailable"))
}

async fn read(
    resp: Result<reqwest::Response, reqwest::Error>,
    step: &str,
) -> Result<Answer, String> {
    let resp = resp.map_err(|e| transport(step, &e))?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.map_err(|e| transport(step, &e))?;
    Ok(Answer {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        via_ticket: false,
    })
}

fn transport(step: &str, e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect error"
    } else {
        "transport error"
    };
    format!("{step}: {kind}")
}
