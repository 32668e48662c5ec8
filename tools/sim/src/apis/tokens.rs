//! Access tokens: every one the simulator issued, plain or stable, with its expiry and death,
//! and per app the current ones and the day's budgets. Rules (WeChat's):
//! - a plain token call issues a new token; the previous one dies `overlap` later;
//! - a stable token call answers the current stable token while it has more than `overlap`
//!   left, else rotates (the old one lives on until its own expiry); a dead one is replaced;
//! - `force_refresh` kills the current stable token and issues one, at most N a day and M
//!   seconds apart; otherwise it is a normal call;
//! - past a daily call limit: 45009. Revocation kills every token of the app.

use std::{collections::HashMap, time::Instant};

use rand::{Rng, distr::Alphanumeric};

use super::{ApiConfig, stats::StableTokenStats};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Stable,
}

#[derive(Debug)]
struct Token {
    app: usize,
    expires_at: Instant,
    /// Revoked, superseded or force-killed: 40001 from then on.
    dead_at: Option<Instant>,
}

impl Token {
    fn alive(&self, now: Instant) -> bool {
        self.dead_at.is_none_or(|d| now < d) && now < self.expires_at
    }
}

#[derive(Debug, Default)]
struct AppTokens {
    plain: Option<String>,
    stable: Option<String>,
    day: u64,
    plain_calls: u64,
    stable_calls: u64,
    forced: u64,
    last_force: Option<Instant>,
}

impl AppTokens {
    /// Budgets are per simulated day.
    fn on_day(&mut self, day: u64) -> &mut Self {
        if self.day != day {
            *self = AppTokens {
                day,
                plain: self.plain.take(),
                stable: self.stable.take(),
                last_force: self.last_force,
                ..AppTokens::default()
            };
        }
        self
    }
}

/// A token answer: the token and its remaining lifetime in whole seconds.
pub(crate) type Issued = (String, u64);

#[derive(Debug, Default)]
pub(crate) struct Tokens {
    tokens: HashMap<String, Token>,
    apps: HashMap<usize, AppTokens>,
    issued: u64,
}

