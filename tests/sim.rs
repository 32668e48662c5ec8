//! The WeChat simulator over real HTTP: each test spawns its own simulator, plays the user's
//! side through the control API, and calls code2Session with plain reqwest as a backend would.

use std::time::{Duration, Instant};

use serde_json::Value;
use wxlogin::{
    crypto::wxbiz,
    quota::Quota,
    sim::{
        self, DEMO_APPID, DEMO_SECRET, Faults, ScriptedAnswer, SimApp, SimConfig, SimControl,
        SimServer,
    },
};

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
        let resp = self
            .http
            .get(self.url())
            .query(query)
            .send()
            .await
            .expect("simulator answers");
        Reply {
            status: resp.status().as_u16(),
            content_type: (resp.headers().get("content-type"))
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default(),
            body: resp.bytes().await.unwrap().to_vec(),
        }
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

#[tokio::test]
async fn a_code_exchanges_once_and_then_answers_code_been_used() {
    let sim = start(SimConfig::demo()).await;
    let code = sim.mint("alice").await;
    assert_eq!(code.len(), 32);
    assert!(code.bytes().all(|b| b.is_ascii_alphanumeric()));

    let first = sim.demo(&code).await;
    assert_eq!(first.errcode(), 0);
    let second = sim.demo(&code).await;
    assert_eq!(second.errcode(), 40163);
    let msg = second.json()["errmsg"].as_str().unwrap().to_owned();
    assert!(msg.starts_with("code been used, rid: "), "{msg}");
}

#[tokio::test]
async fn login_answers_a_code_and_its_lifetime_in_seconds() {
    let sim = start(SimConfig::demo()).await;
    let body = format!(r#"{{"appid":"{DEMO_APPID}","user":"alice"}}"#);
    let (status, minted) = sim.control_post("/sim/login", body).await;
    assert_eq!(status, 200);
    assert_eq!(minted["expires_in"], 300);
    assert_eq!(minted["code"].as_str().unwrap().len(), 32);
}

#[tokio::test]
async fn a_batch_mints_one_distinct_code_per_user_entry() {
    let sim = start(SimConfig::demo()).await;
    let codes = sim
        .ctl
        .mint_codes(DEMO_APPID, &["alice", "bob", "alice"])
        .await
        .unwrap();
    assert_eq!(codes.len(), 3);
    assert_ne!(codes[0], codes[2]);
    let a0 = sim.demo(&codes[0]).await.json();
    let a2 = sim.demo(&codes[2]).await.json();
    assert_eq!(a0["openid"], a2["openid"], "both codes are alice's");
    assert_eq!(sim.ctl.stats().await.unwrap().codes_minted, 3);
}

#[tokio::test]
async fn every_answer_is_http_200_text_plain_with_a_rid_in_errors() {
    let sim = start(SimConfig::demo()).await;
    let ok = sim.demo(&sim.mint("alice").await).await;
    let bad = sim.demo("nonsense").await;
    for r in [&ok, &bad] {
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, "text/plain");
    }
    let ok = ok.json();
    assert_eq!(ok["session_key"].as_str().unwrap().len(), 24);
    assert!(ok.get("errcode").is_none());
    assert_eq!(bad.json()["errcode"], 40029);
    assert!(
        bad.json()["errmsg"]
            .as_str()
            .unwrap()
            .starts_with("invalid code, rid: ")
    );
}

#[tokio::test]
async fn a_code_expires_after_its_ttl() {
    let config = SimConfig {
        code_ttl: Duration::from_millis(300),
        ..SimConfig::demo()
    };
    let sim = start(config).await;
    let code = sim.mint("alice").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(sim.demo(&code).await.errcode(), 40029);
}

#[tokio::test]
async fn a_code_minted_for_one_app_is_invalid_at_another() {
    let sim = start(two_apps()).await;
    let code = sim.mint("alice").await;
    assert_eq!(sim.exchange(APP_B, SECRET_B, &code).await.errcode(), 40029);
}

#[tokio::test]
async fn a_wrong_secret_is_40125_and_leaves_the_code_usable() {
    let sim = start(SimConfig::demo()).await;
    let code = sim.mint("alice").await;
    assert_eq!(
        sim.exchange(DEMO_APPID, "wrong", &code).await.errcode(),
        40125
    );
    assert_eq!(sim.demo(&code).await.errcode(), 0);
}

