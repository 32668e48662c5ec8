//! `wxlogin parked list` and `wxlogin parked retry`: the events a stage set aside
//! ([`crate::contract::parked`]), shown with why, and applied again once the cause is fixed (an
//! upgrade that reads them, a database that takes them). What goes through is removed; what
//! still cannot is left where it is, saying why.

use anyhow::{Context as _, bail};

use super::Pipeline;
use crate::{
    contract::{
        events::LoginRequested,
        headers,
        parked::{self, Parked, Stage},
    },
    settings::Settings,
    upsert::{self, Read, apply},
};

#[derive(Debug, clap::Subcommand)]
pub enum ParkedCommand {
    /// List parked events: sequence, when, stage, where from, login id and reason.
    List,
    /// Apply parked events again (all, or the given sequences); remove those that go through.
    Retry {
        /// Sequences in the parked stream (as `list` shows them); none: every parked event.
        seqs: Vec<u64>,
    },
}

pub async fn run(settings: &Settings, command: ParkedCommand) -> anyhow::Result<()> {
    let pipeline = Pipeline::connect(settings, crate::contract::access::Identity::Admin).await?;
    let all = parked::list(&pipeline.js, &pipeline.topology)
        .await
        .map_err(anyhow::Error::msg)
        .context("cannot read the parked events")?;
    match command {
        ParkedCommand::List => {
            println!("{}", table(&all));
            Ok(())
        }
        ParkedCommand::Retry { seqs } => {
            let chosen: Vec<&Parked> = all
                .iter()
                .filter(|p| seqs.is_empty() || seqs.contains(&p.seq))
                .collect();
            if let Some(missing) = seqs.iter().find(|s| !all.iter().any(|p| p.seq == **s)) {
                bail!("no parked event has sequence {missing} (see `wxlogin parked list`)");
            }
            let (mut done, mut left) = (0, 0);
            let mut database = None;
            for p in chosen {
                let outcome = match p.stage {
                    Some(Stage::Upsert) => {
                        if database.is_none() {
                            let url = &settings.database_url;
                            let db = upsert::prepare(url, &pipeline.js, &pipeline.topology);
                            database = Some(db.await?);
                        }
                        let db = database.as_ref().expect("connected above");
                        retry_upsert(db, p).await
                    }
                    Some(Stage::Exchange) => retry_exchange(&pipeline, p).await,
                    None => Err("parked on an unknown subject by a newer wxlogin".to_string()),
                };
                match outcome {
                    Ok(()) => {
                        // Applying twice changes nothing: a copy another retry removed first
                        // is as good as removed.
                        let removed = parked::remove(&pipeline.js, &pipeline.topology, p.seq).await;
                        done += 1;
                        match removed {
                            Ok(()) => println!("{}: applied, removed", p.seq),
                            Err(e) => println!("{}: applied; not removed ({e})", p.seq),
                        }
                    }
                    Err(why) => {
                        left += 1;
                        println!("{}: still parked: {why}", p.seq);
                    }
                }
            }
            println!("{done} applied, {left} still parked");
            Ok(())
        }
    }
}

/// Applies a parked result event to the database, as the upserter would.
async fn retry_upsert(db: &sea_orm::DatabaseConnection, p: &Parked) -> Result<(), String> {
    let change = match upsert::read(p.from_seq, &p.payload) {
        Read::Apply(change) => change,
        Read::Nothing => return Ok(()),
        Read::Park(why) => return Err(why),
    };
    match apply::apply_isolating(db, std::slice::from_ref(&change)).await {
        Ok((_, refused)) => match refused.into_iter().next() {
            None => Ok(()),
            Some((_, why)) => Err(format!("the database refused it: {why}")),
        },
        Err(e) => Err(format!("database unavailable: {e}")),
    }
}

/// Gives a parked login request back to the workers, on the subject it came from. The code's
/// ledger still decides: a code with a result is answered from it, never exchanged again.
async fn retry_exchange(pipeline: &Pipeline, p: &Parked) -> Result<(), String> {
    let request = LoginRequested::decode(&p.payload)
        .map_err(|e| format!("this build cannot read it either: {e}"))?;
    let mut h = async_nats::HeaderMap::new();
    h.insert(headers::LOGIN_ID, request.login_id.as_str());
    // Its own id: the code's (the first submission's) may still be in the duplicate window,
    // which would drop this copy. The ledger still stops a second exchange.
    let msg_id = format!("parked-retry:{}:{}", request.code_key, p.seq);
    h.insert(headers::MSG_ID, msg_id.as_str());
    let ack = pipeline
        .js
        .publish_with_headers(p.from_subject.clone(), h, p.payload.clone())
        .await
        .map_err(|e| e.to_string())?;
    let ack = ack.await.map_err(|e| e.to_string())?;
    if ack.duplicate {
        return Err("JetStream took it for a duplicate of a retry just made".into());
    }
    Ok(())
}

/// The listing: one line per parked event, no payload (personal data stays out of terminals).
pub fn table(all: &[Parked]) -> String {
    if all.is_empty() {
        return "no parked events".into();
    }
    let mut out = String::from("SEQ\tPARKED AT\tSTAGE\tFROM\tLOGIN\tREASON");
    for p in all {
        let at = p
            .parked_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let stage = p.stage.map_or("?", Stage::as_str);
        let from = format!("{}#{}", p.from_subject, p.from_seq);
        let login = p.login_id.as_deref().unwrap_or("-");
        out.push_str(&format!(
            "\n{}\t{at}\t{stage}\t{from}\t{login}\t{}",
            p.seq, p.reason
        ));
    }
    out
}
