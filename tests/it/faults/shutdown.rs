//! SIGTERM to real role processes while logins are in flight: an ingress answers every one with
//! its result; a worker gives back, at once, every code it has not sent, for another worker to
//! take without waiting for an ack wait to pass.

use std::{sync::Arc, time::Duration};

use crate::helpers::fleet::{Fleet, FleetOptions, terminate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_an_ingress_answers_every_login_in_flight_with_its_result() {
    let mut sim = FleetOptions::default().sim;
    // Under the fleet's WeChat timeout (1 s).
    sim.faults.latency_ms = 800;
    let mut fleet = Fleet::start(FleetOptions {
        sim,
        workers: 1,
        login_wait: Duration::from_secs(5),
        ..FleetOptions::default()
    })
    .await;
    let mut codes = Vec::new();
    for i in 0..20 {
        codes.push(fleet.mint(&format!("in-flight-{i}")).await);
    }
    let mut ingress = std::mem::replace(
        &mut fleet.ingress,
        tokio::process::Command::new("true").spawn().unwrap(),
    );
    let fleet = Arc::new(fleet);
    let posts: Vec<_> = codes
        .into_iter()
        .map(|code| {
            let fleet = fleet.clone();
            tokio::spawn(async move { fleet.post_login(&code).await.map(|r| r.status().as_u16()) })
        })
        .collect();
    // Every login is waiting for WeChat (0.8 s) when the ingress is told to stop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        terminate(&mut ingress).await,
        "the ingress did not exit cleanly"
    );
    let mut statuses = Vec::new();
    for p in posts {
        statuses.push(p.await.unwrap().map_err(|e| e.to_string()));
    }
    assert!(
        statuses.iter().all(|s| s == &Ok(200)),
        "every login in flight gets its result, not a 202: {statuses:?}"
    );
}

/// With an ack wait of 60 s, a worker holding codes that wait for quota is stopped: another
/// worker exchanges them at once (not after 60 s + a takeover's 60 s), each reaches WeChat once,
/// and the stopped worker exits well within its drain bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_worker_gives_its_unsent_codes_to_another_at_once() {
    let mut fleet = Fleet::start(FleetOptions {
        workers: 1,
        quota: "3/1s".parse().unwrap(),
        ack_wait_secs: 60,
        login_wait: Duration::from_millis(500),
        ..FleetOptions::default()
    })
    .await;
    let mut first = fleet.workers.remove(0);
    let fleet = Arc::new(fleet);
    let started = std::time::Instant::now();
    let load = {
        let fleet = fleet.clone();
        tokio::spawn(async move { fleet.load(24, 24, Duration::from_secs(40)).await })
    };
    // The first worker holds all 24, exchanging 3 a second.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _second = fleet.spawn_worker(1);
    let stopping = std::time::Instant::now();
    assert!(
        terminate(&mut first).await,
        "the worker did not exit cleanly"
    );
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "the drain took {:?}",
        stopping.elapsed()
    );
    let report = load.await.unwrap();
    let stats = fleet.control.stats().await.unwrap();
    report.print("drain gives back", &stats, "");
    assert_eq!(report.succeeded, 24, "{report:?}");
    assert_eq!(stats.codes_presented_more_than_once, 0, "{stats:?}");
    // 24 codes at 3 a second is 8 s of quota; without the give-back the second worker would
    // wait an ack wait (60 s) and a takeover (60 s) more.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}
