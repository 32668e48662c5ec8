//! The quota notation `N/<seconds>s` (e.g. `5000/60s`): at most N calls in any window of that
//! length, as the settings read it (`WXLOGIN_APP_QUOTA`, `WXLOGIN_CLIENT_QUOTA`). The simulator
//! has a copy of its own (`wxlogin_sim::quota`); `tests/it/quota.rs` checks both read alike.

use std::{fmt, str::FromStr, time::Duration};

/// At most `calls` calls in any sliding window of length `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub calls: u32,
    pub window: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("quota must look like `N/<seconds>s`, e.g. `5000/60s` (got {0:?})")]
pub struct QuotaParseError(pub String);

impl FromStr for Quota {
    type Err = QuotaParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || QuotaParseError(s.chars().take(40).collect());
        let (calls, window) = s.trim().split_once('/').ok_or_else(err)?;
        let calls: u32 = calls.trim().parse().map_err(|_| err())?;
        let secs = window.trim().strip_suffix('s').ok_or_else(err)?;
        let secs: f64 = secs.trim().parse().map_err(|_| err())?;
        if calls == 0 || !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
            return Err(err());
        }
        Ok(Quota {
            calls,
            window: Duration::from_secs_f64(secs),
        })
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}s", self.calls, self.window.as_secs_f64())
    }
}

impl serde::Serialize for Quota {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Quota {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_calls_and_window() {
        let q: Quota = "5000/60s".parse().unwrap();
        assert_eq!(q.calls, 5000);
        assert_eq!(q.window, Duration::from_secs(60));
        assert_eq!(q.to_string(), "5000/60s");
        let q: Quota = "20/1.5s".parse().unwrap();
        assert_eq!(q.window, Duration::from_millis(1500));
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "", "5000", "0/60s", "10/0s", "10/60", "x/60s", "10/-1s", "10/NaNs",
        ] {
            assert!(bad.parse::<Quota>().is_err(), "{bad:?} should not parse");
        }
    }
}
