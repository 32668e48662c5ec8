//! The bare infrastructure on the same machine: what JetStream alone does with the messages one
//! login needs, so the pipeline's figure can be read against its ceiling.
//!
//! A login costs the pipeline these JetStream operations, each one awaited before the next,
//! as in the pipeline (the per-login chain is sequential; logins run side by side):
//! - published and later consumed, acked (work queue / upserter): the code, the result;
//! - published only (KV writes): the ledger claim, the session;
//! - read (a direct get): `/v1/me`'s session lookup.
//!
//! The bare run does exactly that many publishes, consumes and reads per "login", with no HTTP,
//! no serde, no database and no WeChat simulator, on file-backed streams like the pipeline's.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer::pull, stream};
use futures::StreamExt;
use serde::Serialize;

/// Messages a login publishes that are consumed later (the code, the result).
pub const CONSUMED_PER_LOGIN: u64 = 2;
/// Messages a login publishes that nobody consumes (the ledger claim, the session).
pub const STORED_PER_LOGIN: u64 = 2;
/// Direct gets a login makes (`/v1/me`'s session lookup).
pub const READS_PER_LOGIN: u64 = 1;

/// What the bare run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Bare {
    /// "Logins" worth of JetStream operations completed.
    pub logins: u64,
    pub concurrency: usize,
    pub elapsed_secs: f64,
    pub logins_per_sec: f64,
    /// JetStream operations per second (publishes + consumes + reads).
    pub operations_per_sec: f64,
    pub publishes_per_login: u64,
    pub consumes_per_login: u64,
    pub reads_per_login: u64,
}

/// Runs `logins` logins' worth of JetStream traffic with `concurrency` chains at once against
/// the server at `nats_url`, on streams of its own (removed afterwards).
pub async fn run(nats_url: &str, logins: u64, concurrency: usize) -> anyhow::Result<Bare> {
    let client = async_nats::connect(nats_url)
        .await
        .with_context(|| format!("cannot connect to {nats_url}"))?;
    let js = jetstream::new(client);
    let id = uuid::Uuid::new_v4().simple().to_string();
    let queue = js
        .create_stream(stream::Config {
            name: format!("BAREQ_{id}"),
            subjects: vec![format!("bare.{id}.q.>")],
            retention: stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await
        .context("cannot create the bare work queue")?;
    let store = js
        .create_stream(stream::Config {
            name: format!("BAREKV_{id}"),
            subjects: vec![format!("bare.{id}.kv.>")],
            max_messages_per_subject: 1,
            allow_direct: true,
            ..Default::default()
        })
        .await
        .context("cannot create the bare store")?;
    let consumer = queue
        .create_consumer(pull::Config {
            durable_name: Some("bare".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .context("cannot create the bare consumer")?;

    let expected = logins * CONSUMED_PER_LOGIN;
    let consumed = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let reader = {
        let consumed = consumed.clone();
        tokio::spawn(async move {
            let mut messages = consumer.messages().await?;
            while consumed.load(Ordering::Relaxed) < expected {
                let Some(msg) = messages.next().await else {
                    break;
                };
                msg.map_err(|e| anyhow::anyhow!("{e}"))?
                    .ack()
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                consumed.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        })
    };
    let mut chains = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (js, store, next, id) = (js.clone(), store.clone(), next.clone(), id.clone());
        chains.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= logins {
                    return anyhow::Ok(());
                }
                let payload = bytes::Bytes::from(vec![b'x'; 256]);
                for step in 0..CONSUMED_PER_LOGIN {
                    js.publish(format!("bare.{id}.q.{step}"), payload.clone())
                        .await?
                        .await?;
                }
                for step in 0..STORED_PER_LOGIN {
                    js.publish(format!("bare.{id}.kv.{i}.{step}"), payload.clone())
                        .await?
                        .await?;
                }
                for _ in 0..READS_PER_LOGIN {
                    store
                        .direct_get_last_for_subject(format!("bare.{id}.kv.{i}.0"))
                        .await?;
                }
            }
        });
    }
    while let Some(chain) = chains.join_next().await {
        chain??;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while consumed.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    reader.abort();
    let _ = js.delete_stream(format!("BAREQ_{id}")).await;
    let _ = js.delete_stream(format!("BAREKV_{id}")).await;
    let done = consumed.load(Ordering::Relaxed);
    anyhow::ensure!(
        done >= expected,
        "the bare consumer got {done} of {expected} messages within 60 s"
    );
    let per_login = CONSUMED_PER_LOGIN * 2 + STORED_PER_LOGIN + READS_PER_LOGIN;
    Ok(Bare {
        logins,
        concurrency,
        elapsed_secs: (elapsed * 1000.0).round() / 1000.0,
        logins_per_sec: (logins as f64 / elapsed).round(),
        operations_per_sec: (logins as f64 * per_login as f64 / elapsed).round(),
        publishes_per_login: CONSUMED_PER_LOGIN + STORED_PER_LOGIN,
        consumes_per_login: CONSUMED_PER_LOGIN,
        reads_per_login: READS_PER_LOGIN,
    })
}
