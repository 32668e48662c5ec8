//! The simulator's phone numbers over real HTTP: codes minted by `/sim/phone`, single use
//! (40029 on reuse), bound to their app (40013) and user (40003), with a lifetime, and the
//! answer's shape (countryCode as string or number, watermark).

use std::time::Duration;

use serde_json::{Value, json};
use wxlogin_sim::{DEMO_APPID, DEMO_SECRET};

use super::{APP_B, Reply, SECRET_B, Sim, start, tokens::api_config};

impl Sim {
    pub(super) async fn token_of(&self, appid: &str, secret: &str) -> String {
        let body = json!({"grant_type": "client_credential", "appid": appid, "secret": secret});
        self.stable_raw(body).await.token().0
    }

    pub(super) async fn phone(&self, token: &str, body: Value) -> Reply {
        let req = self.http.post(self.at("/wxa/business/getuserphonenumber"));
        self.send(req.query(&[("access_token", token)]).json(&body))
            .await
    }

    pub(super) async fn demo_token(&self) -> String {
        self.token_of(DEMO_APPID, DEMO_SECRET).await
    }

    /// A fresh phone code of `user` in the demo app.
    pub(super) async fn phone_code(&self, user: &str) -> String {
        self.ctl
            .mint_phone_code(DEMO_APPID, user)
            .await
            .unwrap()
            .code
    }

    /// The errcode of exchanging `code` alone (0: the number).
    pub(super) async fn phone_errcode(&self, token: &str, code: &str) -> i64 {
        self.phone(token, json!({ "code": code })).await.errcode()
    }

    /// The user's openid in the demo app, learnt through a code2Session.
    pub(super) async fn openid(&self, user: &str) -> String {
        let code = self.mint(user).await;
        self.demo(&code).await.json()["openid"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

#[tokio::test]
async fn a_phone_code_answers_its_number_once_and_40029_on_reuse() {
    let sim = start(api_config()).await;
    let token = sim.demo_token().await;
    let minted = sim.ctl.mint_phone_code(DEMO_APPID, "alice").await.unwrap();
    assert_eq!(minted.code.len(), 64);
    assert_eq!(minted.expires_in, 300.0);
    let first = sim.phone(&token, json!({"code": minted.code})).await;
    let info = &first.json()["phone_info"];
    assert_eq!(first.errcode(), 0);
    assert_eq!(info["purePhoneNumber"], minted.pure_phone_number.as_str());
    assert_eq!(info["phoneNumber"], minted.phone_number.as_str());
    assert_eq!(info["countryCode"], "86", "a string by default");
    assert_eq!(info["watermark"]["appid"], DEMO_APPID);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((info["watermark"]["timestamp"].as_i64().unwrap() - now).abs() <= 5);
    let again = sim.phone(&token, json!({"code": minted.code})).await;
    assert_eq!(
        again.errcode(),
        40029,
        "not 40163: reuse looks like a bad code"
    );
    assert_eq!(
        sim.phone(&token, json!({"code": "f".repeat(64)}))
            .await
            .errcode(),
        40029
    );
    let stats = sim.ctl.stats().await.unwrap().apis;
    assert_eq!(
        (
            stats.phone.minted,
            stats.phone.exchanged,
            stats.phone.reused
        ),
        (1, 1, 1)
    );
    assert_eq!(stats.endpoints["phone_number"].by_errcode[&40029], 2);
    assert_eq!(stats.endpoints["phone_number"].by_app[DEMO_APPID], 3);
}

#[tokio::test]
async fn another_apps_phone_code_answers_40013_and_stays_usable_by_its_app() {
    let sim = start(api_config()).await;
    let token_b = sim.token_of(APP_B, SECRET_B).await;
    let code = sim.phone_code("alice").await;
    assert_eq!(sim.phone_errcode(&token_b, &code).await, 40013);
    let token = sim.demo_token().await;
    assert_eq!(sim.phone_errcode(&token, &code).await, 0);
}

#[tokio::test]
async fn a_phone_code_past_its_five_minutes_answers_40029() {
    let sim = start(api_config()).await;
    let code = sim.phone_code("alice").await;
    let late = sim.phone_code("bob").await;
    sim.advance(299).await;
    let token = sim.demo_token().await;
    assert_eq!(sim.phone_errcode(&token, &code).await, 0);
    sim.ctl.advance_clock(Duration::from_secs(1)).await.unwrap();
    assert_eq!(
        sim.phone(&token, json!({"code": late})).await.errcode(),
        40029
    );
}

#[tokio::test]
async fn an_openid_that_is_not_the_codes_users_answers_40003_and_spends_nothing() {
    let sim = start(api_config()).await;
    let (alice, bob) = (sim.openid("alice").await, sim.openid("bob").await);
    let token = sim.demo_token().await;
    let code = sim.phone_code("alice").await;
    let wrong = sim
        .phone(&token, json!({"code": code, "openid": bob}))
        .await;
    assert_eq!(wrong.errcode(), 40003);
    let right = sim
        .phone(&token, json!({"code": code, "openid": alice}))
        .await;
    assert_eq!(right.errcode(), 0);
}

#[tokio::test]
async fn country_code_is_a_json_number_when_set_so() {
    let mut config = api_config();
    config.apis.country_code_numeric = true;
    let sim = start(config).await;
    let token = sim.demo_token().await;
    let code = sim.phone_code("alice").await;
    let reply = sim.phone(&token, json!({"code": code})).await;
    assert_eq!(reply.json()["phone_info"]["countryCode"], json!(86));
    sim.ctl.set_country_code_numeric(false).await.unwrap();
    let code = sim.phone_code("bob").await;
    let reply = sim.phone(&token, json!({"code": code})).await;
    assert_eq!(reply.json()["phone_info"]["countryCode"], json!("86"));
}

#[tokio::test]
async fn a_foreign_number_carries_its_prefix_only_in_phone_number() {
    let sim = start(api_config()).await;
    let minted = (sim.ctl)
        .mint_phone_code_for(DEMO_APPID, "amy", "2025550123", Some("1"))
        .await
        .unwrap();
    let token = sim.demo_token().await;
    let reply = sim.phone(&token, json!({"code": minted.code})).await;
    let info = &reply.json()["phone_info"];
    assert_eq!(info["phoneNumber"], "+12025550123");
    assert_eq!(info["purePhoneNumber"], "2025550123");
    assert_eq!(info["countryCode"], "1");
    let (status, body) = sim
        .control_post(
            "/sim/phone",
            r#"{"appid":"wx0123456789abcdef","user":"x","phone":"+44123"}"#,
        )
        .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn a_phone_call_without_a_json_body_or_a_good_token_is_refused_without_spending_the_code() {
    let sim = start(api_config()).await;
    let token = sim.demo_token().await;
    let code = sim.phone_code("alice").await;
    let req = sim.http.post(sim.at("/wxa/business/getuserphonenumber"));
    let form = sim
        .send(
            req.query(&[("access_token", &token)])
                .body(format!("code={code}")),
        )
        .await;
    assert_eq!(form.errcode(), 47001);
    assert_eq!(
        sim.phone("not-a-token", json!({"code": code}))
            .await
            .errcode(),
        40014
    );
    assert_eq!(
        sim.phone(&"B".repeat(64), json!({"code": code}))
            .await
            .errcode(),
        40001
    );
    assert_eq!(sim.phone_errcode(&token, &code).await, 0);
}
