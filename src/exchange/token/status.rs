//! `wxlogin token status`: what the bucket says of each appid's token, never the token.

use async_nats::jetstream::kv::{self, Operation};

use super::{TokenError, key, record::TokenRecord};
use crate::contract::{AppId, leader};

/// One appid's token as `wxlogin token status` shows it: never the token.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub appid: String,
    pub has_token: bool,
    pub age_secs: Option<i64>,
    pub expires_in_secs: Option<i64>,
    pub last_refresh_ms: Option<i64>,
    pub fetches: u64,
    pub failures: u32,
    pub last_errcode: Option<i64>,
    pub forced_today: u32,
}

/// What the bucket says of each appid's token, at `now_ms`.
pub async fn status(
    store: &kv::Store,
    appids: &[AppId],
    now_ms: i64,
) -> Result<Vec<Status>, TokenError> {
    let mut out = Vec::new();
    for appid in appids {
        let entry = leader::kv_entry(store, &key(appid))
            .await
            .map_err(|e| TokenError::Unavailable(e.to_string()))?;
        let rec = entry
            .filter(|e| e.operation == Operation::Put)
            .and_then(|e| serde_json::from_slice::<TokenRecord>(&e.value).ok())
            .unwrap_or_default();
        let fetched = rec.fetched_at_ms > 0;
        out.push(Status {
            appid: appid.to_string(),
            has_token: rec.usable(now_ms),
            age_secs: fetched.then(|| (now_ms - rec.fetched_at_ms) / 1000),
            expires_in_secs: rec
                .usable(now_ms)
                .then(|| (rec.expires_at_ms - now_ms) / 1000),
            last_refresh_ms: fetched.then_some(rec.fetched_at_ms),
            fetches: rec.fetches,
            failures: rec.failures,
            last_errcode: rec.last_errcode,
            forced_today: rec.forced.used(now_ms),
        });
    }
    Ok(out)
}
