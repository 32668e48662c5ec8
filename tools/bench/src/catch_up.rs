//! Whether the database kept up: how many result events the upserter still had to apply when
//! the load ended, and how long it took to apply them. A login counts as succeeded when its
//! token works, which does not wait for the user table; this is the figure that does.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct CatchUp {
    /// Result events not yet applied (pending + in flight) when the load ended.
    pub backlog_at_end: u64,
    /// Seconds until the upserter had applied them all; `None` if it had not within the limit.
    pub caught_up_secs: Option<f64>,
}

/// Watches the upserter's consumer (`{prefix}_upserter` on `{prefix}_RESULTS`) until its
/// backlog is empty, for at most `limit`.
pub(crate) async fn measure(
    nats_url: &str,
    prefix: &str,
    limit: Duration,
) -> anyhow::Result<CatchUp> {
    let client = async_nats::connect(nats_url)
        .await
        .with_context(|| format!("cannot connect to {nats_url}"))?;
    let js = jetstream::new(client);
    let stream = js
        .get_stream(format!("{prefix}_RESULTS"))
        .await
        .context("no results stream")?;
    let name = format!("{prefix}_upserter");
    let started = Instant::now();
    let mut first = None;
    loop {
        let info = stream
            .consumer_info(&name)
            .await
            .context("cannot read the upserter's consumer")?;
        let backlog = info.num_pending + info.num_ack_pending as u64;
        let at_end = *first.get_or_insert(backlog);
        if backlog == 0 {
            return Ok(CatchUp {
                backlog_at_end: at_end,
                caught_up_secs: Some((started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0),
            });
        }
        if started.elapsed() > limit {
            return Ok(CatchUp {
                backlog_at_end: at_end,
                caught_up_secs: None,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
