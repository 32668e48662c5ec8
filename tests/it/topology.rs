//! What the roles find in NATS: a durable consumer whose settings changed (an ack wait, say)
//! is refused by the role that would use it, naming the difference, and `wxlogin migrate`
//! (here its library half) brings it to the settings. The shortest lifetimes the settings
//! allow make streams nats-server accepts.

use std::time::Duration;

use crate::helpers::{APPID, Db, Options, SECRET, spawn_app, test_keyring};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use wxlogin::{app::roles, settings::App};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_ack_wait_is_refused_by_the_worker_until_migrate_applies_it() {
    let app = spawn_app(Options::new(Db::Sqlite)).await;
    let mut changed = app.settings.clone();
    changed.exchange_ack_wait_secs = app.settings.exchange_ack_wait_secs * 2;
    let apps = vec![App {
        appid: APPID.into(),
        secret: SecretString::from(SECRET),
    }];
    let refused = roles::worker(&changed, test_keyring(), &apps, CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("ack_wait"), "{refused}");
    assert!(refused.contains("wxlogin migrate"), "{refused}");

    let pipeline = roles::migrate_nats(&changed).await.unwrap();
    let info = pipeline
        .handles
        .codes
        .clone()
        .consumer_info(pipeline.topology.exchange_consumer())
        .await
        .unwrap();
    assert_eq!(
        info.config.ack_wait,
        Duration::from_secs(changed.exchange_ack_wait_secs)
    );
    // Now the worker with the new settings starts (and stops when told).
    let stop = CancellationToken::new();
    let worker = tokio::spawn({
        let (stop, apps) = (stop.clone(), apps.clone());
        async move { roles::worker(&changed, test_keyring(), &apps, stop).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !worker.is_finished(),
        "the worker refused the applied settings"
    );
    stop.cancel();
    worker.await.unwrap().unwrap();
    app.stop().await;
}

/// Found by the chaos run, which uses the shortest lifetimes: results kept for the settings'
/// floor (code TTL + ack wait + 60 s, under the 2 min de-duplication window) made a results
/// stream nats-server refused (10052), and `wxlogin migrate` retried it for 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_kept_for_the_shortest_age_the_settings_allow_make_a_valid_stream() {
    let app = spawn_app(Options::new(Db::Sqlite)).await;
    let mut short = app.settings.clone();
    short.nats_prefix = format!("{}short", short.nats_prefix);
    (short.code_ttl_secs, short.exchange_ack_wait_secs) = (10, 4);
    short.results_max_age_secs = 74;
    short.session_ttl_secs = 90;
    let pipeline = tokio::time::timeout(Duration::from_secs(10), roles::migrate_nats(&short))
        .await
        .expect("migrate at once, no retries")
        .unwrap();
    let info = pipeline
        .handles
        .results
        .clone()
        .info()
        .await
        .unwrap()
        .config
        .clone();
    assert_eq!(info.max_age, Duration::from_secs(74));
    assert!(info.duplicate_window <= info.max_age);
    app.stop().await;
}
