//! `Exchanger::follow_fleet_pauses`: a worker hears of the 45011 pauses other workers record in
//! the quota bucket, also after its watch of the bucket failed.

use std::{sync::Arc, time::Duration};

use wxlogin::{
    clock::Clock,
    exchange::{AppLimiter, Budget},
};

use super::rig;
use crate::helpers::APPID;

/// Waits up to `patience` for `limiter` to hold a pause until at least `until_us`.
async fn sees_pause(limiter: &AppLimiter, until_us: i64, patience: Duration) -> bool {
    let give_up = tokio::time::Instant::now() + patience;
    while tokio::time::Instant::now() < give_up {
        if limiter.paused_until_us() >= until_us {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_pause_watch_failed_watches_again_and_sees_a_pause_recorded_meanwhile() {
    let rig = rig().await;
    let js = async_nats::jetstream::new(async_nats::connect(rig.nats.url()).await.unwrap());
    let topology = rig.exchanger.topology.clone();
    // The quota bucket unreachable when the worker starts watching it (as while JetStream
    // recovers after a restart): the watch fails.
    js.delete_key_value(topology.quota_bucket()).await.unwrap();
    let exchanger = Arc::new(rig.exchanger);
    let follower = tokio::spawn(exchanger.clone().follow_fleet_pauses());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The bucket is back, and another worker meets a 45011, likely before this one watches
    // again: the new watch must catch up on it.
    let handles = topology.ensure(&js).await.unwrap();
    let quota = "100/1s".parse().unwrap();
    let other = AppLimiter::new(APPID, quota, Budget::new(handles.quota, Clock::system()));
    other.pause_for_window().await.unwrap();
    let until = other.paused_until_us();
    let ours = &exchanger.limiters[APPID];
    assert!(
        sees_pause(ours, until, Duration::from_secs(15)).await,
        "the worker never heard of the fleet's pause (finished following: {})",
        follower.is_finished()
    );
    // And it goes on following: a later pause arrives through the same watch.
    tokio::time::sleep(Duration::from_millis(20)).await;
    other.pause_for_window().await.unwrap();
    let later = other.paused_until_us();
    assert!(later > until);
    assert!(sees_pause(ours, later, Duration::from_secs(5)).await);
    follower.abort();
}

/// The watch outlives a restart of the server: async-nats makes its consumer again once it has
/// reconnected, and should the watch end instead, the worker starts another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_nats_restart_a_worker_still_sees_a_pause_another_worker_records() {
    let super::Rig {
        exchanger,
        mut nats,
        _sim,
        ..
    } = rig().await;
    let topology = exchanger.topology.clone();
    let exchanger = Arc::new(exchanger);
    let follower = tokio::spawn(exchanger.clone().follow_fleet_pauses());
    tokio::time::sleep(Duration::from_millis(300)).await;
    nats.restart(Duration::from_millis(500)).await.unwrap();
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let handles = topology.ensure(&js).await.unwrap();
    let quota = "100/1s".parse().unwrap();
    let other = AppLimiter::new(APPID, quota, Budget::new(handles.quota, Clock::system()));
    other.pause_for_window().await.unwrap();
    let until = other.paused_until_us();
    assert!(
        sees_pause(&exchanger.limiters[APPID], until, Duration::from_secs(20)).await,
        "finished following: {}",
        follower.is_finished()
    );
    follower.abort();
}
