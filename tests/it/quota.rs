//! The fleet-wide quota budget, with several limiters standing for several worker processes
//! (each has only its own local state; they share nothing but the NATS KV bucket).

use std::sync::Arc;

use wxlogin::{
    clock::Clock,
    contract::topology::Topology,
    exchange::{AcquireError, AppLimiter, Budget},
    quota::Quota,
};

use natsd::NatsServer;

const APPID: &str = "wx00000000000000a1";

async fn budget(nats: &NatsServer) -> Budget {
    budget_on(nats, Clock::system()).await
}

/// The fleet's budget as a worker whose clock is `clock` sees it.
async fn budget_on(nats: &NatsServer, clock: Clock) -> Budget {
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    Budget::new(topology().ensure(&js).await.unwrap().quota, clock)
}

fn topology() -> Topology {
    Topology::from_settings(&wxlogin::settings::Settings {
        nats_prefix: "q".into(),
        ..Default::default()
    })
}

/// Takes a slot and confirms it at once, as a step does right before its call.
async fn call_slot(limiter: &AppLimiter, deadline_us: i64) -> Result<(), AcquireError> {
    let slot = limiter.acquire(deadline_us).await?;
    limiter
        .confirm(slot)
        .expect("confirmed at once, so on time");
    Ok(())
}

fn max_in_window(times: &mut [i64], window_us: i64) -> usize {
    times.sort();
    let mut max = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= window_us {
            start += 1;
        }
        max = max.max(end - start + 1);
    }
    max
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_limiters_on_one_budget_never_exceed_the_quota_together() {
    let nats = NatsServer::start_temporary().await.unwrap();
    let quota: Quota = "20/1s".parse().unwrap();
    let mut limiters = Vec::new();
    for _ in 0..3 {
        limiters.push(Arc::new(AppLimiter::new(APPID, quota, budget(&nats).await)));
    }
    // 3 × 25 callers, all wanting to call at once.
    let mut tasks = Vec::new();
    for limiter in &limiters {
        for _ in 0..25 {
            let limiter = limiter.clone();
            tasks.push(tokio::spawn(async move {
                call_slot(&limiter, i64::MAX).await.unwrap();
                Clock::system().now_us()
            }));
        }
    }
    let mut times = Vec::new();
    for t in tasks {
        times.push(t.await.unwrap());
    }
    let max = max_in_window(&mut times, 1_000_000);
    println!("75 calls through 3 limiters at 20/1s: max {max} in any 1 s window");
    assert!(max <= 20, "{max} calls in one window");
    assert!(max >= 18, "quota wasted: only {max} in the busiest window");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_by_one_limiter_holds_back_the_others() {
    let nats = NatsServer::start_temporary().await.unwrap();
    let quota: Quota = "100/2s".parse().unwrap();
    let a = AppLimiter::new(APPID, quota, budget(&nats).await);
    let b = Arc::new(AppLimiter::new(APPID, quota, budget(&nats).await));
    // b follows the fleet's pauses the way a worker process does.
    let follower = {
        let b = b.clone();
        let budget = budget(&nats).await;
        tokio::spawn(async move {
            let _ = budget
                .watch_pauses(&[APPID.to_string()], |appid, until| {
                    if appid == APPID {
                        b.note_pause(until)
                    }
                })
                .await;
        })
    };
    // b holds a lease of slots already, as a busy worker would.
    call_slot(&b, i64::MAX).await.unwrap();
    let paused_at = Clock::system().now_us();
    a.pause_for_window().await.unwrap();
    call_slot(&b, i64::MAX).await.unwrap();
    let waited = Clock::system().now_us() - paused_at;
    assert!(
        waited >= 2_000_000,
        "b called {waited} µs after a's 45011, inside the window"
    );
    // And a code whose deadline falls inside the pause is given up rather than sent.
    a.pause_for_window().await.unwrap();
    let err = call_slot(&b, Clock::system().now_us() + 500_000)
        .await
        .unwrap_err();
    assert!(matches!(err, AcquireError::Expired), "{err}");
    follower.abort();
}

/// A worker whose clock runs an hour ahead writes the fleet's schedule an hour ahead (its
/// leases, its 45011 pause). An honest worker reads no more than the clamp's horizon of it: its
/// next slot comes within seconds, not in an hour (when every code would have expired), and
/// the pause it hears of through the watch holds it back for a window at most.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_written_by_a_clock_an_hour_ahead_holds_honest_workers_seconds_not_an_hour() {
    let nats = NatsServer::start_temporary().await.unwrap();
    let quota: Quota = "20/2s".parse().unwrap();
    let hour_us = 3_600_000_000;
    let ahead = AppLimiter::new(
        APPID,
        quota,
        budget_on(&nats, Clock::off_by_ms(hour_us / 1000)).await,
    );
    call_slot(&ahead, i64::MAX).await.unwrap();
    ahead.pause_for_window().await.unwrap();
    let honest = Arc::new(AppLimiter::new(APPID, quota, budget(&nats).await));
    let follower = {
        let (honest, budget) = (honest.clone(), budget(&nats).await);
        tokio::spawn(async move {
            let _ = budget
                .watch_pauses(&[APPID.to_string()], |_, until| honest.note_pause(until))
                .await;
        })
    };
    let now = Clock::system().now_us();
    let window_us = quota.window.as_micros() as i64;
    // (The clamp's horizon, and a second for the round trips of a loaded machine.)
    let horizon = wxlogin::exchange::budget::horizon(window_us);
    call_slot(&honest, now + horizon + 1_000_000)
        .await
        .expect("a slot within the clamp horizon, not an hour away");
    let waited = Clock::system().now_us() - now;
    println!("an honest worker waited {waited} µs behind a schedule an hour ahead");
    assert!(honest.paused_until_us() <= Clock::system().now_us() + window_us);
    follower.abort();
}

