//! Honest clocks: a fleet where one worker's clock is an hour ahead and another's two seconds
//! behind (the test-only `WXLOGIN_TEST_CLOCK_OFFSET_MS`). Both find out against the NATS
//! server's time, refuse to take slots (and say so in a metric), and give their codes to the
//! honest worker, which logs every user in within the quota.

use std::{sync::Arc, time::Duration};

use super::{Worker, assert_quota_held_and_all_answered, metric, quota_fleet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_with_wrong_clocks_stand_aside_and_the_quota_holds() {
    let mut fleet = quota_fleet("40/2s", 30).await;
    let offset = |ms: i64| [("WXLOGIN_TEST_CLOCK_OFFSET_MS", ms.to_string())];
    let ahead = Worker::spawn(&mut fleet, 0, &offset(3_600_000));
    let behind = Worker::spawn(&mut fleet, 1, &offset(-2_000));
    let honest = Worker::spawn(&mut fleet, 2, &[]);
    let fleet = Arc::new(fleet);
    let report = fleet.load(100, 100, Duration::from_secs(40)).await;
    let stats = fleet.control.stats().await.unwrap();
    let app = &stats.apps[crate::helpers::APPID];
    let (ahead, behind, honest) = (
        ahead.metrics().await,
        behind.metrics().await,
        honest.metrics().await,
    );
    report.print(
        "clocks off by +1 h and -2 s",
        &stats,
        &format!(
            "max_in_2s_window={} offsets_s=[{}, {}, {}]",
            app.max_in_window,
            metric(&ahead, "wxlogin_clock_offset_seconds"),
            metric(&behind, "wxlogin_clock_offset_seconds"),
            metric(&honest, "wxlogin_clock_offset_seconds"),
        ),
    );
    assert_quota_held_and_all_answered(&fleet, &report, &stats, 40, 100);
    assert_eq!(metric(&ahead, "wxlogin_clock_skew_refusing"), 1.0);
    assert_eq!(metric(&behind, "wxlogin_clock_skew_refusing"), 1.0);
    assert_eq!(metric(&honest, "wxlogin_clock_skew_refusing"), 0.0);
    let ahead_s = metric(&ahead, "wxlogin_clock_offset_seconds");
    assert!((3599.0..3601.0).contains(&ahead_s), "{ahead_s}");
    // The wrong clocks made no call: all 100 went through the honest worker.
    assert_eq!(metric(&honest, "wxlogin_upstream_calls_total"), 100.0);
}
