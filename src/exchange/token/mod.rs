//! One access_token per appid for the whole fleet (`POST /cgi-bin/stable_token`, normal mode).
//!
//! The token lives in the `{prefix}_tokens` bucket, sealed, with its expiry ([`record`]). Every
//! worker reads that shared value; only the holder of the appid's lease (`<appid>.lease`, an
//! atomic create) fetches, once the token is missing, failed or due ahead of expiry. A call
//! that fails with 40001/42001/40014 invalidates the shared token only if it is still the one
//! that failed (compare-and-set on the record's revision), so a worker that used an old token
//! never throws away one another worker just fetched. `force_refresh` is spent only when WeChat
//! answers the very token that failed, from the record's budget (≤ 20 a day, ≥ 30 s apart).
//! Refusals an operator must fix (40164 with the IP WeChat saw, 40243, 89503/89506/89507,
//! 45009, bad appid or secret) stop fetches for [`REFUSED_BACKOFF`]: a clear error, a metric
//! and a log line, never a retry loop.
//!
//! A lease whose holder died is taken over after [`LEASE_STALE`] without its revision changing,
//! as measured on the waiter's own monotonic clock: no two machines' clocks are compared.

mod fetch;
pub mod record;
mod status;

pub use status::{Status, status};

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use async_nats::jetstream::kv::{self, Operation, UpdateErrorKind};
use secrecy::SecretString;

use crate::{
    clock::Clock,
    contract::{AppId, leader},
    crypto::Keyring,
    wechat::{AccessToken, ApiError, WechatClient},
};
use record::TokenRecord;

/// How long fetches stop after WeChat refused to issue a token for a reason retrying cannot fix.
pub const REFUSED_BACKOFF: Duration = Duration::from_secs(30);
/// A lease unchanged this long is taken to be a dead holder's: a fetch is at most two HTTP
/// calls (a forced refresh after a normal one), each bounded by the client's timeouts (5 s
/// and 2 s by default), with room to spare.
pub const LEASE_STALE: Duration = Duration::from_secs(30);
/// How long the fleet waits before fetching again after a transient failure (-1, 45011, a 5xx),
/// plus up to as much again at random.
const TRANSIENT_BACKOFF: Duration = Duration::from_secs(1);
/// How often a worker waiting on another's fetch looks again.
const WAIT_POLL: Duration = Duration::from_millis(100);
/// How long a caller waits for a token before its call is retried later.
const WAIT_MAX: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// NATS or the bucket is away, or another worker is still fetching: try again shortly.
    #[error("the shared access_token is not available yet: {0}")]
    Unavailable(String),
    /// WeChat answered the fetch with something transient (-1, 45011, 5xx, timeout).
    #[error("WeChat could not issue an access_token now: {0}")]
    Transient(ApiError),
    /// WeChat refuses to issue one (see the module's top): an operator must act.
    #[error("WeChat refuses to issue an access_token (errcode {errcode})")]
    Refused { errcode: i64 },
}

impl TokenError {
    /// WeChat's errcode for answers to clients (-1 when transient).
    pub fn errcode(&self) -> i64 {
        match self {
            TokenError::Refused { errcode } => *errcode,
            _ => -1,
        }
    }
}

/// A token handed out, with the record revision it came from (what an invalidation compares).
#[derive(Debug, Clone)]
pub struct Lent {
    pub token: AccessToken,
    pub revision: u64,
}

#[derive(Clone)]
struct Cached {
    lent: Lent,
    expires_at_ms: i64,
    lifetime_ms: i64,
}

/// The fleet's access tokens, as one worker process sees them.
pub struct AccessTokens {
    store: kv::Store,
    wechat: WechatClient,
    secrets: HashMap<AppId, SecretString>,
    keyring: Arc<Keyring>,
    clock: Clock,
    refresh_ahead: Duration,
    cache: Mutex<HashMap<AppId, Cached>>,
    /// This process, as the lease names it.
    holder: String,
}

