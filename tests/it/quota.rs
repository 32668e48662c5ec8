//! The fleet-wide quota budget, with several limiters standing for several worker processes
//! (each has only its own local state; they share nothing but the NATS KV bucket).

use std::sync::Arc;

use wxlogin::{
    clock::Clock,
    contract::topology::Topology,
    exchange::{AppLimiter, Budget},
    quota::Quota,
};

use natsd::NatsServer;

const APPID: &str = "wx00000000000000a1";

async fn budget(nats: &NatsServer) -> Budget {
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let topology = Topology::from_settings(&wxlogin::settings::Settings {
        nats_prefix: "q".into(),
        ..Default::default()
    });
    Budget::new(topology.ensure(&js).await.unwrap().quota, Clock::system())
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
                limiter.acquire(i64::MAX).await.unwrap();
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
                .watch_pauses(|appid, until| {
                    if appid == APPID {
                        b.note_pause(until)
                    }
                })
                .await;
        })
    };
    // b holds a lease of slots already, as a busy worker would.
    b.acquire(i64::MAX).await.unwrap();
    let paused_at = Clock::system().now_us();
    a.pause_for_window().await.unwrap();
    b.acquire(i64::MAX).await.unwrap();
    let waited = Clock::system().now_us() - paused_at;
    assert!(
        waited >= 2_000_000,
        "b called {waited} µs after a's 45011, inside the window"
    );
    // And a code whose deadline falls inside the pause is given up rather than sent.
    a.pause_for_window().await.unwrap();
    let err = b
        .acquire(Clock::system().now_us() + 500_000)
        .await
        .unwrap_err();
    assert!(
        matches!(err, wxlogin::exchange::AcquireError::Expired),
        "{err}"
    );
    follower.abort();
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