#[tokio::test]
async fn missing_parameters_and_unknown_appids_get_their_errcodes() {
    let sim = start(SimConfig::demo()).await;
    let code = sim.mint("alice").await;
    let cases: [(&[(&str, &str)], i64); 5] = [
        (&[("secret", DEMO_SECRET), ("js_code", &code)], 41002),
        (&[("appid", DEMO_APPID), ("js_code", &code)], 41004),
        (&[("appid", DEMO_APPID), ("secret", DEMO_SECRET)], 41008),
        (
            &[
                ("appid", DEMO_APPID),
                ("secret", DEMO_SECRET),
                ("js_code", ""),
            ],
            41008,
        ),
        (
            &[
                ("appid", "wxunknown"),
                ("secret", DEMO_SECRET),
                ("js_code", &code),
            ],
            40013,
        ),
    ];
    for (query, expected) in cases {
        assert_eq!(sim.call(query).await.errcode(), expected, "{query:?}");
    }
}

#[tokio::test]
async fn the_app_quota_holds_in_a_sliding_window_and_over_quota_calls_do_not_consume_the_code() {
    let config = SimConfig {
        app_quota: Some("5/2s".parse().unwrap()),
        ..SimConfig::demo()
    };
    let sim = start(config).await;
    let codes: Vec<String> = futures::future::join_all(
        (0..6).map(|i| sim.ctl.mint_code(DEMO_APPID, if i < 3 { "a" } else { "b" })),
    )
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();
    for code in &codes[..5] {
        assert_eq!(sim.demo(code).await.errcode(), 0);
    }
    assert_eq!(sim.demo(&codes[5]).await.errcode(), 45011);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        sim.demo(&codes[5]).await.errcode(),
        0,
        "the 45011 did not consume the code"
    );

    let stats = sim.ctl.stats().await.unwrap();
    let app = &stats.apps[DEMO_APPID];
    assert_eq!(app.calls, 7);
    assert_eq!(app.window_secs, 2.0);
    assert_eq!(
        app.max_in_window, 6,
        "the answered-45011 call counts in the window"
    );
    assert_eq!(app.by_errcode[&45011], 1);
}

#[tokio::test]
async fn the_user_quota_limits_one_user_and_not_the_others() {
    let sim = start(SimConfig::demo()).await;
    sim.ctl
        .set_quotas(None, Some("2/60s".parse().unwrap()))
        .await
        .unwrap();
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(sim.demo(&sim.mint("alice").await).await.errcode());
    }
    assert_eq!(answers, [0, 0, 45011]);
    assert_eq!(sim.demo(&sim.mint("bob").await).await.errcode(), 0);

    let stats = sim.ctl.stats().await.unwrap();
    assert_eq!(stats.users["alice"].max_in_window, 3);
    assert_eq!(stats.users["alice"].window_secs, 60.0);
    assert_eq!(stats.users["bob"].calls, 1);
}

#[tokio::test]
async fn busy_answers_come_at_the_configured_ratio_and_do_not_consume_codes() {
    let sim = start(SimConfig::demo()).await;
    sim.ctl
        .set_faults(&Faults {
            busy_ratio: 0.3,
            ..Faults::default()
        })
        .await
        .unwrap();
    let code = sim.mint("alice").await;
    let n = 400;
    let mut busy = 0;
    for _ in 0..n {
        match sim.demo(&code).await.errcode() {
            -1 => busy += 1,
            0 | 40163 => {}
            other => panic!("unexpected errcode {other}"),
        }
    }
    // Binomial(400, 0.3): mean 120, sd ≈ 9.2; ±45 is about five standard deviations.
    assert!((75..=165).contains(&busy), "{busy} busy answers out of {n}");
    let stats = sim.ctl.stats().await.unwrap();
    assert_eq!(stats.by_errcode[&-1], busy);
    assert_eq!(
        stats.by_errcode[&0], 1,
        "the code was exchanged exactly once"
    );
}

#[tokio::test]
async fn an_injected_502_is_an_html_page() {
    let sim = start(SimConfig::demo()).await;
    sim.ctl
        .set_faults(&Faults {
            http_502_ratio: 1.0,
            ..Faults::default()
        })
        .await
        .unwrap();
    let r = sim.demo(&sim.mint("alice").await).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.content_type, "text/html");
    assert!(String::from_utf8_lossy(&r.body).contains("502 Bad Gateway"));
    assert_eq!(sim.ctl.stats().await.unwrap().http_502, 1);
}