impl AccessTokens {
    pub fn new(
        store: kv::Store,
        wechat: WechatClient,
        secrets: HashMap<AppId, SecretString>,
        keyring: Arc<Keyring>,
        clock: Clock,
        refresh_ahead: Duration,
    ) -> Self {
        AccessTokens {
            store,
            wechat,
            secrets,
            keyring,
            clock,
            refresh_ahead,
            cache: Mutex::new(HashMap::new()),
            holder: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    fn cached(&self, appid: &AppId) -> Option<Cached> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.get(appid).cloned()
    }

    /// Keeps `lent` (of `rec`) as this process's copy, and hands it out.
    fn keep(&self, appid: &AppId, lent: Lent, rec: &TokenRecord) -> Lent {
        let cached = Cached {
            lent: lent.clone(),
            expires_at_ms: rec.expires_at_ms,
            lifetime_ms: rec.lifetime_ms,
        };
        self.remember(appid, Some(cached));
        lent
    }

    fn remember(&self, appid: &AppId, cached: Option<Cached>) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        match cached {
            Some(c) => cache.insert(appid.clone(), c),
            None => cache.remove(appid),
        };
    }

    /// The appid's current token: from this process's copy while it is not due, else from the
    /// bucket, fetched by whoever holds the lease when the bucket has none usable.
    pub async fn token(&self, appid: &AppId) -> Result<Lent, TokenError> {
        self.token_except(appid, None).await
    }

    /// Like [`AccessTokens::token`], but never `rejected`: the token WeChat refused for the call
    /// being retried. A read that began before that token was dropped can put it back in this
    /// process's copy (or a slow writer in the bucket), and a retry with it is refused again;
    /// then it is dropped again here and the next one waited for or fetched.
    pub async fn token_except(
        &self,
        appid: &AppId,
        rejected: Option<&AccessToken>,
    ) -> Result<Lent, TokenError> {
        let ahead = self.refresh_ahead.as_millis() as i64;
        let not_rejected = |lent: &Lent| rejected.is_none_or(|r| lent.token != *r);
        if let Some(c) = self.cached(appid).filter(|c| not_rejected(&c.lent)) {
            let now = self.clock.now_ms();
            let rec = TokenRecord {
                expires_at_ms: c.expires_at_ms,
                lifetime_ms: c.lifetime_ms,
                ..Default::default()
            };
            if now < c.expires_at_ms && !rec.due(now, ahead) {
                return Ok(c.lent);
            }
        }
        let started = Instant::now();
        let mut seen_lease: Option<(u64, Instant)> = None;
        loop {
            let (rec, revision) = self.read(appid).await?;
            let now = self.clock.now_ms();
            let current = match rec.usable(now) {
                true => self.lend(appid, &rec, revision),
                false => None,
            };
            if let Some(lent) = current.as_ref().filter(|l| !not_rejected(l)) {
                self.rejected(appid, lent).await;
                if started.elapsed() > WAIT_MAX {
                    return Err(TokenError::Unavailable("the rejected token stays".into()));
                }
                tokio::time::sleep(WAIT_POLL).await;
                continue;
            }
            if let Some(lent) = &current
                && !rec.due(now, ahead)
            {
                return Ok(lent.clone());
            }
            // A fetch failed a moment ago: nobody fetches again before its backoff ends, also
            // while the token still works (a refresh ahead of expiry) — never a retry loop.
            if rec.retry_after_ms > now {
                return match (current, rec.last_errcode) {
                    (Some(lent), _) => Ok(lent),
                    (None, Some(errcode)) if rec.refused => Err(TokenError::Refused { errcode }),
                    (None, _) => Err(TokenError::Unavailable(
                        "the last access_token fetch failed; backing off".into(),
                    )),
                };
            }
            match self.lease(appid, &mut seen_lease).await? {
                Some(lease_revision) => {
                    let fetched = self.fetch(appid, rec, revision).await;
                    self.release(appid, lease_revision).await;
                    match (fetched, current) {
                        (Ok(lent), _) => return Ok(lent),
                        // A refresh ahead of expiry failed: the token we have still works.
                        (Err(_), Some(lent)) => return Ok(lent),
                        (Err(e), None) => return Err(e),
                    }
                }
                // Someone else refreshes ahead of expiry: ours is still good meanwhile.
                None if current.is_some() => return Ok(current.expect("checked")),
                None => {}
            }
            if started.elapsed() > WAIT_MAX {
                return Err(TokenError::Unavailable(
                    "another worker's fetch has not ended".into(),
                ));
            }
            tokio::time::sleep(WAIT_POLL).await;
        }
    }

