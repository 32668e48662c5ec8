//! Logins under pressure: duplicate submissions of one code, a burst over the WeChat quota,
//! and a busy, failing and hanging WeChat.

use std::time::Duration;

use wxlogin_sim::Faults;

use crate::helpers::{APPID, Db, Options, spawn_app};

pub async fn duplicate_submissions_reach_wechat_once(db: Db) {
    let app = spawn_app(Options::new(db)).await;
    app.faults(Faults {
        latency_ms: 300,
        ..Faults::default()
    })
    .await;
    let code = app.mint("grace").await;
    let (a, b, c) = tokio::join!(
        app.login_following_tickets(&code),
        app.login_following_tickets(&code),
        app.login_following_tickets(&code),
    );
    // Concurrent duplicates all share the first exchange's outcome, each with its own token.
    for (status, body) in [&a, &b, &c] {
        assert_eq!(*status, 200, "{body}");
    }
    assert_ne!(a.1["token"], b.1["token"]);
    // A later reuse is 409 at once.
    let (status, body) = app.login_following_tickets(&code).await;
    assert_eq!((status, body["errcode"].as_i64()), (409, Some(40163)));
    let stats = app.control.stats().await.unwrap();
    assert_eq!(stats.calls, 1, "{stats:?}");
    app.wait_for_logins(1).await;
    app.stop().await;
}

pub async fn a_burst_over_the_quota_never_exceeds_it_uses_it_and_still_completes(db: Db) {
    let mut opts = Options::new(db);
    opts.quota = "20/1s".parse().unwrap();
    opts.sim.stats_window = Duration::from_secs(1);
    let app = spawn_app(opts).await;
    let mut codes = Vec::new();
    for i in 0..70 {
        codes.push(app.mint(&format!("burst-{i}")).await);
    }
    let logins = codes.iter().map(|c| app.login_following_tickets(c));
    let results = futures::future::join_all(logins).await;
    for (status, body) in &results {
        assert_eq!(*status, 200, "{body}");
    }
    let stats = app.control.stats().await.unwrap();
    let app_stats = &stats.apps[APPID];
    assert_eq!(stats.calls, 70);
    // Never over the quota in any 1 s window (governor's default burst would allow 39)...
    assert!(
        app_stats.max_in_window <= 20,
        "window max {} > quota 20",
        app_stats.max_in_window
    );
    // ...and under this saturating load the quota is used, not wasted.
    assert!(
        app_stats.max_in_window >= 18,
        "window max {} < 90% of the quota",
        app_stats.max_in_window
    );
    assert_eq!(stats.by_errcode.get(&45011).copied().unwrap_or(0), 0);
    app.stop().await;
}

pub async fn busy_bad_gateway_and_hanging_wechat_still_end_in_success(db: Db) {
    let mut opts = Options::new(db);
    opts.wechat_timeout = Duration::from_millis(300);
    let app = spawn_app(opts).await;
    app.faults(Faults {
        busy_ratio: 0.3,
        http_502_ratio: 0.2,
        hang_ratio: 0.1,
        ..Faults::default()
    })
    .await;
    let mut codes = Vec::new();
    for i in 0..12 {
        codes.push(app.mint(&format!("faulty-{i}")).await);
    }
    let results =
        futures::future::join_all(codes.iter().map(|c| app.login_following_tickets(c))).await;
    // The simulator's -1, 502 and hang never consume a code, so every login must succeed.
    for (status, body) in &results {
        assert_eq!(*status, 200, "{body}");
    }
    let stats = app.control.stats().await.unwrap();
    assert!(
        stats.calls > 12,
        "faults should have caused retries: {stats:?}"
    );
    app.stop().await;
}
