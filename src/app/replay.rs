//! `wxlogin replay`: re-feeds retained result events — from the stream, or from an export file
//! with no NATS at all — into the database, with a progress bar.

use super::{ReplayArgs, events};
use crate::{
    settings::Settings,
    upsert::{self, ReplayStats},
};

pub(super) async fn replay(settings: &Settings, args: ReplayArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let bar = events::bar("{bar:40} {pos}/{len}  {per_sec}  eta {eta}  {msg}");
    let progress = |s: &ReplayStats, at| {
        let message = format!("{} events, {} logins applied", s.events, s.logins);
        events::show(&bar, at, message)
    };
    let (stats, file) = match &args.file {
        Some(path) => {
            let mut file =
                events::open_file(path, events::rekey(settings, args.key_file.as_deref())?)?;
            let db = upsert::db::connect(&settings.database_url).await?;
            let stats =
                upsert::replay_from(&mut file, &db, settings.upsert_batch, progress).await?;
            (stats, Some(file))
        }
        None => {
            let pipeline =
                super::Pipeline::connect(settings, crate::contract::access::Identity::Admin)
                    .await?;
            let db =
                upsert::prepare(&settings.database_url, &pipeline.js, &pipeline.topology).await?;
            let from = args.from.start();
            let stats = upsert::replay(
                &pipeline.js,
                &pipeline.topology,
                &db,
                from,
                settings.upsert_batch,
                progress,
            )
            .await?;
            (stats, None)
        }
    };
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "replayed {} events ({} logins, {} unionids, {} failures, {} unreadable) in {secs:.1} s: {:.0} events/s",
        stats.events,
        stats.logins,
        stats.unionids,
        stats.failures,
        stats.malformed,
        stats.events as f64 / secs.max(1e-3)
    );
    match file {
        Some(file) => events::report_left_out(&file),
        None => Ok(()),
    }
}
