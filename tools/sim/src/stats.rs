//! Exact counters of what the simulator answered, and the sliding windows that both enforce
//! quotas and measure `max_in_window`. Everything here is O(1) amortized per call, because the
//! simulator must never be the bottleneck of a benchmark.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use crate::apis::ApiStats;

/// Calls in a sliding window of fixed length, and the most ever seen in one such window.
#[derive(Debug)]
pub(crate) struct Window {
    len: Duration,
    times: VecDeque<Instant>,
    max: u64,
}

impl Window {
    pub(crate) fn new(len: Duration) -> Self {
        Window {
            len,
            times: VecDeque::new(),
            max: 0,
        }
    }

    /// Counts a call at `now` and returns how many calls fall in `(now - len, now]`,
    /// this one included.
    pub(crate) fn record(&mut self, now: Instant) -> u64 {
        if let Some(edge) = now.checked_sub(self.len) {
            while self.times.front().is_some_and(|&t| t <= edge) {
                self.times.pop_front();
            }
        }
        self.times.push_back(now);
        let n = self.times.len() as u64;
        self.max = self.max.max(n);
        n
    }

    /// A different length makes the old timestamps and maximum meaningless: start over.
    pub(crate) fn set_len(&mut self, len: Duration) {
        if len != self.len {
            *self = Window::new(len);
        }
    }

    pub(crate) fn clear(&mut self) {
        *self = Window::new(self.len);
    }
}

/// Counters of one app or one user.
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) calls: u64,
    pub(crate) by_errcode: HashMap<i64, u64>,
    pub(crate) window: Window,
}

impl Counters {
    pub(crate) fn new(window: Duration) -> Self {
        Counters {
            calls: 0,
            by_errcode: HashMap::new(),
            window: Window::new(window),
        }
    }

    /// Counts a call; returns the number of calls in the current window, this one included.
    pub(crate) fn call(&mut self, now: Instant) -> u64 {
        self.calls += 1;
        self.window.record(now)
    }

    pub(crate) fn answer(&mut self, errcode: i64) {
        *self.by_errcode.entry(errcode).or_default() += 1;
    }

    pub(crate) fn clear(&mut self) {
        self.calls = 0;
        self.by_errcode.clear();
        self.window.clear();
    }

    pub(crate) fn snapshot(&self) -> EntityStats {
        EntityStats {
            calls: self.calls,
            by_errcode: self.by_errcode.iter().map(|(&k, &v)| (k, v)).collect(),
            window_secs: self.window.len.as_secs_f64(),
            max_in_window: self.window.max,
        }
    }
}

/// Simulator-wide counters that are not per app or user.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    pub(crate) calls: u64,
    pub(crate) by_errcode: HashMap<i64, u64>,
    pub(crate) http_502: u64,
    pub(crate) garbage: u64,
    pub(crate) hangs: u64,
    pub(crate) scripted: u64,
    pub(crate) codes_minted: u64,
    pub(crate) codes_presented_more_than_once: u64,
    pub(crate) codes_exchanged_more_than_once: u64,
    pub(crate) storm_45011: u64,
    /// `calls_per_code[k]` = number of codes carried by exactly `k` calls so far.
    pub(crate) calls_per_code: HashMap<u32, u64>,
}

impl Totals {
    /// A code that had been carried by `before` calls is carried by one more.
    pub(crate) fn code_carried(&mut self, before: u32) {
        if before > 0
            && let Some(n) = self.calls_per_code.get_mut(&before)
        {
            *n -= 1;
            if *n == 0 {
                self.calls_per_code.remove(&before);
            }
        }
        *self.calls_per_code.entry(before + 1).or_default() += 1;
    }
}

/// Everything `GET /sim/stats` answers. Counts are exact since start or the last reset.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SimStats {
    /// Every `jscode2session` call, whatever happened to it.
    pub calls: u64,
    /// Answers of the simulated WeChat logic by errcode (success as `0`); injected faults
    /// and scripted answers are counted apart, below.
    pub by_errcode: BTreeMap<i64, u64>,
    pub http_502: u64,
    pub garbage: u64,
    pub hangs: u64,
    pub scripted: u64,
    pub codes_minted: u64,
    /// Minted codes that reached code validation in two calls or more.
    pub codes_presented_more_than_once: u64,
    /// Minted codes that reached code validation again after a successful exchange.
    pub codes_exchanged_more_than_once: u64,
    /// 45011 answers of an injected storm (also counted in `by_errcode`): the rest of
    /// `by_errcode[45011]` are the quota's own.
    #[serde(default)]
    pub storm_45011: u64,
    /// Number of calls carrying a code (any answer) → number of minted codes carried that often.
    pub calls_per_code: BTreeMap<u32, u64>,
    pub apps: BTreeMap<String, EntityStats>,
    pub users: BTreeMap<String, EntityStats>,
    /// The access-token endpoints (every field above is code2Session's).
    #[serde(default)]
    pub apis: ApiStats,
}

/// Counters of one appid or one user.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EntityStats {
    pub calls: u64,
    pub by_errcode: BTreeMap<i64, u64>,
    /// Length of the sliding window of `max_in_window`: the quota's if one is set, else the
    /// configured stats window.
    pub window_secs: f64,
    /// The most calls seen in any sliding window of `window_secs`.
    pub max_in_window: u64,
}

impl SimStats {
    pub(crate) fn from_totals(t: &Totals) -> Self {
        SimStats {
            calls: t.calls,
            by_errcode: t.by_errcode.iter().map(|(&k, &v)| (k, v)).collect(),
            http_502: t.http_502,
            garbage: t.garbage,
            hangs: t.hangs,
            scripted: t.scripted,
            codes_minted: t.codes_minted,
            codes_presented_more_than_once: t.codes_presented_more_than_once,
            codes_exchanged_more_than_once: t.codes_exchanged_more_than_once,
            storm_45011: t.storm_45011,
            calls_per_code: t.calls_per_code.iter().map(|(&k, &v)| (k, v)).collect(),
            apps: BTreeMap::new(),
            users: BTreeMap::new(),
            apis: ApiStats::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_counts_calls_in_the_half_open_interval() {
        let t0 = Instant::now();
        let mut w = Window::new(Duration::from_secs(1));
        assert_eq!(w.record(t0), 1);
        assert_eq!(w.record(t0 + Duration::from_millis(500)), 2);
        // A call exactly one window later no longer sees the first one: (t-T, t].
        assert_eq!(w.record(t0 + Duration::from_secs(1)), 2);
        assert_eq!(w.record(t0 + Duration::from_secs(3)), 1);
        assert_eq!(w.max, 2);
    }

    #[test]
    fn the_calls_per_code_histogram_moves_codes_between_buckets() {
        let mut t = Totals::default();
        t.code_carried(0);
        t.code_carried(0);
        t.code_carried(1);
        assert_eq!(t.calls_per_code.get(&1), Some(&1));
        assert_eq!(t.calls_per_code.get(&2), Some(&1));
        t.code_carried(1);
        assert_eq!(t.calls_per_code.get(&1), None);
        assert_eq!(t.calls_per_code.get(&2), Some(&2));
    }
}
