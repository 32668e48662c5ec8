//! The access-token APIs of the simulated WeChat: `/cgi-bin/token`, `/cgi-bin/stable_token`,
//! `/wxa/business/getuserphonenumber`, `/wxa/checksession`, `/wxa/resetusersessionkey`.
//!
//! Their memory ([`ApiState`]) lives inside the simulator's one state, beside code2Session's,
//! but code2Session never touches it: its hot path is unchanged.
//! - `tokens`: plain and stable tokens, rotation, force budget, daily limits, revocation;
//! - `phone`: phone codes (minted by `/sim/phone`) and their exchange;
//! - `bridge`: the logic that needs the apps and the session keys code2Session set;
//! - `faults`: the faults and scripted answers of each endpoint ([`EndpointFaults`]);
//! - `http`: the WeChat-side handlers; `control`: the `/sim/` endpoints of these APIs;
//! - `stats`: the per-endpoint counters ([`ApiStats`]).
//!
//! Time here is the simulator's own clock: the real monotonic clock plus an offset that
//! `POST /sim/clock` advances, so that tests see a day's budget or a token's expiry at once.

mod bridge;
mod control;
mod faults;
mod http;
mod phone;
mod stats;
mod tokens;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use serde::{Deserialize, Serialize};

pub(crate) use control::routes as control_routes;
pub use faults::EndpointFaults;
pub(crate) use faults::{ApiArrival, ApiInjected};
pub(crate) use http::routes;
pub use stats::{ApiStats, EndpointStats, PhoneStats, StableTokenStats};

/// One endpoint of these APIs, as named in faults, scripts and stats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `GET /cgi-bin/token`.
    Token,
    /// `POST /cgi-bin/stable_token`.
    StableToken,
    /// `POST /wxa/business/getuserphonenumber`.
    PhoneNumber,
    /// `GET /wxa/checksession`.
    CheckSession,
    /// `GET /wxa/resetusersessionkey`.
    ResetSessionKey,
}

impl Endpoint {
    pub const ALL: [Endpoint; 5] = [
        Endpoint::Token,
        Endpoint::StableToken,
        Endpoint::PhoneNumber,
        Endpoint::CheckSession,
        Endpoint::ResetSessionKey,
    ];

    /// The name in stats and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Token => "token",
            Endpoint::StableToken => "stable_token",
            Endpoint::PhoneNumber => "phone_number",
            Endpoint::CheckSession => "check_session",
            Endpoint::ResetSessionKey => "reset_session_key",
        }
    }
}

/// The settings of these APIs (`[apis]` in the TOML file). WeChat's values by default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Lifetime of a new access_token, plain or stable (WeChat: 7200 s).
    #[serde(rename = "token_lifetime_secs", with = "crate::config::secs")]
    pub token_lifetime: Duration,
    /// How long an old token stays valid beside its successor; the stable token rotates this
    /// long before its expiry (WeChat: 300 s). Must be below the lifetime.
    #[serde(rename = "token_overlap_secs", with = "crate::config::secs")]
    pub token_overlap: Duration,
    /// `/cgi-bin/token` calls per appid per day before 45009 (WeChat: 2,000).
    pub plain_token_daily_limit: u64,
    /// `/cgi-bin/stable_token` calls per appid per day before 45009 (WeChat: 500,000).
    pub stable_token_daily_limit: u64,
    /// Effective `force_refresh`es per appid per day (WeChat: 20).
    pub force_refresh_daily_limit: u64,
    /// Least time between two effective `force_refresh`es (WeChat: 30 s).
    #[serde(rename = "force_refresh_interval_secs", with = "crate::config::secs")]
    pub force_refresh_interval: Duration,
    /// Lifetime of a phone code (WeChat: 5 minutes).
    #[serde(rename = "phone_code_ttl_secs", with = "crate::config::secs")]
    pub phone_code_ttl: Duration,
    /// Answer `countryCode` as a JSON number (`86`, the official example) instead of a string
    /// (`"86"`, what real answers carry).
    pub country_code_numeric: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            token_lifetime: Duration::from_secs(7200),
            token_overlap: Duration::from_secs(300),
            plain_token_daily_limit: 2_000,
            stable_token_daily_limit: 500_000,
            force_refresh_daily_limit: 20,
            force_refresh_interval: Duration::from_secs(30),
            phone_code_ttl: Duration::from_secs(300),
            country_code_numeric: false,
        }
    }
}

