//! The faults of the access-token endpoints: per endpoint, the same kinds code2Session has
//! (-1, latency, 502, garbage, hang) plus an injected errcode (40164 with an IP, 89503, 45009…),
//! and queues of scripted raw answers. Decided on arrival, before any logic runs.

use std::{
    collections::{HashMap, VecDeque},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use super::Endpoint;
use crate::wire::ScriptedAnswer;

/// Injected misbehaviour of one endpoint (`faults.endpoints.<endpoint>` of `/sim/faults`).
/// Ratios are probabilities per call, in `0..=1`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointFaults {
    /// Share of calls answered `-1` (system busy), before any logic: nothing is spent.
    pub busy_ratio: f64,
    /// Added before every answer.
    pub latency_ms: u64,
    /// Share of calls answered by an HTML 502 page.
    pub http_502_ratio: f64,
    /// Share of calls answered HTTP 200 with a garbage body.
    pub garbage_ratio: f64,
    /// Share of calls never answered (until the server shuts down).
    pub hang_ratio: f64,
    /// An errcode to answer instead of running the logic (nothing is spent), e.g. 40164.
    pub errcode: Option<i64>,
    /// Share of calls answered `errcode`; 0 (the default) with an `errcode` set means every call.
    pub errcode_ratio: f64,
    /// The errmsg of the injected errcode, instead of WeChat's text (`, rid: …` is appended).
    pub errmsg: Option<String>,
}

impl EndpointFaults {
    pub fn validate(&self) -> Result<(), String> {
        for (name, r) in [
            ("busy_ratio", self.busy_ratio),
            ("http_502_ratio", self.http_502_ratio),
            ("garbage_ratio", self.garbage_ratio),
            ("hang_ratio", self.hang_ratio),
            ("errcode_ratio", self.errcode_ratio),
        ] {
            if !(0.0..=1.0).contains(&r) {
                return Err(format!("{name} must be within 0..=1 (got {r})"));
            }
        }
        if self.latency_ms > 600_000 {
            return Err("latency_ms must be at most 600000".into());
        }
        if self.errcode == Some(0) {
            return Err("an injected errcode cannot be 0".into());
        }
        if self.errmsg.as_ref().is_some_and(|m| m.len() > 1024) {
            return Err("errmsg must be at most 1024 bytes".into());
        }
        Ok(())
    }
}

/// What happens to a call on arrival.
#[derive(Debug)]
pub(crate) enum ApiArrival {
    /// Run the logic now.
    Go,
    Scripted(ScriptedAnswer),
    Hang,
    /// Wait `latency`, then answer the injected fault, or run the logic if none.
    Delayed {
        latency: Duration,
        injected: Option<ApiInjected>,
    },
}

#[derive(Debug, Clone)]
pub(crate) enum ApiInjected {
    Http502,
    Garbage,
    Errcode {
        errcode: i64,
        errmsg: Option<String>,
    },
}

/// The scripted answers of each endpoint.
#[derive(Debug, Default)]
pub(crate) struct ApiFaults {
    scripts: HashMap<Endpoint, VecDeque<ScriptedAnswer>>,
}

fn roll(p: f64) -> bool {
    p > 0.0 && rand::random_bool(p)
}

impl ApiFaults {
    pub(crate) fn push_scripts(
        &mut self,
        endpoint: Endpoint,
        answers: Vec<ScriptedAnswer>,
    ) -> usize {
        let queue = self.scripts.entry(endpoint).or_default();
        queue.extend(answers);
        queue.len()
    }

    pub(crate) fn clear_scripts(&mut self) {
        self.scripts.clear();
    }

    /// Scripted answer → hang → latency → 502 → garbage → busy → errcode.
    pub(crate) fn arrive(
        &mut self,
        endpoint: Endpoint,
        faults: Option<&EndpointFaults>,
    ) -> ApiArrival {
        if let Some(script) = self
            .scripts
            .get_mut(&endpoint)
            .and_then(VecDeque::pop_front)
        {
            return ApiArrival::Scripted(script);
        }
        let Some(f) = faults else {
            return ApiArrival::Go;
        };
        if roll(f.hang_ratio) {
            return ApiArrival::Hang;
        }
        let errcode_ratio = if f.errcode_ratio == 0.0 {
            1.0
        } else {
            f.errcode_ratio
        };
        let injected = if roll(f.http_502_ratio) {
            Some(ApiInjected::Http502)
        } else if roll(f.garbage_ratio) {
            Some(ApiInjected::Garbage)
        } else if roll(f.busy_ratio) {
            Some(ApiInjected::Errcode {
                errcode: -1,
                errmsg: None,
            })
        } else {
            f.errcode
                .filter(|_| roll(errcode_ratio))
                .map(|errcode| ApiInjected::Errcode {
                    errcode,
                    errmsg: f.errmsg.clone(),
                })
        };
        let latency = Duration::from_millis(f.latency_ms);
        match (latency.is_zero(), injected) {
            (true, None) => ApiArrival::Go,
            (_, injected) => ApiArrival::Delayed { latency, injected },
        }
    }
}
