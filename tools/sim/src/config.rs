//! The simulator's configuration: which apps exist ([`SimApp`]), code lifetime, quotas, the
//! stats window and the injected [`Faults`]. Deserializable from TOML, with durations written
//! as seconds (`code_ttl_secs`, `stats_window_secs`) because that is what people type.

use std::{collections::BTreeMap, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{
    apis::{ApiConfig, Endpoint, EndpointFaults},
    quota::Quota,
};

/// The demo app every local run knows unless told otherwise.
pub const DEMO_APPID: &str = "wx0123456789abcdef";
/// The demo app's secret: 32 hex chars like a real AppSecret, but obviously not one.
pub const DEMO_SECRET: &str = "00000000deadbeef00000000deadbeef";

/// One mini program the simulator knows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimApp {
    pub appid: String,
    pub secret: String,
    /// Bound to an Open Platform account: code2Session then also answers `unionid`.
    #[serde(default)]
    pub unionid: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("an app must look like `appid=secret` or `appid=secret:unionid` (got {0:?})")]
pub struct SimAppParseError(pub String);

impl FromStr for SimApp {
    type Err = SimAppParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Never echo the secret back in the error: only the part before `=`.
        let err = || SimAppParseError(s.split('=').next().unwrap_or("").chars().take(40).collect());
        let (appid, rest) = s.trim().split_once('=').ok_or_else(err)?;
        let (secret, unionid) = match rest.split_once(':') {
            Some((secret, "unionid")) => (secret, true),
            Some(_) => return Err(err()),
            None => (rest, false),
        };
        let app = SimApp {
            appid: appid.trim().to_owned(),
            secret: secret.trim().to_owned(),
            unionid,
        };
        app.validate().map_err(|_| err())?;
        Ok(app)
    }
}

impl SimApp {
    /// The demo app, bound to an Open Platform account so that `unionid` shows up.
    pub fn demo() -> Self {
        SimApp {
            appid: DEMO_APPID.to_owned(),
            secret: DEMO_SECRET.to_owned(),
            unionid: true,
        }
    }

    fn validate(&self) -> Result<(), String> {
        let ok =
            |s: &str| !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic());
        if !ok(&self.appid) || !ok(&self.secret) {
            return Err(format!(
                "app {:?}: appid and secret must be 1..=64 printable ASCII chars",
                self.appid
            ));
        }
        Ok(())
    }
}

/// Everything the simulator is started with. Quotas and faults can change at run time
/// through the control API; the rest is fixed for the life of the server.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    pub apps: Vec<SimApp>,
    /// How long a minted code stays valid (WeChat: 5 minutes).
    #[serde(rename = "code_ttl_secs", with = "secs")]
    pub code_ttl: Duration,
    /// At most N calls per appid in any sliding window (45011 beyond).
    pub app_quota: Option<Quota>,
    /// At most N calls per user in any sliding window (45011 beyond).
    pub user_quota: Option<Quota>,
    /// Window of the `max_in_window` stats of apps/users that have no quota.
    #[serde(rename = "stats_window_secs", with = "secs")]
    pub stats_window: Duration,
    pub faults: Faults,
    /// The access-token APIs' settings (`[apis]`).
    pub apis: ApiConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            apps: Vec::new(),
            code_ttl: Duration::from_secs(300),
            app_quota: None,
            user_quota: None,
            stats_window: Duration::from_secs(60),
            faults: Faults::default(),
            apis: ApiConfig::default(),
        }
    }
}

impl SimConfig {
    /// The demo app (unionid-bound) and WeChat's defaults.
    pub fn demo() -> Self {
        SimConfig {
            apps: vec![SimApp::demo()],
            ..SimConfig::default()
        }
    }

    /// Rejects what would make the simulator misbehave rather than fail loudly later.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for app in &self.apps {
            app.validate()?;
            if !seen.insert(app.appid.as_str()) {
                return Err(format!("app {:?} is configured twice", app.appid));
            }
        }
        if self.code_ttl.is_zero() || self.stats_window.is_zero() {
            return Err("code_ttl and stats_window must be positive".into());
        }
        self.apis.validate()?;
        self.faults.validate()
    }
}

/// Injected misbehaviour. Every ratio is a probability per exchange call, in `0..=1`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Share of calls answered `-1` (system busy); the code is not consumed.
    pub busy_ratio: f64,
    /// Added before every exchange answer.
    pub latency_ms: u64,
    /// Share of calls answered by an HTML 502 page, as a gateway in front of WeChat would.
    pub http_502_ratio: f64,
    /// Share of calls answered HTTP 200 with a truncated or garbage body.
    pub garbage_ratio: f64,
    /// Share of calls never answered (until the server shuts down).
    pub hang_ratio: f64,
    /// Every call is answered 45011 for this long, counted from when the faults were set.
    pub storm_45011_secs: f64,
    /// Faults of the access-token endpoints, by endpoint; the fields above are code2Session's.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoints: BTreeMap<Endpoint, EndpointFaults>,
}

impl Faults {
    pub fn validate(&self) -> Result<(), String> {
        let ratios = [
            ("busy_ratio", self.busy_ratio),
            ("http_502_ratio", self.http_502_ratio),
            ("garbage_ratio", self.garbage_ratio),
            ("hang_ratio", self.hang_ratio),
        ];
        for (name, r) in ratios {
            if !(0.0..=1.0).contains(&r) {
                return Err(format!("{name} must be within 0..=1 (got {r})"));
            }
        }
        if !(self.storm_45011_secs.is_finite() && (0.0..=86_400.0).contains(&self.storm_45011_secs))
        {
            return Err("storm_45011_secs must be within 0..=86400".into());
        }
        if self.latency_ms > 600_000 {
            return Err("latency_ms must be at most 600000".into());
        }
        for (endpoint, faults) in &self.endpoints {
            faults
                .validate()
                .map_err(|e| format!("endpoints.{}: {e}", endpoint.name()))?;
        }
        Ok(())
    }
}

/// `Duration` as (fractional) seconds, for TOML and JSON written by people.
pub(crate) mod secs {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs)
            .map_err(|_| D::Error::custom("seconds must be a non-negative number"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_parses_with_and_without_unionid() {
        let a: SimApp = "wxabc=s3cret".parse().unwrap();
        assert_eq!(
            (a.appid.as_str(), a.secret.as_str(), a.unionid),
            ("wxabc", "s3cret", false)
        );
        let b: SimApp = "wxabc=s3cret:unionid".parse().unwrap();
        assert!(b.unionid);
        for bad in ["", "wxabc", "=s", "wxabc=", "wxabc=s:other"] {
            assert!(bad.parse::<SimApp>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn a_parse_error_never_shows_the_secret() {
        let err = "wxabc=topsecret:nope".parse::<SimApp>().unwrap_err();
        assert!(!err.to_string().contains("topsecret"));
    }

    #[test]
    fn the_demo_secret_is_32_hex_chars() {
        assert_eq!(DEMO_SECRET.len(), 32);
        assert!(DEMO_SECRET.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn out_of_range_faults_are_rejected() {
        let f = Faults {
            busy_ratio: 1.5,
            ..Faults::default()
        };
        assert!(f.validate().is_err());
        let f = Faults {
            hang_ratio: f64::NAN,
            ..Faults::default()
        };
        assert!(f.validate().is_err());
        assert!(Faults::default().validate().is_ok());
    }
}
