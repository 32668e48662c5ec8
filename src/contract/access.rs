//! Who may do what in NATS: the four identities a deployment's processes connect as, the
//! subjects each may publish and subscribe to under the deployment's prefix, and each one's
//! inbox prefix. The one home of these permissions: `wxlogin nats auth` writes them into the
//! server's authorization block, and the tests run the pipeline under them.
//!
//! Least privilege, role by role (what each one's code does, nothing more):
//! - **ingress**: publishes codes and learnt unionids, reads and writes sessions, reads the
//!   ledger and results, listens for replies and for a code's result;
//! - **worker**: takes codes from its durable consumer, writes (and polls) the ledger, the
//!   quota schedule and the access tokens, publishes results, replies and parked codes;
//! - **upserter**: takes results from its durable consumer, parks what it cannot apply, and
//!   answers the services' signing requests;
//! - **service** (the company's other services): may only ask for signatures
//!   (`{prefix}.sign.*`);
//! - **admin** (`wxlogin migrate`, `up`, `replay`, `parked`): creates and changes the streams,
//!   buckets and consumers, and may do what the others do.
//!
//! Nobody but the ingress may write a session or read a reply; nobody but a worker may write a
//! result of a code, a claim or the quota; no role but admin may create or change anything —
//! not even a consumer of its own: whoever may create one may have it deliver the stream's
//! messages to any subject (nats-io/nats-server#8274, open), past their publish permissions.

use std::fmt;

use super::topology::Topology;

/// An identity a process connects to NATS as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Identity {
    Admin,
    Ingress,
    Worker,
    Upserter,
    /// Another service of the company: may only ask for bodies signed with a user's
    /// session_key (`{prefix}.sign.*`), never read anything of wxlogin's.
    Service,
}

impl Identity {
    pub const ALL: [Identity; 5] = [
        Identity::Admin,
        Identity::Ingress,
        Identity::Worker,
        Identity::Upserter,
        Identity::Service,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Identity::Admin => "admin",
            Identity::Ingress => "ingress",
            Identity::Worker => "worker",
            Identity::Upserter => "upserter",
            Identity::Service => "service",
        }
    }

    /// Only the admin creates or changes streams, buckets and consumers.
    pub fn may_change_topology(self) -> bool {
        self == Identity::Admin
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Subjects an identity may publish and subscribe to (NATS wildcards).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
}

impl Topology {
    /// Where `identity`'s request replies arrive: each identity has its own, and may subscribe
    /// to nothing else under `_INBOX`, so no role reads another's replies.
    pub fn inbox_prefix(&self, identity: Identity) -> String {
        format!("_INBOX.{}.{identity}", self.prefix)
    }

    /// Every stream wxlogin keeps, the buckets' own (`KV_…`) included.
    fn all_streams(&self) -> [String; 7] {
        [
            self.codes_stream(),
            self.results_stream(),
            self.parked_stream(),
            kv_stream(&self.ledger_bucket()),
            kv_stream(&self.sessions_bucket()),
            kv_stream(&self.quota_bucket()),
            kv_stream(&self.tokens_bucket()),
        ]
    }

