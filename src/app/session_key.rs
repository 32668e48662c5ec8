//! `wxlogin session-key reset --appid A --openid O`: an operator has WeChat give a user a new
//! session_key (`wxa/resetusersessionkey`), e.g. after the old one leaked. The command reads the
//! user's current key from the database, asks a worker (who alone calls WeChat) over NATS, and
//! the worker records the new key on the results stream before answering, so the user's row
//! (and a replay) takes it. Sessions holding the old key are answered `409 87009` by
//! `/v1/decrypt` once a session-key check finds it replaced.

use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::StreamExt;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::Pipeline;
use crate::{
    contract::{
        AppId, LoginId,
        access::Identity,
        events::{self, CALL_REQUESTED_V1, CallAnswered, CallKind, CallOutcome, CallRequested},
        headers,
    },
    exchange,
    settings::Settings,
    upsert::{db, users},
};

/// How long a worker has to answer.
const ANSWER_WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, clap::Subcommand)]
pub enum SessionKeyCommand {
    /// Have WeChat replace a user's session_key (the old one dies at once).
    Reset {
        #[arg(long)]
        appid: String,
        #[arg(long)]
        openid: String,
    },
}

pub async fn run(settings: &Settings, command: SessionKeyCommand) -> anyhow::Result<()> {
    let SessionKeyCommand::Reset { appid, openid } = command;
    let keyring = super::required_keyring(settings)?;
    let appid = AppId::from(appid);
    let database = db::connect(&settings.database_url).await?;
    let row = users::Entity::find()
        .filter(users::Column::Appid.eq(appid.as_str()))
        .filter(users::Column::Openid.eq(openid.as_str()))
        .one(&database)
        .await
        .context("cannot read the user")?;
    let Some(row) = row.filter(|r| !r.session_key_sealed.is_empty()) else {
        bail!("no session_key is known for {appid} / this openid: the user has not logged in");
    };
    let pipeline = Pipeline::connect(settings, Identity::Admin).await?;
    let reply = pipeline
        .topology
        .reply_subject(&uuid::Uuid::new_v4().simple().to_string());
    let mut answers = pipeline.nats.subscribe(reply.clone()).await?;
    pipeline.nats.flush().await?;
    let request = CallRequested {
        v: CALL_REQUESTED_V1,
        call_id: LoginId::new(),
        kind: CallKind::ResetSessionKey,
        appid: appid.clone(),
        openid,
        session_key_sealed: row.session_key_sealed,
        requested_at_ms: pipeline.clock.now_ms(),
    };
    let mut headers = headers::for_reply(&request.call_id);
    headers.insert(headers::REPLY, reply.as_str());
    let subject = pipeline.topology.call_subject(&appid, request.kind);
    pipeline
        .nats
        .publish_with_headers(subject, headers, events::encode(&request))
        .await?;
    let answer = tokio::time::timeout(ANSWER_WAIT, async {
        while let Some(msg) = answers.next().await {
            match CallAnswered::decode(&msg.payload) {
                Ok(a) if a.call_id == request.call_id && a.is_authentic(&keyring) => {
                    return Some(a);
                }
                _ => continue,
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    match answer.map(|a| a.outcome) {
        Some(CallOutcome::Reset {
            session_key_sealed,
            recorded: false,
        }) => {
            // WeChat reset the key and the worker could not record it: the old key is dead, so
            // the new one must reach the results stream from here.
            let event =
                exchange::reset_event(&request, session_key_sealed, pipeline.clock.now_ms());
            let subject = pipeline
                .topology
                .key_reset_subject(&appid, &request.call_id);
            exchange::publish_reset(&pipeline.js, &subject, &event)
                .await
                .map_err(anyhow::Error::msg)
                .context("WeChat reset the session_key but it could not be recorded: run the reset again once NATS takes writes")?;
            println!("session_key reset for {appid} (recorded by this command)");
            Ok(())
        }
        Some(CallOutcome::Reset { .. }) => {
            println!(
                "session_key reset for {appid}: the upserter keeps the new key; sessions holding the old one get 409 87009 from /v1/decrypt once a session-key check finds it replaced"
            );
            Ok(())
        }
        Some(CallOutcome::Failed { errcode }) => {
            bail!(
                "WeChat refused the reset (errcode {errcode}; 87007: the key expired, 87009: it was already replaced)"
            )
        }
        Some(other) => bail!("unexpected answer to a reset: {other:?}"),
        None => {
            bail!("no worker answered within {ANSWER_WAIT:?}: is a worker for {appid} running?")
        }
    }
}
