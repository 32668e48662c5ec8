//! Honest clocks: whether this worker's wall clock agrees with the NATS server's closely enough
//! to take slots of the fleet's schedule, which is wall-clock time shared by every worker.
//!
//! Why the bound is a quarter of the quota's margin ([`skew_bound`]): N + 1 consecutive slots
//! are `window + margin` apart on the schedule, and a call leaves up to the lateness tolerance
//! (`margin / 2`) after its slot. Two workers whose clocks are off by `a` and `b` move their
//! calls against each other by `|a − b|`, so no window holds N + 1 calls as long as
//! `|a − b| + margin / 2 < margin`: every worker within `margin / 4` of the server keeps that.
//! A worker beyond it refuses to take slots (its codes go back to the others) until a later
//! probe finds its clock fixed. A probe only bounds the offset within half its round trip, so a
//! worker refuses when even the most favourable reading of the probe is beyond the bound: a
//! slow NATS must not stop honest workers. [`Budget::reserve`](super::Budget::reserve) also
//! clamps what it reads, so a clock that goes wrong between two probes holds the fleet back
//! by a window (a pause) or two windows and 5 s (the next free slot) at most.

use std::{
    sync::atomic::{AtomicBool, AtomicI64, Ordering},
    time::Duration,
};

use super::budget::{Budget, Offset};
use crate::quota::Quota;

/// How often a running worker probes its clock again.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);
/// Probes per check: the one with the shortest round trip bounds the offset best.
pub const PROBES_PER_CHECK: usize = 3;

/// The most a worker's clock may be off the server's and still take slots of `quota`.
pub fn skew_bound(quota: Quota) -> Duration {
    super::limiter::margin(quota) / 4
}

/// What the last check found, shared by the limiters and the worker loop of one process.
#[derive(Debug)]
pub struct ClockGuard {
    /// The tightest bound of the quotas in use (µs); `i64::MAX` until a limiter sets one.
    bound_us: AtomicI64,
    offset_us: AtomicI64,
    uncertainty_us: AtomicI64,
    refusing: AtomicBool,
    changed: tokio::sync::Notify,
}

impl Default for ClockGuard {
    fn default() -> Self {
        ClockGuard {
            bound_us: AtomicI64::new(i64::MAX),
            offset_us: AtomicI64::new(0),
            uncertainty_us: AtomicI64::new(0),
            refusing: AtomicBool::new(false),
            changed: tokio::sync::Notify::new(),
        }
    }
}

/// Whether an offset measured with this uncertainty is surely beyond `bound_us`.
pub fn beyond(offset: Offset, bound_us: i64) -> bool {
    offset.offset_us.abs().saturating_sub(offset.uncertainty_us) > bound_us
}

impl ClockGuard {
    /// A limiter of `quota` takes slots through this guard: its bound applies.
    pub fn hold_to(&self, quota: Quota) {
        let bound = skew_bound(quota).as_micros() as i64;
        self.bound_us.fetch_min(bound, Ordering::Relaxed);
    }

    pub fn bound_us(&self) -> i64 {
        self.bound_us.load(Ordering::Relaxed)
    }

    /// Takes in a probe's finding; returns whether the verdict changed (refusing ↔ taking).
    pub fn observe(&self, offset: Offset) -> bool {
        self.offset_us.store(offset.offset_us, Ordering::Relaxed);
        self.uncertainty_us
            .store(offset.uncertainty_us, Ordering::Relaxed);
        let refuse = beyond(offset, self.bound_us());
        let changed = self.refusing.swap(refuse, Ordering::Relaxed) != refuse;
        if changed {
            self.changed.notify_waiters();
        }
        changed
    }

    /// Whether the last probe found our clock too far off to take slots.
    pub fn refuses(&self) -> bool {
        self.refusing.load(Ordering::Relaxed)
    }

    /// The last probe's finding.
    pub fn last(&self) -> Offset {
        Offset {
            offset_us: self.offset_us.load(Ordering::Relaxed),
            uncertainty_us: self.uncertainty_us.load(Ordering::Relaxed),
        }
    }

    /// Returns once the guard lets slots be taken.
    pub async fn admits(&self) {
        loop {
            let changed = self.changed.notified();
            if !self.refuses() {
                return;
            }
            changed.await;
        }
    }
}

