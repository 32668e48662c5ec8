//! A copy of the results stream as it was written, taken while the run goes on: results age out
//! after `RESULTS_MAX_AGE_SECS` (the run makes them), so the checks read this copy, not the
//! stream at the end. It follows the stream through restarts of nats-server by reconnecting and
//! going on from the next sequence it has not seen.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use wxlogin::{
    contract::topology::Topology,
    fixtures::EventLine,
    settings::Settings,
    upsert::{History, ReplayFrom},
};

#[derive(Default)]
pub struct Recorded {
    pub lines: Vec<EventLine>,
    /// The stream's sequence after the last one copied.
    pub next: u64,
    /// Sequences that were gone (aged out) before the copy reached them: a check is blind there.
    pub missed: u64,
}

pub type Shared = Arc<Mutex<Recorded>>;

pub fn topology(prefix: &str) -> Topology {
    Topology::from_settings(&Settings {
        nats_prefix: prefix.to_string(),
        ..Settings::default()
    })
}

/// One connection for the whole run (async-nats reconnects it through restarts): `url` is one
/// server or a cluster's comma-separated list.
pub async fn connect(url: &str) -> Result<async_nats::jetstream::Context, String> {
    let servers = (url.split(','))
        .map(|u| {
            u.parse::<async_nats::ServerAddr>()
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(servers)
        .await
        .map_err(|e| e.to_string())?;
    Ok(async_nats::jetstream::new(client))
}

/// Copies what the stream holds past what was copied already; `Err` on any NATS trouble.
pub async fn catch_up(
    js: &async_nats::jetstream::Context,
    prefix: &str,
    into: &Shared,
) -> Result<(), String> {
    let topology = topology(prefix);
    let from = into.lock().unwrap().next.max(1);
    let mut history = History::open(js, &topology, ReplayFrom::Sequence(from))
        .await
        .map_err(|e| e.to_string())?;
    if history.last < from {
        return Ok(());
    }
    let strip = format!("{prefix}.");
    while let Some(event) = history.next().await.map_err(|e| e.to_string())? {
        let mut rec = into.lock().unwrap();
        if event.seq < rec.next {
            continue;
        }
        rec.missed += event.seq - rec.next.max(1);
        let subject = event.subject.strip_prefix(&strip).unwrap_or(&event.subject);
        rec.lines.push(EventLine::of(
            event.seq,
            event.time,
            subject.to_string(),
            event.login_id,
            &event.payload,
        ));
        rec.next = event.seq + 1;
        if event.seq >= history.last {
            break;
        }
    }
    Ok(())
}

/// Keeps copying until `stop` is cancelled.
pub async fn follow(
    url: String,
    prefix: String,
    into: Shared,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut js = None;
    while !stop.is_cancelled() {
        if js.is_none() {
            js = connect(&url).await.ok();
        }
        // nats-server down or electing a leader: try again shortly.
        if let Some(js) = &js {
            let _ = catch_up(js, &prefix, &into).await;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(300)) => {}
            () = stop.cancelled() => {}
        }
    }
}
