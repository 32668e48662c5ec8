//! The code2Session client against the WeChat simulator over real HTTP (and, where the
//! simulator cannot play a part, a few lines of axum): every errcode class, odd bodies,
//! timeouts, refused connections, query encoding, and the AppSecret never leaking.

use std::{
    io,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use secrecy::SecretString;
use wxlogin::{
    crypto::wxbiz,
    quota::Quota,
    sim::{self, Faults, ScriptedAnswer, SimApp, SimConfig, SimControl, SimServer},
    wechat::{ClientOptions, ErrorClass, ExchangeError, RetryReason, Session, WechatClient},
};

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

// ---------- successes ----------

#[tokio::test]
async fn a_fresh_code_gives_a_session_without_unionid_for_an_unbound_app() {
    let h = harness().await;
    let session = h.exchange(&h.code(APPID, "alice").await).await.unwrap();
    assert!(!session.openid.is_empty());
    assert_eq!(session.unionid, None);
    assert_eq!(
        base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            session.session_key.expose()
        )
        .unwrap()
        .len(),
        16
    );
}

#[tokio::test]
async fn a_fresh_code_gives_a_unionid_for_an_app_bound_to_the_open_platform() {
    let h = harness().await;
    let code = h.code(BOUND_APPID, "alice").await;
    let session = h
        .client
        .code2session(BOUND_APPID, &secret(), &code)
        .await
        .unwrap();
    assert!(session.unionid.is_some_and(|u| !u.is_empty()));
}

#[tokio::test]
async fn the_same_user_keeps_the_same_openid_across_logins() {
    let h = harness().await;
    let first = h.exchange(&h.code(APPID, "alice").await).await.unwrap();
    let second = h.exchange(&h.code(APPID, "alice").await).await.unwrap();
    let other = h.exchange(&h.code(APPID, "bob").await).await.unwrap();
    assert_eq!(first.openid, second.openid);
    assert_ne!(first.openid, other.openid);
}

#[tokio::test]
async fn the_session_key_decrypts_the_users_data_and_verifies_its_signature() {
    let h = harness().await;
    let session = h.exchange(&h.code(APPID, "alice").await).await.unwrap();
    let info = h.control.user_info(APPID, "alice").await.unwrap();
    let key = session.session_key.expose();
    let user = wxbiz::decrypt(key, &info.encrypted_data, &info.iv, APPID).unwrap();
    assert_eq!(user["openId"], session.openid.as_str());
    assert!(wxbiz::verify_signature(
        &info.raw_data,
        key,
        &info.signature
    ));
}

#[tokio::test]
async fn errcode_zero_with_extra_fields_is_a_success() {
    let h = harness().await;
    let body = r#"{"errcode":0,"errmsg":"ok","openid":"oX","session_key":"a2V5a2V5a2V5a2V5a2V5aw==","expires_in":7200,"new_field":{"x":[1,2]}}"#;
    let session = h.answer(body).await.unwrap();
    assert_eq!(session.openid, "oX");
    assert_eq!(session.unionid, None);
}

// ---------- rejected ----------

