//! Codes: one exchange per code, their lifetime and app, the errcodes of bad calls, the
//! plain-text answers, and a high-risk user.

use std::time::Duration;

use wxlogin_sim::{DEMO_APPID, DEMO_SECRET, SimConfig};

use super::{APP_B, SECRET_B, start, two_apps};

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
