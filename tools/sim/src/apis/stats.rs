//! Exact counters of the access-token endpoints, since start or the last reset: the `apis`
//! part of `GET /sim/stats`. Not a hot path, so plain ordered maps.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Endpoint, faults::ApiInjected};

/// Everything about the access-token endpoints.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiStats {
    /// Per endpoint name (`token`, `stable_token`, `phone_number`, `check_session`,
    /// `reset_session_key`); an endpoint never called is absent.
    pub endpoints: BTreeMap<String, EndpointStats>,
    pub stable_token: StableTokenStats,
    pub phone: PhoneStats,
    /// Session keys replaced by `resetusersessionkey`.
    pub session_keys_reset: u64,
}

/// Counters of one endpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EndpointStats {
    /// Every call, whatever happened to it.
    pub calls: u64,
    /// Calls per appid: the `appid` of a token call, the app of the access_token presented
    /// otherwise (calls whose app is unknown are only in `calls`).
    pub by_app: BTreeMap<String, u64>,
    /// Answers by errcode (success as `0`), injected errcodes and -1 included; 502s, garbage,
    /// hangs and scripted answers are counted apart.
    pub by_errcode: BTreeMap<i64, u64>,
    pub http_502: u64,
    pub garbage: u64,
    pub hangs: u64,
    pub scripted: u64,
}

/// `stable_token` calls that reached the logic, by mode.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StableTokenStats {
    /// Calls with `force_refresh` false or absent.
    pub normal: u64,
    /// Calls with `force_refresh: true`, effective or not.
    pub forced: u64,
    /// Forced calls that killed the token and issued a new one.
    pub forced_refreshed: u64,
    /// Forced calls refused by the budget (20 a day, 30 s apart): answered the current token.
    pub forced_refused: u64,
    /// Stable tokens issued (first fetch, rotation, after a kill or revocation, forced).
    pub issued: u64,
}

/// Phone codes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PhoneStats {
    /// Codes minted by `/sim/phone`.
    pub minted: u64,
    /// Successful exchanges (each one billed by WeChat).
    pub exchanged: u64,
    /// Calls presenting a code already exchanged (answered 40029).
    pub reused: u64,
}

pub(crate) type ApiCounters = ApiStats;

impl ApiStats {
    fn endpoint(&mut self, endpoint: Endpoint) -> &mut EndpointStats {
        self.endpoints
            .entry(endpoint.name().to_owned())
            .or_default()
    }

    /// A call arrived; `appid` when known.
    pub(crate) fn call(&mut self, endpoint: Endpoint, appid: Option<&str>) {
        let e = self.endpoint(endpoint);
        e.calls += 1;
        if let Some(appid) = appid {
            *e.by_app.entry(appid.to_owned()).or_default() += 1;
        }
    }

    pub(crate) fn answer(&mut self, endpoint: Endpoint, errcode: i64) {
        *self
            .endpoint(endpoint)
            .by_errcode
            .entry(errcode)
            .or_default() += 1;
    }

    pub(crate) fn scripted(&mut self, endpoint: Endpoint) {
        self.endpoint(endpoint).scripted += 1;
    }

    pub(crate) fn hang(&mut self, endpoint: Endpoint) {
        self.endpoint(endpoint).hangs += 1;
    }

    pub(crate) fn injected(&mut self, endpoint: Endpoint, injected: &ApiInjected) {
        match injected {
            ApiInjected::Http502 => self.endpoint(endpoint).http_502 += 1,
            ApiInjected::Garbage => self.endpoint(endpoint).garbage += 1,
            ApiInjected::Errcode { errcode, .. } => self.answer(endpoint, *errcode),
        }
    }
}