#[tokio::test]
async fn a_made_up_code_is_rejected_with_40029() {
    let h = harness().await;
    let err = h
        .exchange("051nI5Pa1XJkDs0773Pa1OWYOa1nI5PF")
        .await
        .unwrap_err();
    assert_eq!(err, ExchangeError::Rejected { errcode: 40029 });
    assert_eq!(err.class(), ErrorClass::Rejected);
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_used_code_is_rejected_with_40163() {
    let h = harness().await;
    let code = h.code(APPID, "alice").await;
    h.exchange(&code).await.unwrap();
    let err = h.exchange(&code).await.unwrap_err();
    assert_eq!(err, ExchangeError::Rejected { errcode: 40163 });
    assert_eq!(err.errcode(), 40163);
}

#[tokio::test]
async fn a_code_minted_for_another_app_is_rejected_with_40029() {
    let h = harness().await;
    let code = h.code(BOUND_APPID, "alice").await;
    assert_eq!(
        h.exchange(&code).await.unwrap_err(),
        ExchangeError::Rejected { errcode: 40029 }
    );
}

#[tokio::test]
async fn a_high_risk_user_is_rejected_with_40226() {
    let h = harness().await;
    h.exchange(&h.code(APPID, "mallory").await).await.unwrap();
    h.control
        .set_high_risk(APPID, "mallory", true)
        .await
        .unwrap();
    let err = h
        .exchange(&h.code(APPID, "mallory").await)
        .await
        .unwrap_err();
    assert_eq!(err, ExchangeError::Rejected { errcode: 40226 });
}

// ---------- rate limited and busy ----------

#[tokio::test]
async fn the_user_frequency_limit_is_reported_as_rate_limited() {
    let h = harness().await;
    let quota: Quota = "1/60s".parse().unwrap();
    h.control.set_quotas(None, Some(quota)).await.unwrap();
    h.exchange(&h.code(APPID, "alice").await).await.unwrap();
    let err = h.exchange(&h.code(APPID, "alice").await).await.unwrap_err();
    assert_eq!(err, ExchangeError::RateLimited);
    assert_eq!(err.errcode(), 45011);
    assert_eq!(err.class(), ErrorClass::RateLimited);
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_45011_storm_does_not_consume_the_code() {
    let h = harness().await;
    let code = h.code(APPID, "alice").await;
    h.faults(Faults {
        storm_45011_secs: 1.0,
        ..Faults::default()
    })
    .await;
    let err = h.exchange(&code).await.unwrap_err();
    assert_eq!(err, ExchangeError::RateLimited);
    assert!(!err.may_have_consumed_code());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    h.exchange(&code)
        .await
        .expect("the same code works after the storm");
}

#[tokio::test]
async fn a_busy_wechat_is_retryable_and_the_same_code_works_afterwards() {
    let h = harness().await;
    let code = h.code(APPID, "alice").await;
    h.faults(Faults {
        busy_ratio: 1.0,
        ..Faults::default()
    })
    .await;
    let err = h.exchange(&code).await.unwrap_err();
    assert_eq!(
        err,
        ExchangeError::Retryable {
            reason: RetryReason::Busy
        }
    );
    assert_eq!(err.errcode(), -1);
    assert!(err.is_retryable() && !err.may_have_consumed_code());
    h.faults(Faults::default()).await;
    h.exchange(&code)
        .await
        .expect("-1 does not consume the code");
}

// ---------- misconfigured and unexpected ----------

#[tokio::test]
async fn an_unknown_appid_is_misconfigured_with_40013() {
    let h = harness().await;
    let err = h
        .client
        .code2session("wx9999999999999999", &secret(), "code")
        .await
        .unwrap_err();
    assert_eq!(err, ExchangeError::Misconfigured { errcode: 40013 });
    assert_eq!(err.class(), ErrorClass::Misconfigured);
}

#[tokio::test]
async fn a_wrong_secret_is_misconfigured_with_40125() {
    let h = harness().await;
    let code = h.code(APPID, "alice").await;
    let wrong = SecretString::from("not-the-secret");
    let err = h
        .client
        .code2session(APPID, &wrong, &code)
        .await
        .unwrap_err();
    assert_eq!(err, ExchangeError::Misconfigured { errcode: 40125 });
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn empty_arguments_are_answered_locally_with_wechats_errcodes() {
    let h = harness().await;
    let empty = SecretString::from("");
    let cases = [
        (
            "",
            secret(),
            "code",
            ExchangeError::Misconfigured { errcode: 41002 },
        ),
        (
            APPID,
            empty,
            "code",
            ExchangeError::Misconfigured { errcode: 41004 },
        ),
        (
            APPID,
            secret(),
            "",
            ExchangeError::Rejected { errcode: 41008 },
        ),
    ];
    for (appid, secret, code, expected) in cases {
        assert_eq!(
            h.client
                .code2session(appid, &secret, code)
                .await
                .unwrap_err(),
            expected
        );
    }
    assert_eq!(
        h.control.stats().await.unwrap().calls,
        0,
        "no quota was spent"
    );
}

#[tokio::test]
async fn request_errcodes_the_client_cannot_provoke_land_in_their_class() {
    let h = harness().await;
    let misconfigured = |errcode| ExchangeError::Misconfigured { errcode };
    let cases = [
        (41002, misconfigured(41002)),
        (41004, misconfigured(41004)),
        (40164, misconfigured(40164)),
        (40243, misconfigured(40243)),
        (41008, ExchangeError::Rejected { errcode: 41008 }),
    ];
    for (errcode, expected) in cases {
        let body = format!(r#"{{"errcode":{errcode},"errmsg":"x, rid: 1"}}"#);
        assert_eq!(h.answer(&body).await.unwrap_err(), expected);
    }
}

#[tokio::test]
async fn an_unknown_errcode_is_unexpected_and_kept_as_a_number() {
    let h = harness().await;
    let err = h
        .answer(r#"{"errcode":61234,"errmsg":"new thing, rid: 1"}"#)
        .await
        .unwrap_err();
    assert_eq!(err, ExchangeError::Unexpected { errcode: 61234 });
    assert_eq!(err.errcode(), 61234);
    assert_eq!(err.class(), ErrorClass::Unexpected);
    assert!(!err.is_retryable());
}

// ---------- odd bodies ----------

#[tokio::test]
async fn an_html_502_page_is_a_retryable_http_status() {
    let h = harness().await;
    let html = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>";
    let err = h.scripted(502, "text/html", html).await.unwrap_err();
    assert_eq!(err, retry(RetryReason::HttpStatus(502)));

    h.faults(Faults {
        http_502_ratio: 1.0,
        ..Faults::default()
    })
    .await;
    let err = h.exchange(&h.code(APPID, "alice").await).await.unwrap_err();
    assert_eq!(err, retry(RetryReason::HttpStatus(502)));
}

#[tokio::test]
async fn an_html_page_with_status_200_is_a_bad_body() {
    let h = harness().await;
    let err = h
        .scripted(200, "text/html", "<html>maintenance</html>")
        .await
        .unwrap_err();
    assert_eq!(err, retry(RetryReason::BadBody));
}

#[tokio::test]
async fn truncated_json_is_a_retryable_bad_body() {
    let h = harness().await;
    let err = h
        .answer(r#"{"session_key":"a2V5a2V5","openid":"o"#)
        .await
        .unwrap_err();
    assert_eq!(err, retry(RetryReason::BadBody));
    assert!(err.may_have_consumed_code());

    h.faults(Faults {
        garbage_ratio: 1.0,
        ..Faults::default()
    })
    .await;
    for _ in 0..10 {
        let err = h.exchange(&h.code(APPID, "alice").await).await.unwrap_err();
        assert_eq!(err, retry(RetryReason::BadBody));
    }
}

#[tokio::test]
async fn an_errcode_written_as_a_string_is_still_classified() {
    let h = harness().await;
    let err = h
        .scripted(
            200,
            "application/json",
            r#"{"errcode":"40029","errmsg":"invalid code"}"#,
        )
        .await
        .unwrap_err();
    assert_eq!(err, ExchangeError::Rejected { errcode: 40029 });
}

#[tokio::test]
async fn a_success_without_a_session_key_is_a_bad_body() {
    let h = harness().await;
    let err = h.answer(r#"{"openid":"oX"}"#).await.unwrap_err();
    assert_eq!(err, retry(RetryReason::BadBody));
}

// ---------- transport ----------

#[tokio::test]
async fn a_hanging_wechat_times_out_as_retryable() {
    let h = harness_with_timeout(Duration::from_millis(300)).await;
    h.faults(Faults {
        hang_ratio: 1.0,
        ..Faults::default()
    })
    .await;
    let started = Instant::now();
    let err = h.exchange(&h.code(APPID, "alice").await).await.unwrap_err();
    assert_eq!(err, retry(RetryReason::Timeout));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.may_have_consumed_code(),
        "a timed-out call may have reached WeChat"
    );
}

#[tokio::test]
async fn a_closed_port_is_a_connect_failure_that_did_not_consume_the_code() {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = client(&format!("http://{addr}"), Duration::from_secs(5));
    let err = client
        .code2session(APPID, &secret(), "code")
        .await
        .unwrap_err();
    assert_eq!(err, retry(RetryReason::Connect));
    assert!(err.is_retryable() && !err.may_have_consumed_code());
    assert_no_secret_in(&err);
}

// ---------- the secret never leaks ----------

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_secret_never_appears_in_errors_sessions_or_logs() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let h = harness_with_timeout(Duration::from_millis(300)).await;
    let mut errors = Vec::new();
    // Answers of every kind, each echoing the secret in errmsg to tempt a careless logger.
    let echo = format!(r#"{{"errcode":40125,"errmsg":"invalid appsecret {SECRET}, rid: 1"}}"#);
    for (status, body) in [
        (200, echo.as_str()),
        (502, "<html>502</html>"),
        (200, "{\"openid\":"),
        (200, r#"{"errcode":-1}"#),
    ] {
        errors.push(h.scripted(status, "text/plain", body).await.unwrap_err());
    }
    errors.push(h.exchange("unknown-code").await.unwrap_err());
    h.faults(Faults {
        hang_ratio: 1.0,
        ..Faults::default()
    })
    .await;
    errors.push(h.exchange(&h.code(APPID, "alice").await).await.unwrap_err());
    h.faults(Faults::default()).await;
    let refused = {
        let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    errors.push(
        client(&refused, Duration::from_secs(1))
            .code2session(APPID, &secret(), "code")
            .await
            .unwrap_err(),
    );
    for err in &errors {
        assert_no_secret_in(err);
    }

    let session = h.exchange(&h.code(APPID, "alice").await).await.unwrap();
    let shown = format!("{session:?}");
    assert_no_secret(&shown);
    assert!(!shown.contains(session.session_key.expose()), "{shown}");
    assert!(shown.contains("SessionKey(<redacted>)"), "{shown}");
    assert_no_secret(&format!("{:?}", h.client));
    assert!(!h.base_url.is_empty());

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("code2Session"), "logs were captured: {logs}");
    assert!(
        logs.contains("rid: 1"),
        "errmsg is logged for its request id: {logs}"
    );
    assert_no_secret(&logs);
}