    /// A call with `lent` answered 40001/42001/40014: the shared token is dropped if it is still
    /// that one (a newer one stays; compare-and-set on the record's revision), and the next
    /// [`AccessTokens::token`] fetches.
    pub async fn rejected(&self, appid: &AppId, lent: &Lent) {
        crate::meter::access_token_rejected(appid);
        if self
            .cached(appid)
            .is_some_and(|c| c.lent.token == lent.token)
        {
            self.remember(appid, None);
        }
        let Ok((mut rec, revision)) = self.read(appid).await else {
            return;
        };
        // The token, not the record's revision, decides: a record rewritten with the same
        // token (a refresh WeChat answered with it) still holds the one that failed.
        let stored = rec
            .token_sealed
            .as_ref()
            .and_then(|sealed| self.keyring.open_string(sealed, &record::aad(appid)).ok());
        if stored.is_none_or(|t| AccessToken::new(t) != lent.token) {
            return;
        }
        rec.token_sealed = None;
        rec.failed_digest = Some(record::digest(&self.keyring, appid, lent.token.expose()));
        rec.invalidated_at_ms = self.clock.now_ms();
        match self.store.update(key(appid), encode(&rec), revision).await {
            Ok(_) => tracing::warn!(%appid, "WeChat rejected the shared access_token; refetching"),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {}
            Err(e) => {
                tracing::warn!(%appid, error = %e, "cannot invalidate the shared access_token")
            }
        }
    }

    fn lend(&self, appid: &AppId, rec: &TokenRecord, revision: u64) -> Option<Lent> {
        let sealed = rec.token_sealed.as_ref()?;
        match self.keyring.open_string(sealed, &record::aad(appid)) {
            Ok(token) => {
                let lent = Lent {
                    token: AccessToken::new(token),
                    revision,
                };
                Some(self.keep(appid, lent, rec))
            }
            Err(e) => {
                // Sealed under a key this worker lacks, or forged: treated as no token.
                tracing::warn!(%appid, error = %e, "the shared access_token cannot be opened");
                None
            }
        }
    }

    /// The record as the bucket's leader has it (a default one when there is none), and its
    /// revision (0: none).
    async fn read(&self, appid: &AppId) -> Result<(TokenRecord, u64), TokenError> {
        let entry = leader::kv_entry(&self.store, &key(appid))
            .await
            .map_err(|e| TokenError::Unavailable(e.to_string()))?;
        match entry {
            Some(e) if e.operation == Operation::Put => {
                match serde_json::from_slice::<TokenRecord>(&e.value) {
                    Ok(rec) => Ok((rec, e.revision)),
                    // Unreadable (a newer writer's, or junk): fetched over, never trusted.
                    Err(_) => Ok((TokenRecord::default(), e.revision)),
                }
            }
            Some(e) => Ok((TokenRecord::default(), e.revision)),
            None => Ok((TokenRecord::default(), 0)),
        }
    }
}

fn key(appid: &AppId) -> String {
    appid.to_string()
}

fn lease_key(appid: &AppId) -> String {
    format!("{appid}.lease")
}

fn encode(rec: &TokenRecord) -> bytes::Bytes {
    serde_json::to_vec(rec).expect("records serialize").into()
}

#[cfg(test)]
mod tests;
