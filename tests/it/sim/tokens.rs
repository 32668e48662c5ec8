//! The simulator's access tokens over real HTTP: the stable token's sameness, rotation and
//! overlap, the force budget, the daily limit, plain tokens superseding each other, revocation
//! and the token errcodes. The simulator's clock is advanced instead of slept on.

use std::time::Duration;

use serde_json::{Value, json};
use wxlogin_sim::{ApiConfig, DEMO_APPID, DEMO_SECRET, SimConfig};

use super::{APP_B, Reply, SECRET_B, Sim, start, two_apps};

/// 20-second tokens, rotated 5 seconds before expiry, 3 forces a day.
pub(super) fn api_config() -> SimConfig {
    SimConfig {
        apis: ApiConfig {
            token_lifetime: Duration::from_secs(20),
            token_overlap: Duration::from_secs(5),
            force_refresh_daily_limit: 3,
            stable_token_daily_limit: 50,
            plain_token_daily_limit: 50,
            ..ApiConfig::default()
        },
        ..two_apps()
    }
}

impl Reply {
    pub(super) fn token(&self) -> (String, u64) {
        let v = self.json();
        let token = v["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token: {v}"));
        (token.to_owned(), v["expires_in"].as_u64().unwrap())
    }
}

impl Sim {
    pub(super) async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("simulator answers");
        Reply {
            status: resp.status().as_u16(),
            content_type: (resp.headers().get("content-type"))
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default(),
            body: resp.bytes().await.unwrap().to_vec(),
        }
    }

    pub(super) fn at(&self, path: &str) -> String {
        format!("{}{path}", self.server.base_url())
    }

    pub(super) async fn stable_raw(&self, body: Value) -> Reply {
        self.send(self.http.post(self.at("/cgi-bin/stable_token")).json(&body))
            .await
    }

    pub(super) async fn stable(&self, force_refresh: bool) -> Reply {
        self.stable_raw(
            json!({"grant_type": "client_credential", "appid": DEMO_APPID,
                               "secret": DEMO_SECRET, "force_refresh": force_refresh}),
        )
        .await
    }

    pub(super) async fn plain(&self) -> Reply {
        let q = [
            ("grant_type", "client_credential"),
            ("appid", DEMO_APPID),
            ("secret", DEMO_SECRET),
        ];
        self.send(self.http.get(self.at("/cgi-bin/token")).query(&q))
            .await
    }

    /// A call that presents `token` and nothing else: 40097 when the token is good.
    pub(super) async fn use_token(&self, token: &str) -> i64 {
        let req = self
            .http
            .get(self.at("/wxa/checksession"))
            .query(&[("access_token", token)]);
        self.send(req).await.errcode()
    }

    pub(super) async fn advance(&self, secs: u64) {
        self.ctl
            .advance_clock(Duration::from_secs(secs))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_stable_token_stays_the_same_until_its_last_minutes_then_rotates_with_both_valid() {
    let sim = start(api_config()).await;
    let (first, left) = sim.stable(false).await.token();
    assert_eq!(left, 20);
    sim.advance(10).await;
    let (same, left) = sim.stable(false).await.token();
    assert_eq!(same, first);
    assert!((9..=10).contains(&left), "the remaining lifetime: {left}");
    sim.advance(6).await;
    let (second, left) = sim.stable(false).await.token();
    assert_ne!(second, first, "4 s before expiry the token rotates");
    assert_eq!(left, 20);
    assert_eq!(sim.use_token(&first).await, 40097, "the old token lives on");
    assert_eq!(sim.stable(false).await.token().0, second);
    sim.advance(4).await;
    assert_eq!(sim.use_token(&first).await, 42001, "until its own expiry");
    assert_eq!(sim.use_token(&second).await, 40097);
    let stats = sim.ctl.stats().await.unwrap().apis;
    assert_eq!(stats.stable_token.normal, 4);
    assert_eq!(stats.stable_token.issued, 2);
}

#[tokio::test]
async fn every_stable_token_answer_has_more_than_the_overlap_left() {
    let sim = start(api_config()).await;
    for _ in 0..45 {
        let (_, left) = sim.stable(false).await.token();
        assert!(left >= 5, "expires_in {left}");
        sim.advance(1).await;
    }
}

#[tokio::test]
async fn force_refresh_kills_the_token_at_most_three_times_a_day_and_30_s_apart() {
    let mut config = api_config();
    config.apis.token_lifetime = Duration::from_secs(100);
    let sim = start(config).await;
    let (t1, _) = sim.stable(false).await.token();
    let (t2, _) = sim.stable(true).await.token();
    assert_ne!(t2, t1);
    assert_eq!(
        sim.use_token(&t1).await,
        40001,
        "a forced refresh kills the old token"
    );
    assert_eq!(
        sim.stable(true).await.token().0,
        t2,
        "too early: nothing refreshed"
    );
    let mut current = t2;
    for _ in 0..2 {
        sim.advance(30).await;
        let (next, left) = sim.stable(true).await.token();
        assert_ne!(next, current);
        assert_eq!(left, 100);
        current = next;
    }
    sim.advance(30).await;
    assert_eq!(
        sim.stable(true).await.token().0,
        current,
        "the fourth force of the day is refused"
    );
    let s = sim.ctl.stats().await.unwrap().apis.stable_token;
    assert_eq!((s.forced, s.forced_refreshed, s.forced_refused), (5, 3, 2));
    sim.advance(86_400).await;
    assert_ne!(sim.stable(true).await.token().0, current);
    let s = sim.ctl.stats().await.unwrap().apis.stable_token;
    assert_eq!(s.forced_refreshed, 4, "a new day, a new budget");
}

#[tokio::test]
async fn past_the_daily_limit_stable_token_answers_45009_until_the_next_day() {
    let sim = start(api_config()).await;
    for _ in 0..50 {
        assert_eq!(sim.stable(false).await.errcode(), 0);
    }
    assert_eq!(sim.stable(false).await.errcode(), 45009);
    assert_eq!(sim.stable(true).await.errcode(), 45009);
    sim.advance(86_400).await;
    assert_eq!(sim.stable(false).await.errcode(), 0);
}

#[tokio::test]
async fn each_plain_token_call_issues_a_new_token_and_the_previous_dies_after_the_overlap() {
    let sim = start(api_config()).await;
    let (t1, left) = sim.plain().await.token();
    assert_eq!(left, 20);
    let (t2, _) = sim.plain().await.token();
    assert_ne!(t1, t2);
    assert_eq!(sim.use_token(&t1).await, 40097, "valid during the overlap");
    sim.advance(5).await;
    assert_eq!(sim.use_token(&t1).await, 40001, "superseded");
    assert_eq!(sim.use_token(&t2).await, 40097);
    let stable = sim.stable(false).await.token().0;
    assert!(
        stable != t1 && stable != t2,
        "stable tokens are apart from plain ones"
    );
    let stats = sim.ctl.stats().await.unwrap().apis;
    assert_eq!(stats.endpoints["token"].calls, 2);
    assert_eq!(stats.endpoints["token"].by_app[DEMO_APPID], 2);
}

#[tokio::test]
async fn bad_credentials_and_bad_requests_get_wechats_errcodes() {
    let sim = start(api_config()).await;
    let body = |grant: &str, appid: &str, secret: &str| json!({"grant_type": grant, "appid": appid, "secret": secret});
    let cases = [
        (body("client_credential", DEMO_APPID, "wrong"), 40125),
        (body("client_credential", "wxunknown", DEMO_SECRET), 40013),
        (body("client_credential", "", DEMO_SECRET), 41002),
        (body("client_credential", DEMO_APPID, ""), 41004),
        (body("authorization_code", DEMO_APPID, DEMO_SECRET), 40002),
        (json!([1, 2]), 43002),
        (body("client_credential", APP_B, DEMO_SECRET), 40125),
    ];
    for (body, errcode) in cases {
        assert_eq!(
            sim.stable_raw(body.clone()).await.errcode(),
            errcode,
            "{body}"
        );
    }
    let form = "grant_type=client_credential&appid=wx0123456789abcdef&secret=x";
    let form = sim
        .send(sim.http.post(sim.at("/cgi-bin/stable_token")).body(form))
        .await;
    assert_eq!(form.errcode(), 43002, "JSON only");
    let get = sim
        .send(sim.http.get(sim.at("/cgi-bin/stable_token")))
        .await;
    assert_eq!((get.status, get.errcode()), (200, 43002));
    assert!(get.content_type.starts_with("application/json"));
    let b = json!({"grant_type": "client_credential", "appid": APP_B, "secret": SECRET_B});
    assert_eq!(sim.stable_raw(b).await.errcode(), 0);
}

#[tokio::test]
async fn a_revoked_token_answers_40001_and_the_next_stable_call_gets_a_new_one() {
    let sim = start(api_config()).await;
    let (old, _) = sim.stable(false).await.token();
    assert_eq!(sim.ctl.revoke_tokens(DEMO_APPID).await.unwrap(), 1);
    assert_eq!(sim.use_token(&old).await, 40001);
    let (new, left) = sim.stable(false).await.token();
    assert_ne!(new, old);
    assert_eq!(left, 20);
    assert_eq!(sim.stable(false).await.token().0, new, "and keeps it");
    assert_eq!(sim.ctl.stats().await.unwrap().apis.stable_token.issued, 2);
}

#[tokio::test]
async fn a_missing_malformed_unknown_or_expired_token_gets_its_own_errcode() {
    let sim = start(api_config()).await;
    let req = sim.http.get(sim.at("/wxa/checksession"));
    assert_eq!(sim.send(req).await.errcode(), 41001);
    assert_eq!(sim.use_token("short").await, 40014);
    assert_eq!(sim.use_token("has spaces in it, sixteen+").await, 40014);
    assert_eq!(sim.use_token(&"A".repeat(100)).await, 40001);
    let (token, _) = sim.stable(false).await.token();
    sim.advance(20).await;
    assert_eq!(sim.use_token(&token).await, 42001);
}