/// What a well-formed token looks like here (and roughly at WeChat): `[0-9A-Za-z_-]`, 16..=512.
fn well_formed(token: &str) -> bool {
    (16..=512).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Tokens {
    /// The app of a presented token, or WeChat's errcode: 41001 missing, 40014 malformed,
    /// 40001 unknown/revoked/superseded, 42001 expired.
    pub(crate) fn check(&self, token: Option<&str>, now: Instant) -> Result<usize, i64> {
        let token = token.filter(|t| !t.is_empty()).ok_or(41001)?;
        if !well_formed(token) {
            return Err(40014);
        }
        let t = self.tokens.get(token).ok_or(40001)?;
        if t.dead_at.is_some_and(|d| d <= now) {
            return Err(40001);
        }
        if t.expires_at <= now {
            return Err(42001);
        }
        Ok(t.app)
    }

    /// The app a token was issued to, alive or not (for per-app stats).
    pub(crate) fn app_of(&self, token: &str) -> Option<usize> {
        self.tokens.get(token).map(|t| t.app)
    }

    fn issue(&mut self, app: usize, kind: Kind, cfg: &ApiConfig, now: Instant) -> Issued {
        self.issued += 1;
        if self.issued.is_multiple_of(256) {
            // Keep dead tokens a lifetime past their expiry, to answer 42001/40001 faithfully.
            let keep = cfg.token_lifetime;
            self.tokens.retain(|_, t| t.expires_at + keep > now);
        }
        let random: String = rand::rng()
            .sample_iter(&Alphanumeric)
            .take(128)
            .map(char::from)
            .collect();
        let token = format!("{}_{random}", self.issued % 100);
        let record = Token {
            app,
            expires_at: now + cfg.token_lifetime,
            dead_at: None,
        };
        self.tokens.insert(token.clone(), record);
        let slot = self.apps.entry(app).or_default();
        match kind {
            Kind::Plain => slot.plain = Some(token.clone()),
            Kind::Stable => slot.stable = Some(token.clone()),
        }
        (token, cfg.token_lifetime.as_secs())
    }

    /// `GET /cgi-bin/token` for an app whose credentials were checked.
    pub(crate) fn plain(
        &mut self,
        app: usize,
        cfg: &ApiConfig,
        day: u64,
        now: Instant,
    ) -> Result<Issued, i64> {
        let slot = self.apps.entry(app).or_default().on_day(day);
        slot.plain_calls += 1;
        if slot.plain_calls > cfg.plain_token_daily_limit {
            return Err(45009);
        }
        let previous = slot.plain.clone();
        if let Some(t) = previous.and_then(|p| self.tokens.get_mut(&p)) {
            let end = now + cfg.token_overlap;
            t.dead_at = Some(t.dead_at.map_or(end, |d| d.min(end)));
        }
        Ok(self.issue(app, Kind::Plain, cfg, now))
    }

    /// `POST /cgi-bin/stable_token` for an app whose credentials were checked.
    pub(crate) fn stable(
        &mut self,
        app: usize,
        force_refresh: bool,
        (cfg, day, now): (&ApiConfig, u64, Instant),
        stats: &mut StableTokenStats,
    ) -> Result<Issued, i64> {
        let slot = self.apps.entry(app).or_default().on_day(day);
        slot.stable_calls += 1;
        if slot.stable_calls > cfg.stable_token_daily_limit {
            return Err(45009);
        }
        if force_refresh {
            stats.forced += 1;
            let spaced = slot
                .last_force
                .is_none_or(|t| now.saturating_duration_since(t) >= cfg.force_refresh_interval);
            if spaced && slot.forced < cfg.force_refresh_daily_limit {
                slot.forced += 1;
                slot.last_force = Some(now);
                stats.forced_refreshed += 1;
                if let Some(t) = slot.stable.clone().and_then(|c| self.tokens.get_mut(&c)) {
                    t.dead_at = Some(now);
                }
                stats.issued += 1;
                return Ok(self.issue(app, Kind::Stable, cfg, now));
            }
            stats.forced_refused += 1;
        } else {
            stats.normal += 1;
        }
        let current = slot.stable.clone();
        let remaining = current
            .as_ref()
            .and_then(|c| self.tokens.get(c))
            .filter(|t| t.alive(now))
            .map(|t| t.expires_at.saturating_duration_since(now));
        match (current, remaining) {
            (Some(token), Some(left)) if left > cfg.token_overlap => Ok((token, left.as_secs())),
            // Rotation (the old one lives until its expiry), or a dead or missing token.
            _ => {
                stats.issued += 1;
                Ok(self.issue(app, Kind::Stable, cfg, now))
            }
        }
    }

    /// Kills every live token of `app`; returns how many.
    pub(crate) fn revoke(&mut self, app: usize, now: Instant) -> usize {
        let mut killed = 0;
        for t in self
            .tokens
            .values_mut()
            .filter(|t| t.app == app && t.alive(now))
        {
            t.dead_at = Some(now);
            killed += 1;
        }
        killed
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cfg() -> ApiConfig {
        ApiConfig {
            token_lifetime: Duration::from_secs(20),
            token_overlap: Duration::from_secs(5),
            ..ApiConfig::default()
        }
    }

    #[test]
    fn a_stable_token_is_kept_until_the_overlap_then_rotated_with_both_valid() {
        let (cfg, t0) = (cfg(), Instant::now());
        let (mut tokens, mut stats) = (Tokens::default(), StableTokenStats::default());
        let at = |s| t0 + Duration::from_secs(s);
        let (first, left) = tokens.stable(0, false, (&cfg, 0, t0), &mut stats).unwrap();
        assert_eq!(left, 20);
        let (same, left) = tokens
            .stable(0, false, (&cfg, 0, at(10)), &mut stats)
            .unwrap();
        assert_eq!((same.as_str(), left), (first.as_str(), 10));
        let (second, left) = tokens
            .stable(0, false, (&cfg, 0, at(16)), &mut stats)
            .unwrap();
        assert_ne!(second, first);
        assert_eq!(left, 20);
        assert_eq!(tokens.check(Some(&first), at(16)), Ok(0));
        assert_eq!(tokens.check(Some(&first), at(20)), Err(42001));
        assert_eq!(tokens.check(Some(&second), at(20)), Ok(0));
        assert_eq!(stats.issued, 2);
    }

    #[test]
    fn tokens_that_do_not_look_like_tokens_are_malformed() {
        let tokens = Tokens::default();
        let now = Instant::now();
        assert_eq!(tokens.check(None, now), Err(41001));
        assert_eq!(tokens.check(Some(""), now), Err(41001));
        assert_eq!(tokens.check(Some("short"), now), Err(40014));
        assert_eq!(
            tokens.check(Some("a token with spaces in it"), now),
            Err(40014)
        );
        assert_eq!(tokens.check(Some("0123456789abcdefXYZ"), now), Err(40001));
    }
}
