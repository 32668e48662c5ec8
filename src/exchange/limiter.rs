//! The per-appid limiter in front of code2Session, shared by the whole fleet through
//! [`Budget`](super::budget::Budget).
//!
//! `WXLOGIN_APP_QUOTA` means "at most N calls in ANY window of T". A plain token bucket
//! (governor's `Quota::per_minute(N)`) has a burst of N and admits up to 2N−1 calls in some
//! windows, and lives in one process. Here every call takes a slot of the fleet's schedule;
//! slots are `(T + margin) / N` apart, so N calls always span more than T. A call is made at its
//! slot time or within `tolerance` after it, else the slot is given up (a late call could bunch
//! with the next slot). The margin absorbs that tolerance, network jitter and clock skew, and
//! costs at most 2% of the quota on windows of 5 s and more.

use std::{
    collections::VecDeque,
    sync::atomic::{AtomicI64, AtomicUsize, Ordering},
    time::Duration,
};

use super::budget::{Budget, BudgetError};
use crate::quota::Quota;

/// Slack between N slots and the window: what the schedule gives up for safety.
pub fn margin(quota: Quota) -> Duration {
    (quota.window / 50).max(Duration::from_millis(100))
}

/// The spacing between calls that keeps every window of `quota.window` at or under the quota.
pub fn spacing(quota: Quota) -> Duration {
    (quota.window + margin(quota)) / quota.calls
}

#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    /// The next free slot is after the code's deadline.
    #[error("no call slot before the code expires")]
    Expired,
    #[error(transparent)]
    Unavailable(#[from] BudgetError),
}

pub struct AppLimiter {
    appid: String,
    budget: Budget,
    spacing_us: i64,
    window_us: i64,
    tolerance_us: i64,
    max_lease: u32,
    /// Slots this process holds, in time order. The mutex also queues waiters in FIFO order.
    slots: tokio::sync::Mutex<VecDeque<i64>>,
    waiting: AtomicUsize,
    paused_until_us: AtomicI64,
    used: crate::meter::QuotaUse,
}

struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AppLimiter {
    pub fn new(appid: &str, quota: Quota, budget: Budget) -> Self {
        let spacing = spacing(quota);
        // Lease at most ~200 ms of slots at once: what a crashed worker can waste.
        let max_lease = (Duration::from_millis(200).as_micros() / spacing.as_micros().max(1))
            .clamp(1, 64) as u32;
        AppLimiter {
            appid: appid.to_string(),
            budget,
            spacing_us: spacing.as_micros().max(1) as i64,
            window_us: quota.window.as_micros() as i64,
            tolerance_us: (margin(quota) / 2).as_micros() as i64,
            max_lease,
            slots: tokio::sync::Mutex::new(VecDeque::new()),
            waiting: AtomicUsize::new(0),
            paused_until_us: AtomicI64::new(0),
            used: crate::meter::QuotaUse::new(appid, quota),
        }
    }

    /// Waits for this process's next slot of the fleet schedule; a call may be made right after.
    pub async fn acquire(&self, deadline_us: i64) -> Result<(), AcquireError> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.waiting);
        let mut slots = self.slots.lock().await;
        loop {
            let now = self.budget.clock().now_us();
            let paused = self.paused_until_us.load(Ordering::Relaxed);
            while slots
                .front()
                .is_some_and(|&s| s < now - self.tolerance_us || s < paused)
            {
                slots.pop_front();
            }
            let Some(&slot) = slots.front() else {
                let k = (self.waiting.load(Ordering::Relaxed) as u32).clamp(1, self.max_lease);
                let fresh = self.budget.reserve(&self.appid, k, self.spacing_us).await?;
                slots.extend(fresh);
                continue;
            };
            if slot > deadline_us {
                return Err(AcquireError::Expired);
            }
            if slot > now {
                tokio::time::sleep(Duration::from_micros((slot - now) as u64)).await;
                // Look again: a pause may have arrived, or we may have woken too late.
                continue;
            }
            slots.pop_front();
            self.used.call(now / 1_000_000);
            return Ok(());
        }
    }

    /// WeChat answered 45011: hold the whole fleet back for a window.
    pub async fn pause_for_window(&self) -> Result<(), BudgetError> {
        self.note_pause(self.budget.clock().now_us() + self.window_us);
        let until = self.budget.pause(&self.appid, self.window_us).await?;
        self.note_pause(until);
        Ok(())
    }

    /// Brings `wxlogin_quota_used_calls` up to date when no call has been made lately.
    pub fn refresh_usage(&self) {
        self.used.refresh(self.budget.clock().now_us() / 1_000_000);
    }

    /// Another worker (or we) paused this app until `until_us`.
    pub fn note_pause(&self, until_us: i64) {
        self.paused_until_us.fetch_max(until_us, Ordering::Relaxed);
    }

    pub fn paused_until_us(&self) -> i64 {
        self.paused_until_us.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spacing_keeps_n_calls_inside_a_window_with_margin() {
        for q in ["100/60s", "5000/60s", "20/5s", "8/1s"] {
            let q: Quota = q.parse().unwrap();
            let s = spacing(q);
            // N calls spaced this way span more than the window plus the lateness tolerance,
            // so no window holds N + 1.
            assert!(s * q.calls > q.window + margin(q) / 2, "{q}");
        }
        // On windows of a minute, at most 2% of the quota is given up.
        let q: Quota = "100/60s".parse().unwrap();
        assert!(spacing(q) * 98 <= q.window, "{:?}", spacing(q));
    }
}