/// Probes our clock [`PROBES_PER_CHECK`] times and takes in the best probe (the shortest
/// round trip); says so when the verdict changes. `None`: no probe got through (NATS away),
/// and the last verdict stands.
pub async fn check(budget: &Budget, worker: &str) -> Option<Offset> {
    let mut best: Option<Offset> = None;
    for _ in 0..PROBES_PER_CHECK {
        match budget.server_offset(worker).await {
            Ok(o) if best.is_none_or(|b| o.uncertainty_us < b.uncertainty_us) => best = Some(o),
            Ok(_) => {}
            Err(e) => {
                crate::meter::nats_error("clock_probe");
                tracing::debug!(error = %e, "clock probe failed");
            }
        }
    }
    let offset = best?;
    let guard = budget.guard();
    let changed = guard.observe(offset);
    crate::meter::clock_offset(offset.offset_us, offset.uncertainty_us, guard.refuses());
    let (offset_ms, uncertainty_ms) = (offset.offset_us / 1000, offset.uncertainty_us / 1000);
    let bound_ms = guard.bound_us() / 1000;
    if changed && guard.refuses() {
        tracing::error!(
            offset_ms,
            uncertainty_ms,
            bound_ms,
            "this worker's clock is off the NATS server's by more than the bound: it takes no \
             quota slots and gives its codes to the other workers until the clock is fixed"
        );
    } else if changed {
        tracing::warn!(
            offset_ms,
            uncertainty_ms,
            bound_ms,
            "this worker's clock is fixed: taking quota slots again"
        );
    }
    Some(offset)
}

/// Checks our clock every [`PROBE_EVERY`] for as long as the worker runs (the caller drops
/// this future at shutdown).
pub async fn watch(budget: Budget, worker: String) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        check(&budget, &worker).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(offset_ms: i64, uncertainty_ms: i64) -> Offset {
        Offset {
            offset_us: offset_ms * 1000,
            uncertainty_us: uncertainty_ms * 1000,
        }
    }

    #[test]
    fn the_bound_leaves_the_lateness_tolerance_its_half_of_the_margin() {
        for q in ["40/2s", "5000/60s", "8/1s"] {
            let q: Quota = q.parse().unwrap();
            let margin = super::super::limiter::margin(q);
            // Two clocks at opposite ends of the bound, plus the tolerance, stay inside it.
            assert!(skew_bound(q) * 2 + margin / 2 <= margin, "{q}");
        }
        let q: Quota = "5000/60s".parse().unwrap();
        assert_eq!(skew_bound(q), Duration::from_millis(300));
    }

    #[test]
    fn a_clock_off_past_the_bound_refuses_and_takes_again_once_fixed() {
        let guard = ClockGuard::default();
        guard.hold_to("40/2s".parse().unwrap()); // bound 25 ms
        assert!(
            !guard.refuses(),
            "no probe yet: nothing says the clock is wrong"
        );
        assert!(!guard.observe(probe(10, 1)));
        assert!(guard.observe(probe(3_600_000, 1)), "an hour ahead");
        assert!(guard.refuses());
        assert!(
            !guard.observe(probe(-40, 2)),
            "behind counts as much as ahead"
        );
        assert!(guard.refuses());
        assert!(guard.observe(probe(3, 1)), "fixed");
        assert!(!guard.refuses());
    }

    #[test]
    fn a_slow_probe_refuses_only_when_even_its_best_reading_is_past_the_bound() {
        let guard = ClockGuard::default();
        guard.hold_to("40/2s".parse().unwrap());
        // 2 s each way to NATS: an estimate of 500 ms is within its 2 s uncertainty.
        guard.observe(probe(500, 2_000));
        assert!(!guard.refuses());
        guard.observe(probe(2_100, 2_000));
        assert!(guard.refuses());
    }

    #[tokio::test]
    async fn waiters_resume_when_the_clock_is_fixed() {
        let guard = std::sync::Arc::new(ClockGuard::default());
        guard.hold_to("40/2s".parse().unwrap());
        guard.observe(probe(60_000, 1));
        let waiter = tokio::spawn({
            let guard = guard.clone();
            async move { guard.admits().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        guard.observe(probe(0, 1));
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("resumed")
            .unwrap();
    }
}