impl ApiConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.token_overlap.is_zero() || self.token_overlap >= self.token_lifetime {
            return Err("token_overlap_secs must be positive and below token_lifetime_secs".into());
        }
        if self.phone_code_ttl.is_zero() {
            return Err("phone_code_ttl_secs must be positive".into());
        }
        Ok(())
    }
}

/// The memory of these APIs.
pub(crate) struct ApiState {
    pub(crate) config: ApiConfig,
    pub(crate) tokens: tokens::Tokens,
    pub(crate) phones: phone::Phones,
    pub(crate) faults: faults::ApiFaults,
    pub(crate) stats: stats::ApiCounters,
    /// (app index, openid) → user, filled from the app's users on a miss.
    openids: HashMap<(usize, String), Arc<str>>,
    /// How far the simulator's clock is ahead of the real one.
    offset: Duration,
    start: Instant,
}

impl ApiState {
    pub(crate) fn new(config: &ApiConfig, now: Instant) -> Self {
        ApiState {
            config: config.clone(),
            tokens: tokens::Tokens::default(),
            phones: phone::Phones::default(),
            faults: faults::ApiFaults::default(),
            stats: stats::ApiCounters::default(),
            openids: HashMap::new(),
            offset: Duration::ZERO,
            start: now,
        }
    }

    /// The simulator's clock at real time `real`.
    pub(crate) fn now(&self, real: Instant) -> Instant {
        real + self.offset
    }

    /// Unix seconds on the simulator's clock (for watermarks).
    pub(crate) fn unix_now(&self) -> i64 {
        let wall = SystemTime::now() + self.offset;
        wall.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }

    /// The simulated day `now` falls in (days counted from the simulator's start).
    pub(crate) fn day(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.start).as_secs() / 86_400
    }

    pub(crate) fn advance_clock(&mut self, by: Duration) -> Duration {
        self.offset += by;
        self.offset
    }

    /// Clears stats and scripts; `all` also forgets tokens, phone codes, budgets and the clock.
    pub(crate) fn reset(&mut self, all: bool) {
        self.stats = stats::ApiCounters::default();
        self.faults.clear_scripts();
        if all {
            self.tokens = tokens::Tokens::default();
            self.phones = phone::Phones::default();
            self.openids.clear();
            self.offset = Duration::ZERO;
        }
    }
}

/// WeChat's errmsg texts of these APIs (before the `, rid: ...` suffix).
pub(crate) fn errmsg(errcode: i64) -> &'static str {
    match errcode {
        -1 => "system error",
        40001 => "invalid credential, access_token is invalid or not latest",
        40002 => "invalid grant_type",
        40003 => "invalid openid",
        40013 => "invalid appid",
        40014 => "invalid access_token",
        40029 => "invalid code",
        40097 => "invalid args",
        40125 => "invalid appsecret",
        40164 => "invalid ip 203.0.113.7 ipv6 ::ffff:203.0.113.7, not in whitelist",
        40243 => "AppSecret已被冻结，请登录小程序平台解冻后再次调用",
        41001 => "access_token missing",
        41002 => "appid missing",
        41004 => "appsecret missing",
        42001 => "access_token expired",
        43002 => "require POST method",
        45009 => "reach max api daily quota limit",
        45011 => "api minute-quota reach limit  mustslower  retry next minute",
        47001 => "data format error",
        48001 => "api unauthorized",
        87007 => "session_key is not existed or expired",
        87008 => "invalid sig_method",
        87009 => "invalid signature",
        89503 => "此IP调用需要管理员确认,请联系管理员",
        89506 => "24小时内该IP被管理员拒绝调用两次，24小时内不可再使用该IP调用",
        89507 => "1小时内该IP被管理员拒绝调用一次，1小时内不可再使用该IP调用",
        _ => "unknown error",
    }
}
