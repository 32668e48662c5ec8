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
    pub ledger: kv::Store,
    pub sessions: kv::Store,
    pub quota: kv::Store,
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

    /// A code's record must outlive every way it could still reach WeChat: its TTL plus the
    /// time a redelivered message may wait.
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
            // One result per code is enforced per subject (the ledger publishes with an
            // expected last subject sequence of 0), not by a de-duplication window.
            duplicate_window: Duration::from_secs(120),
            // The ledger reads a code's result by its subject.
            allow_direct: true,
            // Each code has its own subject: without an age limit the stream (and the
            // server's per-subject index) would grow forever.
            max_age: self.results_max_age,
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

    /// Creates or updates the streams and buckets; consumers are made by their roles.
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
                storage: StorageType::File,
                num_replicas: self.replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| err(self.quota_bucket())(Box::new(e)))?;
        Ok(Handles {
            codes,
            results,
            ledger,
            sessions,
            quota,
        })
    }
}

async fn create_stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream, Box<dyn std::error::Error + Send + Sync>> {
    js.create_or_update_stream(config.clone()).await?;
    Ok(js.get_stream(&config.name).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `nats/` holds the same definitions as files for operators: every field a file states
    /// is what the code creates (with the default settings), and the code sets nothing the
    /// files leave out.
    #[test]
    fn the_definitions_in_nats_are_what_the_topology_creates() {
        let topology = Topology::from_settings(&crate::settings::Settings::default());
        let files = [
            (
                include_str!("../../nats/streams/CODES.json"),
                serde_json::to_value(topology.codes_config()),
            ),
            (
                include_str!("../../nats/streams/RESULTS.json"),
                serde_json::to_value(topology.results_config()),
            ),
            (
                include_str!("../../nats/consumers/exchange.json"),
                serde_json::to_value(topology.exchange_consumer_config()),
            ),
            (
                include_str!("../../nats/consumers/upserter.json"),
                serde_json::to_value(topology.upsert_consumer_config()),
            ),
        ];
        for (file, code) in files {
            let file: serde_json::Value = serde_json::from_str(file).unwrap();
            let code = code.unwrap();
            let name = file.get("name").or(file.get("durable_name")).unwrap();
            // "No limit" is -1 in the server's own terms, 0 as the client sends it.
            let same = |v: &serde_json::Value| {
                if v == &serde_json::json!(-1) {
                    serde_json::json!(0)
                } else {
                    v.clone()
                }
            };
            for (key, value) in file.as_object().unwrap() {
                // A field the client leaves out is at its default: "no limit".
                let in_code = code.get(key).map_or(serde_json::json!(0), same);
                assert_eq!(in_code, same(value), "{name}: {key}");
            }
            for (key, value) in code.as_object().unwrap() {
                let unset = value.is_null() || value == &serde_json::json!(0);
                assert!(
                    unset || file.get(key).is_some() || DEFAULTS_LEFT_OUT.contains(&key.as_str()),
                    "{name}: the code sets {key} = {value}, the file does not say"
                );
            }
        }
    }

    /// Fields the serialized configs always carry, at the server's own defaults.
    const DEFAULTS_LEFT_OUT: &[&str] = &[
        "max_msgs_per_subject",
        "compression",
        "first_seq",
        "discard_new_per_subject",
        "mirror_direct",
        "sealed",
        "deny_delete",
        "deny_purge",
        "allow_rollup_hdrs",
        "inactive_threshold",
        "num_replicas",
        "memory_storage",
        "headers_only",
        "backoff",
        "metadata",
        "pause_until",
    ];

    #[test]
    fn a_code_message_is_kept_as_long_as_its_result_would_be() {
        let topology = Topology::from_settings(&crate::settings::Settings::default());
        assert_ne!(topology.results_max_age, Duration::ZERO);
        // Only a worker may end a code (with a result), however long the workers are away.
        assert_eq!(
            topology.codes_config().max_age,
            topology.results_config().max_age
        );
        let forever = Topology {
            results_max_age: Duration::ZERO,
            ..topology
        };
        assert_eq!(forever.codes_config().max_age, Duration::ZERO);
    }
}
