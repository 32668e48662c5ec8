//! What chaos runs found, each as an ordinary regression test of its own.

use std::time::Duration;

use crate::helpers::{Options, spawn_app};

/// Found by a long chaos run: with the quota saturated, WeChat answering slowly and then fast
/// again, 32 calls landed in one 1 s window of a 30/1s quota. WeChat counts a call when it
/// decides it, which can be anywhere in the call's round trip: calls sent on their slots while
/// answers took 800 ms and then calls sent while answers took none are decided closer together
/// than their slots were. The schedule must keep the quota for the decision times too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_in_wechat_latency_under_a_saturated_quota_keeps_every_window_within_it() {
    let mut opts = Options::new(crate::helpers::Db::Sqlite);
    opts.quota = "30/1s".parse().unwrap();
    opts.sim.app_quota = Some("30/1s".parse().unwrap());
    opts.login_wait = Duration::from_secs(20);
    let app = spawn_app(opts).await;
    app.faults(wxlogin_sim::Faults {
        latency_ms: 800,
        ..Default::default()
    })
    .await;
    let mut codes = Vec::new();
    for i in 0..120 {
        codes.push(app.mint(&format!("u{i}")).await);
    }
    let answers = {
        let logins = codes.iter().map(|c| app.login_following_tickets(c));
        let all = futures::future::join_all(logins);
        tokio::pin!(all);
        // Two seconds of slow answers with the quota saturated, then fast ones.
        let answered = tokio::select! {
            done = &mut all => Some(done),
            () = tokio::time::sleep(Duration::from_secs(2)) => None,
        };
        assert!(
            answered.is_none(),
            "the backlog must outlast the slow phase"
        );
        app.faults(wxlogin_sim::Faults::default()).await;
        all.await
    };
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "every login succeeds"
    );
    let stats = app.control.stats().await.unwrap();
    let app_stats = &stats.apps[crate::helpers::APPID];
    assert_eq!(
        stats.by_errcode.get(&45011),
        None,
        "WeChat never answered 45011"
    );
    assert!(
        app_stats.max_in_window <= 30,
        "{} calls in one window of a 30/1s quota",
        app_stats.max_in_window
    );
    app.stop().await;
}
