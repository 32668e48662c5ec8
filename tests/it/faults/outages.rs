//! Outages longer than every timeout, under load: NATS away, the results stream refusing writes,
//! each for five ack waits (longer than the redelivery, the takeover wait, and the 4 × ack wait
//! for which workers once tried to record before giving up). A WeChat answer in hand is never
//! dropped and never raced by a takeover: every accepted login ends in exactly one result, and
//! no code reaches WeChat twice.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream;

use super::{PATIENCE, wait_for_table};
use crate::helpers::fleet::{Fleet, FleetOptions, Report};

const ACK_WAIT_SECS: u64 = 3;
const OUTAGE: Duration = Duration::from_secs(5 * ACK_WAIT_SECS);

async fn fleet(wechat_latency_ms: u64) -> Arc<Fleet> {
    let mut sim = FleetOptions::default().sim;
    sim.faults.latency_ms = wechat_latency_ms;
    Arc::new(
        Fleet::start(FleetOptions {
            sim,
            ack_wait_secs: ACK_WAIT_SECS,
            ..FleetOptions::default()
        })
        .await,
    )
}

/// Waits until WeChat has been asked `n` times: with a slow WeChat, a good number of exchanges
/// are then in flight, and their answers arrive during the outage that starts next.
async fn wait_for_calls(fleet: &Fleet, n: u64) {
    for _ in 0..400 {
        if fleet.control.stats().await.unwrap().calls >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("WeChat was never asked {n} times");
}

/// The fleet's results stream, through a client of the test's own.
async fn results_stream(fleet: &Fleet) -> jetstream::stream::Stream {
    let url = fleet.nats.lock().await.url().to_string();
    let js = jetstream::new(async_nats::connect(url).await.unwrap());
    js.get_stream(format!("{}_RESULTS", fleet.prefix()))
        .await
        .unwrap()
}

/// What every outage test checks once the load is over.
async fn assert_one_result_per_login_and_one_call_per_code(fleet: &Fleet, report: &Report) {
    let stats = fleet.control.stats().await.unwrap();
    assert_eq!(report.lost, 0, "{report:?}");
    assert_eq!(stats.codes_presented_more_than_once, 0, "{stats:?}");
    assert_eq!(report.succeeded, report.accepted(), "{report:?}");
    // At most one result per code (the stream refuses a second) and one for every accepted
    // login; a code whose publish was stored just as NATS went away, while its client was told
    // 503, may add its own.
    let mut results = results_stream(fleet).await;
    let stored = results.info().await.unwrap().state.messages as usize;
    let minted = stats.codes_minted as usize;
    assert!(
        report.accepted() <= stored && stored <= minted,
        "accepted {} stored {stored} minted {minted}",
        report.accepted()
    );
    // Every success is in the table once; a code exchanged although its client was told 503
    // (stored just as NATS went away) may add its own login.
    let n = report.succeeded as i64;
    let applied = wait_for_table(&fleet.db_url, n).await;
    assert!(
        n <= applied && applied <= stored as i64,
        "{n} {applied} {stored}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_for_five_ack_waits_mid_load_loses_nothing_and_calls_wechat_once_per_code() {
    // WeChat answers in 800 ms (the workers wait up to 1 s): the answers of the exchanges in
    // flight when NATS dies reach workers that cannot record them.
    let fleet = fleet(800).await;
    let load = {
        let fleet = fleet.clone();
        tokio::spawn(async move { fleet.load(120, 20, PATIENCE).await })
    };
    wait_for_calls(&fleet, 30).await;
    let restart = {
        let fleet = fleet.clone();
        // A clean shutdown: what nats-server acknowledged is on disk. (A crash may lose its
        // last acknowledged writes, which no client can make up for.)
        tokio::spawn(async move {
            let mut nats = fleet.nats.lock().await;
            nats.restart_after_shutdown(OUTAGE).await.unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Once the ingress knows NATS is away (its client notices a dead connection within a moment;
    // longer on a loaded machine), it says so at once.
    for _ in 0..50 {
        let ready = fleet.http.get(format!("{}/readyz", fleet.api)).send().await;
        if ready.is_ok_and(|r| r.status() == 503) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let asked = std::time::Instant::now();
    let r = fleet
        .post_login("0123456789abcdefABCDEF0123456789")
        .await
        .unwrap();
    let answered_in = asked.elapsed();
    assert_eq!(r.status(), 503);
    restart.await.unwrap();
    let report = load.await.unwrap();
    let stats = fleet.control.stats().await.unwrap();
    report.print(
        "nats down 5x ack wait",
        &stats,
        &format!("503_answered_in={answered_in:?}"),
    );
    assert!(
        answered_in < Duration::from_secs(2),
        "503 took {answered_in:?}"
    );
    assert_one_result_per_login_and_one_call_per_code(&fleet, &report).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_unwritable_for_five_ack_waits_mid_load_loses_nothing_and_calls_wechat_once_per_code()
 {
    let fleet = fleet(300).await;
    let load = {
        let fleet = fleet.clone();
        tokio::spawn(async move { fleet.load(80, 10, PATIENCE).await })
    };
    wait_for_calls(&fleet, 20).await;
    // The stream refuses every new message (as with a full disk or a lost quorum) while reads,
    // the codes stream and the ledger work on.
    let url = fleet.nats.lock().await.url().to_string();
    let js = jetstream::new(async_nats::connect(url).await.unwrap());
    let mut results = results_stream(&fleet).await;
    let held = results.info().await.unwrap().state.messages as i64;
    let normal = crate::helpers::refuse_writes(&js, &format!("{}_RESULTS", fleet.prefix())).await;
    tokio::time::sleep(OUTAGE).await;
    let during = results.info().await.unwrap().state.messages as i64;
    js.update_stream(normal).await.unwrap();
    let report = load.await.unwrap();
    let stats = fleet.control.stats().await.unwrap();
    report.print(
        "results unwritable 5x ack wait",
        &stats,
        &format!("results_when_blocked={held} after_the_block={during}"),
    );
    assert!(during <= held, "the block let results through");
    assert_one_result_per_login_and_one_call_per_code(&fleet, &report).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_accepted_while_every_worker_is_down_past_their_ttl_each_end_in_one_expired_result() {
    let mut fleet = Fleet::start(FleetOptions {
        workers: 0,
        code_ttl_secs: 1,
        ack_wait_secs: ACK_WAIT_SECS,
        login_wait: Duration::from_millis(200),
        ..FleetOptions::default()
    })
    .await;
    let mut tickets = Vec::new();
    for i in 0..5 {
        let code = fleet.mint(&format!("late-{i}")).await;
        let r = fleet.post_login(&code).await.unwrap();
        assert_eq!(r.status(), 202);
        let body: serde_json::Value = r.json().await.unwrap();
        tickets.push(body["ticket"].as_str().unwrap().to_string());
    }
    // No login hangs past code TTL + 2 × ack wait: its ticket then says "call wx.login again".
    tokio::time::sleep(Duration::from_secs(1 + 2 * ACK_WAIT_SECS + 1)).await;
    for ticket in &tickets {
        let r = fleet
            .http
            .get(format!("{}/v1/login/{ticket}", fleet.api))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        let body: serde_json::Value = r.json().await.unwrap();
        let message = body["errmsg"].as_str().unwrap_or_default();
        assert!(message.contains("expired"), "{body}");
    }
    // A worker comes back: each code still ends in exactly one result, without calling WeChat.
    fleet.add_worker(0);
    let mut results = results_stream(&fleet).await;
    let mut stored = 0;
    for _ in 0..100 {
        stored = results.info().await.unwrap().state.messages;
        if stored >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stored, 5);
    let mut expired = 0;
    for seq in 1..=5 {
        let msg = results.get_raw_message(seq).await.unwrap();
        let result = wxlogin::contract::events::LoginResult::decode(&msg.payload).unwrap();
        if matches!(
            result.outcome,
            wxlogin::contract::events::LoginOutcome::Failure {
                reason: wxlogin::contract::events::FailureReason::Expired,
                ..
            }
        ) {
            expired += 1;
        }
    }
    assert_eq!(expired, 5);
    assert_eq!(fleet.control.stats().await.unwrap().calls, 0);
}
