//! The app and user quotas: a sliding window, over-quota calls that keep the code, and quotas
//! set at run time.

use std::time::Duration;

use serde_json::Value;
use wxlogin_sim::Quota;
use wxlogin_sim::{DEMO_APPID, SimConfig};

use super::start;

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
