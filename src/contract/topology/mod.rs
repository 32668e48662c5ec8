//! Names and definitions of everything wxlogin creates in NATS, all under one prefix so several
//! deployments (or tests) can share a server. `nats/` holds the same definitions as files for
//! the `nats` CLI; [`Topology::ensure`] creates or updates them at start.

use std::time::Duration;

use super::ids::{AppId, CodeKey};

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, pull},
    kv,
    stream::{self, DiscardPolicy, RetentionPolicy, StorageType},
};

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("cannot create or update {what}: {source}")]
    Create {
        what: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A role found the topology missing or unreadable: only `wxlogin migrate` (admin) makes it.
    #[error("cannot find {what} ({source}): run `wxlogin migrate` as the admin identity first")]
    Missing {
        what: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// How long the upserter may hold a result batch before it is redelivered.
pub const UPSERT_ACK_WAIT: Duration = Duration::from_secs(30);
/// Messages each durable consumer may have out unacknowledged, over all its processes.
pub const MAX_ACK_PENDING: i64 = 20_000;

#[derive(Debug, Clone)]
pub struct Topology {
    pub prefix: String,
    pub replicas: usize,
    pub code_ttl: Duration,
    pub session_ttl: Duration,
    /// Redelivery delay of a code whose worker died; also when its ledger claim goes stale.
    pub exchange_ack_wait: Duration,
    /// How long results are kept (zero: forever); at least [`Topology::ledger_max_age`].
    pub results_max_age: Duration,
}

/// Handles on what [`Topology::ensure`] made.
#[derive(Clone)]
pub struct Handles {
    pub codes: stream::Stream,
    pub results: stream::Stream,
    pub parked: stream::Stream,
    pub ledger: kv::Store,
    pub sessions: kv::Store,
    pub quota: kv::Store,
    pub tokens: kv::Store,
}

impl Topology {
    /// The topology a deployment's settings describe: every role, tool and test derives it
    /// here, so the names and lifetimes agree everywhere.
    pub fn from_settings(settings: &crate::settings::Settings) -> Topology {
        Topology {
            prefix: settings.nats_prefix.clone(),
            replicas: settings.nats_replicas,
            code_ttl: settings.code_ttl(),
            session_ttl: settings.session_ttl(),
            exchange_ack_wait: Duration::from_secs(settings.exchange_ack_wait_secs),
            results_max_age: Duration::from_secs(settings.results_max_age_secs),
        }
    }

    pub fn codes_stream(&self) -> String {
        format!("{}_CODES", self.prefix)
    }
    pub fn results_stream(&self) -> String {
        format!("{}_RESULTS", self.prefix)
    }
    pub fn parked_stream(&self) -> String {
        format!("{}_PARKED", self.prefix)
    }
    /// Where a stage parks what it cannot apply (see [`crate::contract::parked`]).
    pub fn parked_subject(&self, stage: super::parked::Stage) -> String {
        format!("{}.parked.{}", self.prefix, stage.as_str())
    }
    /// A unionid a decrypt learnt, `{prefix}.results.{appid}.unionid.{login id}`: on the results
    /// stream (so the upserter applies it and replays rebuild it), never on a code's subject.
    pub fn unionid_subject(&self, appid: &AppId, login_id: &super::LoginId) -> String {
        format!("{}.results.{appid}.unionid.{login_id}", self.prefix)
    }
    pub fn code_subject(&self, appid: &AppId) -> String {
        format!("{}.codes.{appid}", self.prefix)
    }
    /// A code's one result, `{prefix}.results.{appid}.{code hash}`: see [`crate::contract::ledger`].
    pub fn result_subject(&self, appid: &AppId, code_key: &CodeKey) -> String {
        format!("{}.results.{appid}.{code_key}", self.prefix)
    }
    /// Each ingress process listens on its own reply subject.
    pub fn reply_subject(&self, ingress_id: &str) -> String {
        format!("{}.reply.{ingress_id}", self.prefix)
    }
    pub fn exchange_consumer(&self) -> String {
        format!("{}_exchange", self.prefix)
    }
    pub fn upsert_consumer(&self) -> String {
        format!("{}_upserter", self.prefix)
    }
    pub fn ledger_bucket(&self) -> String {
        format!("{}_ledger", self.prefix)
    }
    pub fn sessions_bucket(&self) -> String {
        format!("{}_sessions", self.prefix)
    }
    pub fn quota_bucket(&self) -> String {
        format!("{}_quota", self.prefix)
    }
    /// The fleet's one access_token per appid (see [`crate::exchange::token`]).
    pub fn tokens_bucket(&self) -> String {
        format!("{}_tokens", self.prefix)
    }

    /// A code's record outlives every way it could still reach WeChat: TTL + redelivery wait.
    pub fn ledger_max_age(&self) -> Duration {
        self.code_ttl + self.exchange_ack_wait + Duration::from_secs(60)
    }

    pub fn codes_config(&self) -> stream::Config {
        stream::Config {
            name: self.codes_stream(),
            description: Some("wxlogin: login codes waiting for exchange".into()),
            subjects: vec![format!("{}.codes.>", self.prefix)],
            retention: RetentionPolicy::WorkQueue,
            storage: StorageType::File,
            num_replicas: self.replicas,
            // A code older than its TTL is worthless, but only a worker may end it: it turns
            // the code into an "expired" result, so every accepted code gets one. An age limit
            // shorter than the results' would let workers down for longer delete codes with no
            // result at all; past the results' age, a result would be gone anyway.
            max_age: self.results_max_age,
            // Duplicate submissions of one code within its life collapse to one message.
            duplicate_window: self.code_ttl + Duration::from_secs(60),
            discard: DiscardPolicy::New,
            ..Default::default()
        }
    }

    pub fn results_config(&self) -> stream::Config {
        stream::Config {
            name: self.results_stream(),
            description: Some(
                "wxlogin: login results, retained for the upserter and replays".into(),
            ),
            subjects: vec![format!("{}.results.>", self.prefix)],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            num_replicas: self.replicas,
            // One result per code is enforced per subject (the ledger publishes with an expected
            // last subject sequence of 0), not by this window; it may not exceed the age limit.
            duplicate_window: match self.results_max_age {
                Duration::ZERO => Duration::from_secs(120),
                age => age.min(Duration::from_secs(120)),
            },
            // The ledger reads a code's result by its subject.
            allow_direct: true,
            // Each code has its own subject: without an age limit the stream (and the
            // server's per-subject index) would grow forever.
            max_age: self.results_max_age,
            ..Default::default()
        }
    }

    pub fn parked_config(&self) -> stream::Config {
        stream::Config {
            name: self.parked_stream(),
            description: Some(
                "wxlogin: events a stage could not apply, with the reason, until retried".into(),
            ),
            subjects: vec![format!("{}.parked.>", self.prefix)],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            num_replicas: self.replicas,
            // No age limit: a parked event is kept until `wxlogin parked retry` applies it.
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        }
    }

    pub fn exchange_consumer_config(&self) -> pull::Config {
        pull::Config {
            durable_name: Some(self.exchange_consumer()),
            description: Some("wxlogin exchange workers".into()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.exchange_ack_wait,
            max_deliver: -1,
            max_ack_pending: MAX_ACK_PENDING,
            ..Default::default()
        }
    }

    pub fn upsert_consumer_config(&self) -> pull::Config {
        pull::Config {
            durable_name: Some(self.upsert_consumer()),
            description: Some("wxlogin user upserter".into()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: UPSERT_ACK_WAIT,
            max_deliver: -1,
            filter_subject: format!("{}.results.>", self.prefix),
            max_ack_pending: MAX_ACK_PENDING,
            ..Default::default()
        }
    }

    /// The durable consumers and the streams they read.
    fn consumers(&self, handles: &Handles) -> [(stream::Stream, pull::Config); 2] {
        [
            (handles.codes.clone(), self.exchange_consumer_config()),
            (handles.results.clone(), self.upsert_consumer_config()),
        ]
    }

    /// Creates the durable consumers, or updates them to what the settings say (`wxlogin
    /// migrate` and `wxlogin up`): a changed ack wait reaches the server, not only the workers.
    pub async fn apply_consumers(&self, handles: &Handles) -> Result<(), TopologyError> {
        for (stream, config) in self.consumers(handles) {
            let name = config.durable_name.clone().unwrap_or_default();
            let err = |e: Box<dyn std::error::Error + Send + Sync>| TopologyError::Create {
                what: format!("the consumer {name}"),
                source: e,
            };
            let exists = stream.consumer_info(&name).await.is_ok();
            if exists {
                stream
                    .update_consumer::<pull::Config>(config)
                    .await
                    .map_err(|e| err(Box::new(e)))?;
            } else {
                stream
                    .create_consumer::<pull::Config>(config)
                    .await
                    .map_err(|e| err(Box::new(e)))?;
            }
        }
        Ok(())
    }

    /// Finds the streams and buckets `wxlogin migrate` made, changing nothing: what every role
    /// but the admin does at start (its NATS user may not create or change them).
    pub async fn bind(&self, js: &jetstream::Context) -> Result<Handles, TopologyError> {
        let missing = |what: String| {
            move |e: Box<dyn std::error::Error + Send + Sync>| TopologyError::Missing {
                what,
                source: e,
            }
        };
        let stream = |name: String| async move {
            js.get_stream(&name)
                .await
                .map_err(|e| missing(format!("the stream {name}"))(Box::new(e)))
        };
        let bucket = |name: String| async move {
            js.get_key_value(&name)
                .await
                .map_err(|e| missing(format!("the bucket {name}"))(Box::new(e)))
        };
        Ok(Handles {
            codes: stream(self.codes_stream()).await?,
            results: stream(self.results_stream()).await?,
            parked: stream(self.parked_stream()).await?,
            ledger: bucket(self.ledger_bucket()).await?,
            sessions: bucket(self.sessions_bucket()).await?,
            quota: bucket(self.quota_bucket()).await?,
            tokens: bucket(self.tokens_bucket()).await?,
        })
    }

    /// Creates or updates the streams and buckets (the admin's `migrate` and `up` only).
    #[tracing::instrument(skip(self, js), fields(prefix = %self.prefix))]
    pub async fn ensure(&self, js: &jetstream::Context) -> Result<Handles, TopologyError> {
        let err = |what: String| {
            move |e: Box<dyn std::error::Error + Send + Sync>| TopologyError::Create {
                what,
                source: e,
            }
        };
        let codes = create_stream(js, self.codes_config())
            .await
            .map_err(err(self.codes_stream()))?;
        let results = create_stream(js, self.results_config())
            .await
            .map_err(err(self.results_stream()))?;
        let parked = create_stream(js, self.parked_config())
            .await
            .map_err(err(self.parked_stream()))?;
        let ledger = js
            .create_or_update_key_value(kv::Config {
                bucket: self.ledger_bucket(),
                description: "wxlogin: codes in flight and exchanged (hashed)".into(),
                history: 1,
                max_age: self.ledger_max_age(),
                storage: StorageType::File,
                num_replicas: self.replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| err(self.ledger_bucket())(Box::new(e)))?;
        let sessions = js
            .create_or_update_key_value(kv::Config {
                bucket: self.sessions_bucket(),
                description: "wxlogin: session tokens (hashed) and their users".into(),
                history: 1,
                max_age: self.session_ttl,
                storage: StorageType::File,
                num_replicas: self.replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| err(self.sessions_bucket())(Box::new(e)))?;
        let quota = js
            .create_or_update_key_value(kv::Config {
                bucket: self.quota_bucket(),
                description: "wxlogin: the fleet's code2Session schedule per appid".into(),
                history: 1,
                max_age: crate::exchange::budget::SCHEDULE_MAX_AGE,
                storage: StorageType::File,
                num_replicas: self.replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| err(self.quota_bucket())(Box::new(e)))?;
        let tokens = js
            .create_or_update_key_value(kv::Config {
                bucket: self.tokens_bucket(),
                description: "wxlogin: the fleet's access_token per appid (sealed)".into(),
                history: 1,
                storage: StorageType::File,
                num_replicas: self.replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| err(self.tokens_bucket())(Box::new(e)))?;
        Ok(Handles {
            codes,
            results,
            parked,
            ledger,
            sessions,
            quota,
            tokens,
        })
    }
}

/// How an existing durable consumer differs from what the settings ask of it, field by field
/// (empty: it is as asked). A role refuses to start on a difference: it would otherwise run
/// with timings the server does not apply (workers renewing for an ack wait the server lacks).
pub fn consumer_drift(wanted: &pull::Config, actual: &jetstream::consumer::Config) -> Vec<String> {
    let mut drift = Vec::new();
    let mut check = |field: &str, want: String, have: String| {
        if want != have {
            drift.push(format!(
                "{field} is {have} on the server, {want} in the settings"
            ));
        }
    };
    check(
        "ack_wait",
        format!("{:?}", wanted.ack_wait),
        format!("{:?}", actual.ack_wait),
    );
    check(
        "max_deliver",
        wanted.max_deliver.to_string(),
        actual.max_deliver.to_string(),
    );
    check(
        "max_ack_pending",
        wanted.max_ack_pending.to_string(),
        actual.max_ack_pending.to_string(),
    );
    check(
        "filter_subject",
        wanted.filter_subject.clone(),
        actual.filter_subject.clone(),
    );
    drift
}

async fn create_stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream, Box<dyn std::error::Error + Send + Sync>> {
    js.create_or_update_stream(config.clone()).await?;
    Ok(js.get_stream(&config.name).await?)
}

mod calls;
#[cfg(test)]
mod tests;
