//! The code2Session client against the WeChat simulator over real HTTP (and, where the
//! simulator cannot play a part, a few lines of axum): every errcode class, odd bodies,
//! timeouts, refused connections, query encoding, and the AppSecret never leaking; and the
//! access-token APIs (`apis`).

mod apis;
mod errcodes;
mod redaction;
mod responses;
mod successes;

use std::time::Duration;

use secrecy::SecretString;
use wxlogin::wechat::{ClientOptions, ExchangeError, RetryReason, Session, WechatClient};
use wxlogin_sim::{self as sim, Faults, ScriptedAnswer, SimApp, SimConfig, SimControl, SimServer};

const APPID: &str = "wx1111111111111111";
const BOUND_APPID: &str = "wx2222222222222222";
/// If this string shows up in any error text or log line, the AppSecret leaked.
const SECRET: &str = "SECRET-CANARY-7f3a";

fn secret() -> SecretString {
    SecretString::from(SECRET)
}

struct Harness {
    // Kept alive for the test's duration: dropping it stops the simulator.
    _sim: SimServer,
    base_url: String,
    control: SimControl,
    client: WechatClient,
}

async fn harness() -> Harness {
    harness_with_timeout(Duration::from_secs(5)).await
}

async fn harness_with_timeout(request_timeout: Duration) -> Harness {
    let sim = sim::spawn(SimConfig {
        apps: vec![
            SimApp {
                appid: APPID.into(),
                secret: SECRET.into(),
                unionid: false,
            },
            SimApp {
                appid: BOUND_APPID.into(),
                secret: SECRET.into(),
                unionid: true,
            },
        ],
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let base_url = sim.base_url();
    Harness {
        control: sim.control(),
        client: client(&base_url, request_timeout),
        base_url,
        _sim: sim,
    }
}

fn client(base_url: &str, request_timeout: Duration) -> WechatClient {
    WechatClient::new(ClientOptions {
        base_url: base_url.to_owned(),
        request_timeout,
        ..ClientOptions::default()
    })
    .expect("client builds")
}

impl Harness {
    async fn code(&self, appid: &str, user: &str) -> String {
        self.control
            .mint_code(appid, user)
            .await
            .expect("mint code")
    }

    async fn faults(&self, faults: Faults) {
        self.control.set_faults(&faults).await.expect("set faults");
    }

    async fn exchange(&self, code: &str) -> Result<Session, ExchangeError> {
        self.client.code2session(APPID, &secret(), code).await
    }

    /// Exchanges a code after scripting the simulator's next answer exactly.
    async fn scripted(
        &self,
        status: u16,
        content_type: &str,
        body: &str,
    ) -> Result<Session, ExchangeError> {
        self.control
            .script(vec![ScriptedAnswer {
                status,
                content_type: content_type.into(),
                body: body.into(),
            }])
            .await
            .expect("script");
        self.exchange("any-code").await
    }

    /// [`Harness::scripted`] with HTTP 200 and `text/plain`, the way WeChat answers.
    async fn answer(&self, body: &str) -> Result<Session, ExchangeError> {
        self.scripted(200, "text/plain", body).await
    }
}

fn retry(reason: RetryReason) -> ExchangeError {
    ExchangeError::Retryable { reason }
}

fn assert_no_secret(what: &str) {
    assert!(!what.contains(SECRET), "the AppSecret leaked: {what}");
    assert!(!what.contains("secret="), "the request URL leaked: {what}");
}

fn assert_no_secret_in(err: &ExchangeError) {
    assert_no_secret(&format!("{err}"));
    assert_no_secret(&format!("{err:?}"));
}
