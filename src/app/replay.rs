//! `wxlogin replay`: re-feeds retained result events into the database, with a progress bar.

use super::{Pipeline, ReplayArgs};
use crate::{
    settings::Settings,
    upsert::{self, ReplayFrom},
};

pub(super) async fn replay(settings: &Settings, args: ReplayArgs) -> anyhow::Result<()> {
    let pipeline = Pipeline::connect(settings, crate::contract::access::Identity::Admin).await?;
    let db = upsert::prepare(&settings.database_url, &pipeline.js, &pipeline.topology).await?;
    let from = match (args.from_seq, args.from_time) {
        (Some(s), _) => ReplayFrom::Sequence(s),
        (None, Some(t)) => ReplayFrom::Time(t),
        (None, None) => ReplayFrom::Start,
    };
    let started = std::time::Instant::now();
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} seq  {per_sec}  eta {eta}  {msg}",
        )
        .expect("valid template"),
    );
    let stats = upsert::replay(
        &pipeline.js,
        &pipeline.topology,
        &db,
        from,
        settings.upsert_batch,
        |s, last| {
            bar.set_length(last);
            bar.set_position(s.last_seq);
            bar.set_message(format!("{} events, {} logins applied", s.events, s.logins));
        },
    )
    .await?;
    bar.finish();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "replayed {} events ({} logins, {} failures, {} unreadable) in {secs:.1} s: {:.0} events/s",
        stats.events,
        stats.logins,
        stats.failures,
        stats.malformed,
        stats.events as f64 / secs.max(1e-3)
    );
    Ok(())
}
