//! The per-appid limiter in front of code2Session.
//!
//! `WXLOGIN_APP_QUOTA` means "at most N calls in ANY window of T". governor's
//! `Quota::per_minute(N)` has a burst of N, which admits up to 2N−1 calls in some windows; so the
//! limiter runs with a burst of 1 and spaces calls `(T + margin) / N` apart. The margin absorbs
//! the jitter between granting a call and the call reaching WeChat, and costs at most ~2% of the
//! quota. A 45011 answer pauses the app for a whole window: WeChat's own window is opaque.

use std::{num::NonZeroU32, sync::Mutex, time::Duration};

// tokio's clock, so paused-time tests and the sleeps below agree on "now".
use tokio::time::Instant;

use governor::{DefaultDirectRateLimiter, Quota as GovernorQuota, RateLimiter};

use crate::quota::Quota;

pub struct AppLimiter {
    limiter: DefaultDirectRateLimiter,
    /// One waiter at a time polls governor (FIFO), instead of every waiting exchange waking up
    /// for every permit.
    turn: tokio::sync::Mutex<()>,
    window: Duration,
    paused_until: Mutex<Option<Instant>>,
}

/// The spacing between calls that keeps every window of `quota.window` at or under the quota.
pub fn spacing(quota: Quota) -> Duration {
    let margin = (quota.window / 50).max(Duration::from_millis(50));
    (quota.window + margin) / quota.calls
}

impl AppLimiter {
    pub fn new(quota: Quota) -> Self {
        let period = spacing(quota).max(Duration::from_nanos(1));
        let gq = GovernorQuota::with_period(period)
            .expect("period is positive")
            .allow_burst(NonZeroU32::MIN);
        AppLimiter {
            limiter: RateLimiter::direct(gq),
            turn: tokio::sync::Mutex::new(()),
            window: quota.window,
            paused_until: Mutex::new(None),
        }
    }

    fn paused(&self) -> Option<Instant> {
        let mut guard = self.paused_until.lock().expect("not poisoned");
        match *guard {
            Some(until) if until > Instant::now() => Some(until),
            Some(_) => {
                *guard = None;
                None
            }
            None => None,
        }
    }

    /// Waits until one call may be made now.
    pub async fn acquire(&self) {
        let _turn = self.turn.lock().await;
        loop {
            if let Some(until) = self.paused() {
                tokio::time::sleep_until(until).await;
                continue;
            }
            self.limiter.until_ready().await;
            // A 45011 may have arrived while we waited: the permit is then dropped unused.
            if self.paused().is_none() {
                return;
            }
        }
    }

    /// WeChat answered 45011: hold this app back for a whole window.
    pub fn pause_for_window(&self) {
        let until = Instant::now() + self.window;
        let mut guard = self.paused_until.lock().expect("not poisoned");
        if guard.is_none_or(|u| u < until) {
            *guard = Some(until);
        }
    }

    pub fn is_paused(&self) -> bool {
        self.paused().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spacing_keeps_n_calls_inside_a_window_with_margin() {
        let q: Quota = "100/60s".parse().unwrap();
        let s = spacing(q);
        // 100 calls spaced this way span more than the window, so no window holds 101.
        assert!(s * 100 > q.window);
        // ...and at most 2% of the quota is given up.
        assert!(s * 98 <= q.window + Duration::from_millis(1), "{s:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_45011_pause_holds_calls_back_for_a_window() {
        let limiter = AppLimiter::new("10/2s".parse().unwrap());
        limiter.acquire().await;
        limiter.pause_for_window();
        assert!(limiter.is_paused());
        let before = tokio::time::Instant::now();
        limiter.acquire().await;
        assert!(before.elapsed() >= Duration::from_secs(2));
    }
}