    /// What `identity` may do, under this deployment's prefix only.
    pub fn permissions(&self, identity: Identity) -> Permissions {
        let p = &self.prefix;
        let mut publish = vec!["$JS.API.INFO".to_string()];
        // Every role binds every stream and bucket at start (their configuration only).
        publish.extend(
            self.all_streams()
                .iter()
                .map(|s| format!("$JS.API.STREAM.INFO.{s}")),
        );
        let mut subscribe = vec![format!("{}.>", self.inbox_prefix(identity))];
        let (ledger, sessions, quota, tokens) = (
            self.ledger_bucket(),
            self.sessions_bucket(),
            self.quota_bucket(),
            self.tokens_bucket(),
        );
        match identity {
            Identity::Ingress => {
                publish.push(format!("{p}.codes.*"));
                publish.push(format!("{p}.results.*.unionid.*"));
                // Session-key checks: the workers call WeChat, the answer comes on the reply.
                publish.push(format!("{p}.calls.*"));
                publish.extend(kv_write(&sessions));
                publish.extend(stream_read(&kv_stream(&ledger)));
                publish.extend(stream_read(&self.results_stream()));
                subscribe.push(format!("{p}.reply.*"));
                // A duplicate submission waits on its code's result subject.
                subscribe.push(format!("{p}.results.*.*"));
            }
            Identity::Worker => {
                publish.extend(consume(&self.codes_stream(), &self.exchange_consumer()));
                publish.push(format!("{p}.results.*.*"));
                publish.push(format!("{p}.results.*.reset.*"));
                publish.push(format!("{p}.reply.*"));
                subscribe.push(format!("{p}.calls.*"));
                // Resets: only the admin publishes there (an operator's command).
                subscribe.push(format!("{p}.calls.*.reset"));
                publish.push(self.parked_subject(super::parked::Stage::Exchange));
                publish.extend(kv_write(&ledger));
                publish.extend(stream_read(&self.results_stream()));
                // The fleet's pauses are polled, not watched: a watch is a consumer of its own,
                // and whoever may create one may have it deliver to any subject
                // (nats-io/nats-server#8274). No role but the admin creates consumers.
                publish.extend(kv_write(&quota));
                // The fleet's access tokens: read by all workers, fetched by a lease holder.
                publish.extend(kv_write(&tokens));
            }
            Identity::Upserter => {
                publish.extend(consume(&self.results_stream(), &self.upsert_consumer()));
                publish.push(self.parked_subject(super::parked::Stage::Upsert));
                // Signing for the company's services: requests in, answers to their inboxes.
                subscribe.push(self.sign_subjects());
                publish.push(format!("{}.>", self.inbox_prefix(Identity::Service)));
                // An upgrade's backfill reads the stream with a consumer of its own: `wxlogin
                // migrate` (the admin) does it, the upserter refuses such an upgrade.
            }
            Identity::Service => {
                // Nothing of the pipeline: no stream, no bucket; only signing requests.
                publish = vec![self.sign_subjects()];
            }
            Identity::Admin => {
                for s in self.all_streams() {
                    publish.extend([
                        format!("$JS.API.STREAM.*.{s}"),
                        format!("$JS.API.STREAM.MSG.*.{s}"),
                        format!("$JS.API.CONSUMER.*.{s}"),
                        format!("$JS.API.CONSUMER.*.{s}.>"),
                        format!("$JS.API.CONSUMER.DURABLE.CREATE.{s}.>"),
                        format!("$JS.API.CONSUMER.MSG.NEXT.{s}.>"),
                    ]);
                    publish.extend(stream_read(&s));
                    publish.extend([format!("$JS.ACK.{s}.>"), format!("$JS.FC.{s}.>")]);
                }
                publish.push(format!("{p}.>"));
                for b in [&ledger, &sessions, &quota, &tokens] {
                    publish.push(format!("$KV.{b}.>"));
                }
                // `wxlogin up` runs every role in one process, each with its own inbox.
                subscribe = vec![format!("_INBOX.{p}.>"), format!("{p}.>")];
            }
        }
        Permissions { publish, subscribe }
    }
}

/// The stream behind a KV bucket.
pub fn kv_stream(bucket: &str) -> String {
    format!("KV_{bucket}")
}

/// Reads of single messages: by sequence or last-by-subject, from the leader or any replica.
fn stream_read(stream: &str) -> [String; 3] {
    [
        format!("$JS.API.STREAM.MSG.GET.{stream}"),
        format!("$JS.API.DIRECT.GET.{stream}"),
        format!("$JS.API.DIRECT.GET.{stream}.>"),
    ]
}

/// Puts, updates and deletes of a bucket's keys, and reads of them.
fn kv_write(bucket: &str) -> Vec<String> {
    let mut subjects = vec![format!("$KV.{bucket}.>")];
    subjects.extend(stream_read(&kv_stream(bucket)));
    subjects
}

/// Pulling from one durable consumer and acknowledging what it delivered.
fn consume(stream: &str, consumer: &str) -> [String; 3] {
    [
        format!("$JS.API.CONSUMER.INFO.{stream}.{consumer}"),
        format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
        format!("$JS.ACK.{stream}.{consumer}.>"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> Topology {
        Topology::from_settings(&crate::settings::Settings::default())
    }

    #[test]
    fn of_the_roles_only_the_ingress_may_write_sessions_and_read_replies() {
        let t = topology();
        let sessions = format!("$KV.{}.>", t.sessions_bucket());
        let replies = format!("{}.reply.*", t.prefix);
        for id in [Identity::Ingress, Identity::Worker, Identity::Upserter] {
            let p = t.permissions(id);
            let (writes, reads) = (
                p.publish.contains(&sessions),
                p.subscribe.contains(&replies),
            );
            let expected = matches!(id, Identity::Ingress);
            assert_eq!(writes, expected, "{id} writing sessions");
            assert_eq!(reads, expected, "{id} reading replies");
        }
    }

    #[test]
    fn every_identity_has_its_own_inbox_and_no_other_role_may_change_the_topology() {
        let t = topology();
        for id in Identity::ALL {
            let p = t.permissions(id);
            let inboxes: Vec<_> = p
                .subscribe
                .iter()
                .filter(|s| s.starts_with("_INBOX"))
                .collect();
            let own = match id {
                // `up` runs every role in one process, each with its own inbox.
                Identity::Admin => format!("_INBOX.{}.>", t.prefix),
                _ => format!("{}.>", t.inbox_prefix(id)),
            };
            assert_eq!(inboxes, [&own], "{id}");
            let creates = p.publish.iter().any(|s| s.starts_with("$JS.API.STREAM.*"));
            assert_eq!(creates, id.may_change_topology(), "{id}");
            for s in p.publish.iter().chain(&p.subscribe) {
                assert!(
                    s.contains(&t.prefix) || s == "$JS.API.INFO",
                    "{id}: {s} is outside the prefix"
                );
            }
        }
    }
}
