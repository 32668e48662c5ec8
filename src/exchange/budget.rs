//! The fleet-wide WeChat quota: one shared call schedule per appid in the `{prefix}_quota` KV
//! bucket.
//!
//! `WXLOGIN_APP_QUOTA` = N calls per window T is the budget of the whole fleet. The bucket holds,
//! per appid, the next free call time of the fleet (`tat_us`, as in GCRA) and a pause deadline.
//! A worker reserves k consecutive call slots, `spacing` apart, by compare-and-set; slots handed
//! out this way never overlap, however many workers there are, so every window of T holds at
//! most N calls. A worker that dies wastes at most the slots of its last lease (≤ ~200 ms of
//! quota) and never overspends; a worker that joins simply starts reserving. A 45011 seen by any
//! worker moves the schedule past a whole window and every worker learns it from a KV watch.

use crate::clock::Clock;
use async_nats::jetstream::kv::{self, Operation};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
#[error("quota budget unavailable: {0}")]
pub struct BudgetError(pub String);

#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Schedule {
    /// The earliest time the fleet may make its next call.
    pub tat_us: i64,
    /// No call before this (set by a 45011).
    pub paused_until_us: i64,
}

/// Slot times are wall-clock microseconds ([`Clock::now_us`]) so machines can share them.
#[derive(Clone)]
pub struct Budget {
    kv: kv::Store,
    clock: Clock,
}

fn unavailable(e: impl std::fmt::Display) -> BudgetError {
    BudgetError(e.to_string())
}

impl Budget {
    /// The schedule in `kv`, read against `clock`.
    pub fn new(kv: kv::Store, clock: Clock) -> Self {
        Budget { kv, clock }
    }

    /// The clock the schedule is read against.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    async fn read(&self, appid: &str) -> Result<(Schedule, u64), BudgetError> {
        match self.kv.entry(appid).await.map_err(unavailable)? {
            Some(e) if e.operation == Operation::Put => {
                let s = serde_json::from_slice(&e.value).unwrap_or_default();
                Ok((s, e.revision))
            }
            Some(e) => Ok((Schedule::default(), e.revision)),
            None => Ok((Schedule::default(), 0)),
        }
    }

    /// Applies `change` to the app's schedule atomically (retrying on a concurrent change).
    async fn modify<T>(
        &self,
        appid: &str,
        change: impl Fn(Schedule, i64) -> (Schedule, T),
    ) -> Result<T, BudgetError> {
        loop {
            let (current, revision) = self.read(appid).await?;
            let (next, out) = change(current, self.clock.now_us());
            let bytes: bytes::Bytes = serde_json::to_vec(&next).expect("serializes").into();
            match self.kv.update(appid, bytes, revision).await {
                Ok(_) => return Ok(out),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
    }

    /// Reserves `k` call slots `spacing_us` apart; returns their times (µs).
    pub async fn reserve(
        &self,
        appid: &str,
        k: u32,
        spacing_us: i64,
    ) -> Result<Vec<i64>, BudgetError> {
        self.modify(appid, |s, now| {
            let start = s.tat_us.max(now).max(s.paused_until_us);
            let slots: Vec<i64> = (0..k as i64).map(|i| start + i * spacing_us).collect();
            let next = Schedule {
                tat_us: start + k as i64 * spacing_us,
                ..s
            };
            (next, slots)
        })
        .await
    }

    /// WeChat answered 45011: nobody in the fleet calls for this app until `window_us` passed.
    pub async fn pause(&self, appid: &str, window_us: i64) -> Result<i64, BudgetError> {
        self.modify(appid, |s, now| {
            let until = s.paused_until_us.max(now + window_us);
            let next = Schedule {
                tat_us: s.tat_us.max(until),
                paused_until_us: until,
            };
            (next, until)
        })
        .await
    }

    /// Calls `on_pause(appid, paused_until_us)` for each app's current schedule, then for every
    /// change in the bucket, until the watch ends. Starting from the current schedules, a watch
    /// started again after a gap learns the pauses recorded during it.
    pub async fn watch_pauses(&self, on_pause: impl Fn(&str, i64)) -> Result<(), BudgetError> {
        let mut watch = self.kv.watch_with_history(">").await.map_err(unavailable)?;
        while let Some(entry) = watch.next().await {
            let Ok(entry) = entry else { continue };
            if let Ok(s) = serde_json::from_slice::<Schedule>(&entry.value) {
                on_pause(&entry.key, s.paused_until_us);
            }
        }
        Ok(())
    }
}
