//! `wxlogin token status`: the fleet's access_token per appid as the `{prefix}_tokens` bucket
//! has it — its age, expiry, last refresh and failures — never the token itself.

use anyhow::Context as _;

use super::Pipeline;
use crate::{
    contract::{AppId, access::Identity},
    exchange::token::{self, Status},
    settings::Settings,
};

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Per configured appid: whether a token is held, its age and expiry, the last refresh,
    /// fetches, failures and the last errcode, forced refreshes spent today (never the token).
    Status {
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(settings: &Settings, command: TokenCommand) -> anyhow::Result<()> {
    let TokenCommand::Status { json } = command;
    let appids: Vec<AppId> = settings
        .resolve_apps()?
        .into_iter()
        .map(|a| a.appid)
        .collect();
    let pipeline = Pipeline::connect(settings, Identity::Admin).await?;
    let now = pipeline.clock.now_ms();
    let statuses = token::status(&pipeline.handles.tokens, &appids, now)
        .await
        .context("cannot read the tokens bucket")?;
    if json {
        for s in &statuses {
            println!("{}", serde_json::to_string(s)?);
        }
    } else {
        println!("{}", table(&statuses));
    }
    Ok(())
}

fn table(statuses: &[Status]) -> String {
    let opt = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
    let mut out = String::from(
        "appid               token  age_s    expires_in_s  last_refresh              fetches  failures  last_errcode  forced_today",
    );
    for s in statuses {
        let refreshed = s
            .last_refresh_ms
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map_or("-".to_string(), |t| {
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            });
        out.push_str(&format!(
            "\n{:<18}  {:<5}  {:<7}  {:<12}  {:<24}  {:<7}  {:<8}  {:<12}  {}",
            s.appid,
            if s.has_token { "yes" } else { "no" },
            opt(s.age_secs),
            opt(s.expires_in_secs),
            refreshed,
            s.fetches,
            s.failures,
            opt(s.last_errcode),
            s.forced_today,
        ));
    }
    out
}