#[tokio::test]
async fn a_garbage_body_comes_with_http_200_and_does_not_parse() {
    let sim = start(SimConfig::demo()).await;
    sim.ctl
        .set_faults(&Faults {
            garbage_ratio: 1.0,
            ..Faults::default()
        })
        .await
        .unwrap();
    for _ in 0..20 {
        let r = sim.demo("whatever").await;
        assert_eq!(r.status, 200);
        assert!(
            serde_json::from_slice::<Value>(&r.body).is_err(),
            "{:?}",
            r.body
        );
    }
    assert_eq!(sim.ctl.stats().await.unwrap().garbage, 20);
}

#[tokio::test]
async fn a_hung_call_times_out_at_the_client_and_shutdown_releases_it() {
    let sim = start(SimConfig::demo()).await;
    sim.ctl
        .set_faults(&Faults {
            hang_ratio: 1.0,
            ..Faults::default()
        })
        .await
        .unwrap();
    let code = sim.mint("alice").await;
    let r = (sim.http.get(sim.url()))
        .query(&[
            ("appid", DEMO_APPID),
            ("secret", DEMO_SECRET),
            ("js_code", &code),
        ])
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(r.unwrap_err().is_timeout());

    // A call still hanging must not keep the server from shutting down.
    let pending = tokio::spawn({
        let (http, url) = (sim.http.clone(), sim.url());
        async move { http.get(url).send().await }
    });
    // The spawned call reaches the server when it does: wait for it (bounded) before shutdown.
    let mut hangs = 0;
    for _ in 0..100 {
        hangs = sim.ctl.stats().await.unwrap().hangs;
        if hangs == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(hangs, 2);
    tokio::time::timeout(Duration::from_secs(10), sim.server.shutdown())
        .await
        .expect("shutdown does not wait for hung calls");
    let _ = pending.await;
}

#[tokio::test]
async fn injected_latency_delays_the_answer() {
    let sim = start(SimConfig::demo()).await;
    sim.ctl
        .set_faults(&Faults {
            latency_ms: 200,
            ..Faults::default()
        })
        .await
        .unwrap();
    let code = sim.mint("alice").await;
    let t0 = Instant::now();
    assert_eq!(sim.demo(&code).await.errcode(), 0);
    assert!(t0.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn a_45011_storm_answers_every_call_until_it_ends() {
    let sim = start(SimConfig::demo()).await;
    let code = sim.mint("alice").await;
    sim.ctl
        .set_faults(&Faults {
            storm_45011_secs: 1.5,
            ..Faults::default()
        })
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(sim.demo(&code).await.errcode(), 45011);
    }
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(sim.demo(&code).await.errcode(), 0);
}

#[tokio::test]
async fn a_high_risk_user_gets_40226_and_the_code_is_consumed() {
    let sim = start(SimConfig::demo()).await;
    sim.ctl
        .set_high_risk(DEMO_APPID, "mallory", true)
        .await
        .unwrap();
    let code = sim.mint("mallory").await;
    assert_eq!(sim.demo(&code).await.errcode(), 40226);
    assert_eq!(sim.demo(&code).await.errcode(), 40163);
    assert_eq!(sim.demo(&sim.mint("alice").await).await.errcode(), 0);
    sim.ctl
        .set_high_risk(DEMO_APPID, "mallory", false)
        .await
        .unwrap();
    assert_eq!(sim.demo(&sim.mint("mallory").await).await.errcode(), 0);
}

#[tokio::test]
async fn unionid_is_answered_only_for_apps_bound_to_an_open_platform_account() {
    let sim = start(two_apps()).await;
    let bound = sim.demo(&sim.mint("alice").await).await.json();
    let code_b = sim.ctl.mint_code(APP_B, "alice").await.unwrap();
    let unbound = sim.exchange(APP_B, SECRET_B, &code_b).await.json();
    assert_eq!(bound["unionid"].as_str().unwrap().len(), 28);
    assert!(unbound.get("unionid").is_none());
}

#[tokio::test]
async fn openid_and_unionid_are_stable_and_session_keys_are_fresh() {
    let mut config = two_apps();
    config.apps[1].unionid = true;
    let sim = start(config).await;
    let a1 = sim.demo(&sim.mint("alice").await).await.json();
    let a2 = sim.demo(&sim.mint("alice").await).await.json();
    let b = sim
        .exchange(
            APP_B,
            SECRET_B,
            &sim.ctl.mint_code(APP_B, "alice").await.unwrap(),
        )
        .await
        .json();
    let bob = sim.demo(&sim.mint("bob").await).await.json();

    assert_eq!(a1["openid"], a2["openid"]);
    assert!(a1["openid"].as_str().unwrap().starts_with('o'));
    assert_eq!(a1["openid"].as_str().unwrap().len(), 28);
    assert_ne!(a1["openid"], b["openid"], "openid differs per app");
    assert_eq!(
        a1["unionid"], b["unionid"],
        "unionid is the same across apps"
    );
    assert_ne!(a1["openid"], bob["openid"]);
    assert_ne!(a1["unionid"], bob["unionid"]);
    assert_ne!(
        a1["session_key"], a2["session_key"],
        "a fresh session_key per exchange"
    );
}

#[tokio::test]
async fn stats_count_calls_answers_and_repeated_codes_exactly() {
    let sim = start(SimConfig::demo()).await;
    let once = sim.mint("alice").await;
    let twice = sim.mint("alice").await;
    let _never = sim.mint("bob").await;
    sim.demo(&once).await;
    sim.demo(&twice).await;
    sim.demo(&twice).await;
    sim.demo(&twice).await;
    sim.demo("unknown-code").await;

    let s = sim.ctl.stats().await.unwrap();
    assert_eq!(s.calls, 5);
    assert_eq!(s.by_errcode.get(&0), Some(&2));
    assert_eq!(s.by_errcode.get(&40163), Some(&2));
    assert_eq!(s.by_errcode.get(&40029), Some(&1));
    assert_eq!(s.codes_minted, 3);
    assert_eq!(s.codes_presented_more_than_once, 1);
    assert_eq!(s.codes_exchanged_more_than_once, 1);
    assert_eq!(s.calls_per_code.get(&1), Some(&1));
    assert_eq!(s.calls_per_code.get(&3), Some(&1));
    assert_eq!(s.calls_per_code.len(), 2);
    assert_eq!(s.apps[DEMO_APPID].calls, 5);
    assert_eq!(s.users["alice"].calls, 4);
    assert_eq!(s.users["alice"].by_errcode.get(&40163), Some(&2));
    assert_eq!(s.users["alice"].window_secs, 60.0);
}

#[tokio::test]
async fn reset_clears_stats_faults_and_scripts_and_all_also_forgets_codes() {
    let sim = start(SimConfig::demo()).await;
    let used = sim.mint("alice").await;
    let fresh = sim.mint("alice").await;
    sim.demo(&used).await;
    sim.ctl
        .set_faults(&Faults {
            busy_ratio: 1.0,
            ..Faults::default()
        })
        .await
        .unwrap();
    sim.ctl
        .script(vec![ScriptedAnswer::wechat("{}")])
        .await
        .unwrap();

    sim.ctl.reset().await.unwrap();
    assert_eq!(sim.ctl.stats().await.unwrap().calls, 0);
    assert_eq!(sim.ctl.faults().await.unwrap(), Faults::default());
    assert_eq!(
        sim.demo(&used).await.errcode(),
        40163,
        "codes survive a plain reset"
    );
    let s = sim.ctl.stats().await.unwrap();
    assert_eq!(s.codes_exchanged_more_than_once, 1);
    assert_eq!(
        s.calls_per_code.get(&1),
        Some(&1),
        "per-code counts restart at the reset"
    );

    sim.ctl.reset_all().await.unwrap();
    assert_eq!(
        sim.demo(&fresh).await.errcode(),
        40029,
        "reset all forgets codes"
    );
}

#[tokio::test]
async fn scripted_answers_are_sent_raw_in_order_then_the_logic_resumes() {
    let sim = start(SimConfig::demo()).await;
    let code = sim.mint("alice").await;
    let odd = ScriptedAnswer {
        status: 503,
        content_type: "application/json".into(),
        body: r#"{"errcode":40164,"errmsg":"invalid ip"}"#.into(),
    };
    sim.ctl
        .script(vec![
            odd.clone(),
            ScriptedAnswer::wechat(r#"{"errcode":-1}"#),
        ])
        .await
        .unwrap();
    let first = sim.demo(&code).await;
    assert_eq!(
        (first.status, first.content_type.as_str()),
        (503, "application/json")
    );
    assert_eq!(first.body, odd.body.as_bytes());
    assert_eq!(sim.demo(&code).await.errcode(), -1);
    assert_eq!(
        sim.demo(&code).await.errcode(),
        0,
        "scripts never consume codes"
    );
    assert_eq!(sim.ctl.stats().await.unwrap().scripted, 2);
}

#[tokio::test]
async fn user_info_decrypts_to_the_profile_under_the_current_session_key() {
    let sim = start(SimConfig::demo()).await;
    let err = sim.ctl.user_info(DEMO_APPID, "alice").await.unwrap_err();
    assert!(
        matches!(err, sim::SimControlError::Status { status: 409, .. }),
        "{err}"
    );

    let old = sim.demo(&sim.mint("alice").await).await.json();
    let new = sim.demo(&sim.mint("alice").await).await.json();
    let key = new["session_key"].as_str().unwrap();
    let info = sim.ctl.user_info(DEMO_APPID, "alice").await.unwrap();

    let profile = wxbiz::decrypt(key, &info.encrypted_data, &info.iv, DEMO_APPID).unwrap();
    assert_eq!(profile["openId"], new["openid"]);
    assert_eq!(profile["unionId"], new["unionid"]);
    assert_eq!(profile["nickName"], "alice");
    assert_eq!(profile["watermark"]["appid"], DEMO_APPID);
    assert!(profile["watermark"]["timestamp"].as_u64().unwrap() > 1_700_000_000);

    let raw: Value = serde_json::from_str(&info.raw_data).unwrap();
    for field in [
        "nickName",
        "gender",
        "language",
        "city",
        "province",
        "country",
        "avatarUrl",
    ] {
        assert_eq!(raw[field], profile[field], "{field}");
    }
    assert!(raw.get("openId").is_none() && raw.get("watermark").is_none());
    assert!(wxbiz::verify_signature(
        &info.raw_data,
        key,
        &info.signature
    ));
    let old_key = old["session_key"].as_str().unwrap();
    assert!(wxbiz::decrypt(old_key, &info.encrypted_data, &info.iv, DEMO_APPID).is_err());
}

#[tokio::test]
async fn bad_control_input_is_a_json_error() {
    let sim = start(SimConfig::demo()).await;
    let (status, body) = sim.control_post("/sim/login", "not json").await;
    assert_eq!(status, 400);
    assert!(body["error"].is_string());
    let (status, _) = sim
        .control_post("/sim/login", r#"{"appid":"wxnope","user":"alice"}"#)
        .await;
    assert_eq!(status, 404);
    let (status, _) = sim
        .control_post(
            "/sim/login",
            format!(r#"{{"appid":"{DEMO_APPID}","user":""}}"#),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = sim.control_post("/sim/faults", r#"{"busy_ratio":7}"#).await;
    assert_eq!(status, 400);
    let (status, _) = sim.control_post("/sim/quotas", r#"{"app":"lots"}"#).await;
    assert_eq!(status, 400);
    let (status, _) = sim
        .control_post("/sim/script", r#"{"answers":[{"status":42}]}"#)
        .await;
    assert_eq!(status, 400);
    let (status, body) = sim.control_post("/sim/script", vec![b' '; 1 << 20]).await;
    assert_eq!(status, 413);
    assert!(body["error"].is_string());
}

#[tokio::test]
async fn quotas_set_at_run_time_are_reported_and_applied() {
    let sim = start(SimConfig::demo()).await;
    let quota: Quota = "1/60s".parse().unwrap();
    sim.ctl.set_quotas(Some(quota), None).await.unwrap();
    assert_eq!(sim.demo(&sim.mint("alice").await).await.errcode(), 0);
    assert_eq!(sim.demo(&sim.mint("bob").await).await.errcode(), 45011);
    let resp: Value = sim
        .http
        .get(format!("{}/sim/quotas", sim.server.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["app"], "1/60s");
    assert!(resp["user"].is_null());
}

#[tokio::test]
async fn an_invalid_configuration_is_refused_at_spawn() {
    let mut config = SimConfig::demo();
    config.apps.push(SimApp::demo());
    assert!(sim::spawn(config).await.is_err(), "duplicate appid");
    let config = SimConfig {
        faults: Faults {
            garbage_ratio: -0.1,
            ..Faults::default()
        },
        ..SimConfig::demo()
    };
    assert!(sim::spawn(config).await.is_err());
}
