//! One simulated mini program against the ingress: post the code, follow a 202 ticket, check
//! the token. Outcomes are labelled by step, status and errcode only (never a code or token).

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

#[derive(Clone)]
pub(super) struct Client {
    pub(super) http: reqwest::Client,
    pub(super) api: String,
    pub(super) appid: String,
}

impl Client {
    /// One mini program's login: post the code, follow a 202 ticket, check the token with
    /// `/v1/me`. `Ok(via_ticket)`, or a label of what went wrong (status and errcode: never
    /// the code or the token).
    pub(super) async fn login(&self, code: &str) -> Result<bool, String> {
        let body = json!({ "appid": self.appid, "code": code });
        let resp = self
            .http
            .post(format!("{}/v1/login", self.api))
            .json(&body)
            .send()
            .await;
        let (status, answer) = read(resp, "login").await?;
        let (token, via_ticket) = match status {
            200 => (text(&answer, "token")?, false),
            202 => (self.follow(&answer).await?, true),
            _ => return Err(label("login", status, &answer)),
        };
        let resp = self
            .http
            .get(format!("{}/v1/me", self.api))
            .bearer_auth(&token)
            .send()
            .await;
        match read(resp, "me").await? {
            (200, _) => Ok(via_ticket),
            (status, answer) => Err(label("me", status, &answer)),
        }
    }

    /// Polls a 202's ticket until it answers with a token or an error.
    async fn follow(&self, accepted: &Value) -> Result<String, String> {
        let mut answer = accepted.clone();
        let give_up = Instant::now() + Duration::from_secs(60);
        while Instant::now() < give_up {
            let wait = answer["retry_after_ms"].as_u64().unwrap_or(500).min(5_000);
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let ticket = text(&answer, "ticket")?;
            let resp = self
                .http
                .get(format!("{}/v1/login/{ticket}", self.api))
                .send()
                .await;
            let (status, next) = read(resp, "ticket").await?;
            match status {
                200 => return text(&next, "token"),
                202 => {
                    if next.get("ticket").is_some() {
                        answer = next;
                    }
                }
                _ => return Err(label("ticket", status, &next)),
            }
        }
        Err("ticket: still pending after 60 s".into())
    }
}

async fn read(
    resp: Result<reqwest::Response, reqwest::Error>,
    step: &str,
) -> Result<(u16, Value), String> {
    let resp = resp.map_err(|e| transport(step, &e))?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.map_err(|e| transport(step, &e))?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
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

fn text(answer: &Value, field: &str) -> Result<String, String> {
    answer[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("answer without {field}"))
}

fn label(step: &str, status: u16, answer: &Value) -> String {
    match answer["errcode"].as_i64() {
        Some(errcode) => format!("{step}: {status} errcode {errcode}"),
        None => format!("{step}: {status}"),
    }
}