/// The schedule's records expire: a record a wrong clock wrote does not stay after the fleet
/// went quiet, whatever happens to the worker that wrote it.
#[tokio::test]
async fn the_quota_bucket_expires_its_records() {
    let nats = NatsServer::start_temporary().await.unwrap();
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let kv = topology().ensure(&js).await.unwrap().quota;
    let status = kv.status().await.unwrap();
    assert_eq!(
        status.max_age(),
        wxlogin::exchange::budget::SCHEDULE_MAX_AGE
    );
    assert!(status.max_age() > std::time::Duration::ZERO);
}

/// The simulator keeps its own copy of the quota notation (it shares no code with wxlogin):
/// both copies must read and print every example alike, and refuse the same nonsense.
#[test]
fn the_settings_and_the_simulator_read_the_quota_notation_alike() {
    for text in ["5000/60s", "20/1.5s", " 7 / 2s ", "1/86400s", "3/0.25s"] {
        let ours: Quota = text.parse().unwrap();
        let theirs: wxlogin_sim::Quota = text.parse().unwrap();
        assert_eq!(
            (ours.calls, ours.window),
            (theirs.calls, theirs.window),
            "{text}"
        );
        assert_eq!(ours.to_string(), theirs.to_string(), "{text}");
    }
    for bad in [
        "", "5000", "0/60s", "10/0s", "10/60", "x/60s", "10/-1s", "10/NaNs", "1/86401s",
    ] {
        assert!(bad.parse::<Quota>().is_err(), "{bad:?}");
        assert!(bad.parse::<wxlogin_sim::Quota>().is_err(), "{bad:?}");
    }
}

/// A worker measures its clock against the server's with a probe key in the quota bucket: the
/// offset it finds is its clock's (within the probe's uncertainty), and the probes share the
/// bucket with the schedules without being read as one. The pause watch that reads them is
/// the code workers deployed before the probes existed run too: they ignore the probes alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_probes_measure_the_offset_and_are_never_taken_for_a_schedule() {
    let nats = NatsServer::start_temporary().await.unwrap();
    let honest = budget(&nats).await.server_offset("w-honest").await.unwrap();
    let ahead = budget_on(&nats, Clock::off_by_ms(5_000))
        .await
        .server_offset("w-ahead")
        .await
        .unwrap();
    println!("offsets: honest {honest:?}, 5 s ahead {ahead:?}");
    // (The server stamps in its own time, read a few µs apart from ours.)
    let slack = 5_000;
    assert!(
        honest.offset_us.abs() <= honest.uncertainty_us + slack,
        "{honest:?}"
    );
    assert!(
        (ahead.offset_us - 5_000_000).abs() <= ahead.uncertainty_us + slack,
        "{ahead:?}"
    );
    let quota: Quota = "10/1s".parse().unwrap();
    AppLimiter::new(APPID, quota, budget(&nats).await)
        .pause_for_window()
        .await
        .unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (watcher, found) = (budget(&nats).await, tokio::sync::Notify::new());
    let appids = [APPID.to_string()];
    let watch = watcher.watch_pauses(&appids, |key, _| {
        seen.lock().unwrap().push(key.to_string());
        if key == APPID {
            found.notify_one();
        }
    });
    tokio::select! {
        _ = watch => panic!("the watch ended"),
        _ = found.notified() => {}
        _ = tokio::time::sleep(std::time::Duration::from_secs(10)) => panic!("no schedule seen"),
    }
    assert!(seen.lock().unwrap().iter().all(|k| k == APPID), "{seen:?}");
}

/// The clamp never cuts into honest leases: right after a 45011 the schedule is a window
/// ahead, and leases taken then reach further; another worker's lease still comes after them
/// (a clamp to one window would have handed out the same slots twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_taken_after_a_pause_are_never_handed_out_again() {
    let nats = NatsServer::start_temporary().await.unwrap();
    let (a, b) = (budget(&nats).await, budget(&nats).await);
    let (window_us, spacing_us) = (1_000_000, 100_000);
    a.pause(APPID, window_us).await.unwrap();
    let none = wxlogin::exchange::budget::Slack::NONE;
    let first = a.reserve(APPID, 8, spacing_us, window_us, none);
    let first = first.await.unwrap();
    let second = b.reserve(APPID, 8, spacing_us, window_us, none);
    let second = second.await.unwrap();
    assert!(
        second[0] >= first[7] + spacing_us,
        "{first:?} then {second:?}"
    );
}
