//! The WeChat simulator over real HTTP: each test spawns its own simulator, plays the user's
//! side through the control API, and calls code2Session and the access-token APIs with plain
//! reqwest as a backend would.

mod api_faults;
mod codes;
mod control;
mod faults;
mod identity;
mod phone;
mod quota;
mod session_keys;
mod tokens;

use std::time::Duration;

use serde_json::Value;
use wxlogin_sim::{self as sim, DEMO_APPID, DEMO_SECRET, SimConfig, SimControl, SimServer};

const APP_B: &str = "wxbbbbbbbbbbbbbbbb";
const SECRET_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// A spawned simulator with a control client and a plain HTTP client for the WeChat side.
struct Sim {
    server: SimServer,
    ctl: SimControl,
    http: reqwest::Client,
}

/// One code2Session answer as a backend sees it.
struct Reply {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// 0 for a success, else the errcode.
    fn errcode(&self) -> i64 {
        self.json()
            .get("errcode")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    }
}

async fn start(config: SimConfig) -> Sim {
    let server = sim::spawn(config).await.expect("simulator starts");
    Sim {
        ctl: server.control(),
        server,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
    }
}

/// The demo app (unionid-bound) plus app B (not bound).
fn two_apps() -> SimConfig {
    let mut c = SimConfig::demo();
    c.apps.push(format!("{APP_B}={SECRET_B}").parse().unwrap());
    c
}

impl Sim {
    fn url(&self) -> String {
        format!("{}/sns/jscode2session", self.server.base_url())
    }

    async fn call(&self, query: &[(&str, &str)]) -> Reply {
        self.send(self.http.get(self.url()).query(query)).await
    }

    async fn exchange(&self, appid: &str, secret: &str, code: &str) -> Reply {
        self.call(&[
            ("appid", appid),
            ("secret", secret),
            ("js_code", code),
            ("grant_type", "authorization_code"),
        ])
        .await
    }

    async fn demo(&self, code: &str) -> Reply {
        self.exchange(DEMO_APPID, DEMO_SECRET, code).await
    }

    async fn mint(&self, user: &str) -> String {
        self.ctl.mint_code(DEMO_APPID, user).await.unwrap()
    }

    async fn control_post(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let resp = (self.http.post(format!("{}{path}", self.server.base_url())))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}
