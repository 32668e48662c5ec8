//! The minted `wx.login()` codes: who they belong to, whether they were used, and the per-code
//! counters behind the repeated-code stats. Expired codes are forgotten a while after expiry,
//! in O(1) amortized per mint, so a long benchmark does not grow memory without bound.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use super::identity;
use crate::wire::RepeatedCode;

/// Expired codes are still remembered this long, so that a late presentation is answered and
/// counted as the same code; after that they are forgotten.
const FORGET_EXPIRED_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodeState {
    Fresh,
    Exchanged,
    /// Consumed by a 40226 answer.
    Blocked,
}

#[derive(Debug)]
pub(crate) struct Code {
    /// Index of the app the code was minted for.
    pub(crate) app: usize,
    pub(crate) user: Arc<str>,
    pub(crate) expires_at: Instant,
    pub(crate) state: CodeState,
    /// Stats epoch the counters below belong to: a reset bumps the epoch, which zeroes them
    /// lazily instead of walking every code.
    epoch: u64,
    /// Calls that carried this code, whatever the answer.
    pub(crate) carried: u32,
    /// Calls that reached code validation with this code.
    pub(crate) validated: u32,
    /// Already counted in `codes_exchanged_more_than_once`.
    pub(crate) reuse_counted: bool,
    /// When each validation happened (Unix ms): what a chaos run matches against its faults.
    validated_at_ms: Vec<u64>,
}

impl Code {
    /// Brings the per-code counters to the current stats epoch.
    pub(crate) fn sync_epoch(&mut self, epoch: u64) -> &mut Self {
        if self.epoch != epoch {
            self.epoch = epoch;
            self.carried = 0;
            self.validated = 0;
            self.reuse_counted = false;
            self.validated_at_ms.clear();
        }
        self
    }

    /// One more call reached code validation with this code; returns how many did.
    pub(crate) fn validate(&mut self) -> u32 {
        self.validated += 1;
        self.validated_at_ms.push(unix_ms());
        self.validated
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(Debug, Default)]
pub(crate) struct Codes {
    map: HashMap<String, Code>,
    /// Codes in minting order, which is expiry order since the ttl is fixed.
    expiry: VecDeque<(Instant, String)>,
}

impl Codes {
    pub(crate) fn get_mut(&mut self, code: &str) -> Option<&mut Code> {
        self.map.get_mut(code)
    }

    /// Mints a fresh code for (app, user), valid until `expires_at`.
    pub(crate) fn mint(
        &mut self,
        app: usize,
        user: Arc<str>,
        now: Instant,
        expires_at: Instant,
        epoch: u64,
    ) -> String {
        self.forget_expired(now);
        let code = loop {
            let c = identity::new_code();
            if !self.map.contains_key(&c) {
                break c;
            }
        };
        let entry = Code {
            app,
            user,
            expires_at,
            state: CodeState::Fresh,
            epoch,
            carried: 0,
            validated: 0,
            reuse_counted: false,
            validated_at_ms: Vec::new(),
        };
        self.map.insert(code.clone(), entry);
        self.expiry.push_back((expires_at, code.clone()));
        code
    }

    fn forget_expired(&mut self, now: Instant) {
        while let Some((expires_at, _)) = self.expiry.front() {
            if *expires_at + FORGET_EXPIRED_AFTER > now {
                break;
            }
            if let Some((_, code)) = self.expiry.pop_front() {
                self.map.remove(&code);
            }
        }
    }

    /// The codes that reached code validation more than once (in this stats epoch).
    pub(crate) fn repeated(&self, epoch: u64) -> Vec<RepeatedCode> {
        let mut out: Vec<RepeatedCode> = (self.map.iter())
            .filter(|(_, c)| c.epoch == epoch && c.validated > 1)
            .map(|(code, c)| RepeatedCode {
                code: code.clone(),
                user: c.user.to_string(),
                validated_at_ms: c.validated_at_ms.clone(),
            })
            .collect();
        out.sort_by_key(|r| r.validated_at_ms.first().copied());
        out
    }

    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.expiry.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_codes_are_forgotten_after_the_grace_period() {
        let t0 = Instant::now();
        let mut codes = Codes::default();
        let old = codes.mint(0, Arc::from("a"), t0, t0 + Duration::from_secs(1), 0);
        let later = t0 + Duration::from_secs(1) + FORGET_EXPIRED_AFTER;
        let new = codes.mint(0, Arc::from("a"), later, later + Duration::from_secs(1), 0);
        assert!(codes.get_mut(&old).is_none());
        assert!(codes.get_mut(&new).is_some());
    }

    #[test]
    fn a_new_epoch_zeroes_the_per_code_counters() {
        let t0 = Instant::now();
        let mut codes = Codes::default();
        let c = codes.mint(0, Arc::from("a"), t0, t0, 0);
        let code = codes.get_mut(&c).unwrap();
        code.carried = 3;
        code.reuse_counted = true;
        assert_eq!(code.sync_epoch(0).carried, 3);
        let code = code.sync_epoch(1);
        assert_eq!((code.carried, code.reuse_counted), (0, false));
    }
}
