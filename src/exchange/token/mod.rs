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

pub mod record;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use secrecy::SecretString;

use crate::{
    clock::Clock,
    contract::{AppId, leader},
    crypto::Keyring,
    wechat::{AccessToken, ApiError, ErrorClass, WechatClient},
};
use record::{TOKEN_RECORD_V1, TokenRecord};

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
        let ahead = self.refresh_ahead.as_millis() as i64;
        if let Some(c) = self.cached(appid) {
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

    /// Takes the appid's fetch lease: an atomic create, or the takeover of a lease whose
    /// revision stayed the same for [`LEASE_STALE`] on our own clock; the lease's revision when
    /// it is ours.
    async fn lease(
        &self,
        appid: &AppId,
        seen: &mut Option<(u64, Instant)>,
    ) -> Result<Option<u64>, TokenError> {
        let lease = lease_key(appid);
        let unavailable = |e: String| TokenError::Unavailable(e);
        match self.store.create(&lease, self.holder.clone().into()).await {
            Ok(revision) => return Ok(Some(revision)),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(unavailable(e.to_string())),
        }
        let Some(entry) = leader::kv_entry(&self.store, &lease)
            .await
            .map_err(|e| unavailable(e.to_string()))?
        else {
            return Ok(None);
        };
        match seen {
            Some((revision, since)) if *revision == entry.revision => {
                if since.elapsed() < LEASE_STALE {
                    return Ok(None);
                }
                tracing::warn!(%appid, "the access_token fetch lease looks abandoned; taking it over");
                match self
                    .store
                    .update(&lease, self.holder.clone().into(), entry.revision)
                    .await
                {
                    Ok(revision) => Ok(Some(revision)),
                    Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(None),
                    Err(e) => Err(unavailable(e.to_string())),
                }
            }
            _ => {
                *seen = Some((entry.revision, Instant::now()));
                Ok(None)
            }
        }
    }

    /// Gives the lease back, only if it is still ours (a taker's lease is left alone).
    async fn release(&self, appid: &AppId, revision: u64) {
        if let Err(e) = self
            .store
            .delete_expect_revision(lease_key(appid), Some(revision))
            .await
        {
            // Taken over meanwhile, or NATS away: it goes stale and is taken over.
            tracing::debug!(%appid, error = %e, "the access_token lease was not given back");
        }
    }

    /// Fetches a token as the lease holder and stores it for the fleet.
    async fn fetch(
        &self,
        appid: &AppId,
        mut rec: TokenRecord,
        revision: u64,
    ) -> Result<Lent, TokenError> {
        // Someone may have stored a good one between our read and our lease.
        let (latest, latest_rev) = self.read(appid).await?;
        let now = self.clock.now_ms();
        if latest_rev != revision {
            if latest.usable(now)
                && !latest.due(now, self.refresh_ahead.as_millis() as i64)
                && let Some(lent) = self.lend(appid, &latest, latest_rev)
            {
                return Ok(lent);
            }
            rec = latest;
        }
        let Some(secret) = self.secrets.get(appid) else {
            return Err(TokenError::Refused { errcode: 40013 });
        };
        let mut answer = self.wechat.stable_token(appid, secret, false).await;
        let same_as_failed = |token: &AccessToken, rec: &TokenRecord| {
            rec.failed_digest
                .as_ref()
                .is_some_and(|d| record::is_digest_of(&self.keyring, appid, token.expose(), d))
        };
        if let Ok(fetched) = &answer
            && same_as_failed(&fetched.token, &rec)
        {
            // WeChat still hands out the token it rejected: only a forced refresh replaces it.
            if !rec.forced.allows(now) {
                tracing::error!(
                    %appid,
                    used_today = rec.forced.used(now),
                    "WeChat rejects the access_token it keeps issuing, and the forced-refresh budget is spent"
                );
                return Err(self.refused(appid, rec, 40001).await);
            }
            rec.forced.spend(now);
            crate::meter::access_token_fetch(appid, "forced");
            answer = self.wechat.stable_token(appid, secret, true).await;
        }
        let fetched = match answer {
            Ok(f) => f,
            Err(e) => return Err(self.fetch_failed(appid, rec, e).await),
        };
        crate::meter::access_token_fetch(appid, "ok");
        let now = self.clock.now_ms();
        let lifetime_ms = fetched.expires_in.as_millis() as i64;
        rec = TokenRecord {
            v: TOKEN_RECORD_V1,
            token_sealed: Some(
                self.keyring
                    .seal_str(fetched.token.expose(), &record::aad(appid)),
            ),
            expires_at_ms: now + lifetime_ms,
            lifetime_ms,
            fetched_at_ms: now,
            fetches: rec.fetches + 1,
            failures: 0,
            last_errcode: None,
            retry_after_ms: 0,
            refused: false,
            ..rec
        };
        let revision = self
            .store
            .put(key(appid), encode(&rec))
            .await
            .map_err(|e| TokenError::Unavailable(e.to_string()))?;
        tracing::info!(%appid, expires_in = ?fetched.expires_in, "access_token fetched for the fleet");
        let lent = Lent {
            token: fetched.token,
            revision,
        };
        Ok(self.keep(appid, lent, &rec))
    }

    async fn fetch_failed(&self, appid: &AppId, mut rec: TokenRecord, e: ApiError) -> TokenError {
        crate::meter::access_token_fetch(appid, "failed");
        match e.class() {
            ErrorClass::Retryable | ErrorClass::RateLimited => {
                tracing::warn!(%appid, error = %e, "access_token fetch failed; it will be retried");
                rec.failures += 1;
                rec.last_errcode = Some(e.errcode());
                rec.refused = false;
                // A short pause for the whole fleet: a busy WeChat is not asked at request rate.
                let jitter = rand::random_range(0..TRANSIENT_BACKOFF.as_millis() as i64);
                rec.retry_after_ms =
                    self.clock.now_ms() + TRANSIENT_BACKOFF.as_millis() as i64 + jitter;
                let _ = self.store.put(key(appid), encode(&rec)).await;
                TokenError::Transient(e)
            }
            _ => {
                if let ApiError::Operator {
                    seen_ip: Some(ip), ..
                } = &e
                {
                    tracing::error!(%appid, errcode = e.errcode(), wechat_saw_ip = %ip,
                        "WeChat refuses our server's IP: add it to the app's IP allow-list");
                }
                self.refused(appid, rec, e.errcode()).await
            }
        }
    }

    /// Records a refusal an operator must fix: fetches stop for [`REFUSED_BACKOFF`].
    async fn refused(&self, appid: &AppId, mut rec: TokenRecord, errcode: i64) -> TokenError {
        crate::meter::access_token_refused(appid, errcode);
        tracing::error!(
            %appid,
            errcode,
            retry_in = ?REFUSED_BACKOFF,
            "WeChat refuses to issue an access_token: phone numbers and session-key checks fail until an operator fixes it (docs/security.md, 'The access_token')"
        );
        rec.v = TOKEN_RECORD_V1;
        rec.failures += 1;
        rec.last_errcode = Some(errcode);
        rec.refused = true;
        rec.retry_after_ms = self.clock.now_ms() + REFUSED_BACKOFF.as_millis() as i64;
        let _ = self.store.put(key(appid), encode(&rec)).await;
        TokenError::Refused { errcode }
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

#[cfg(test)]
mod tests;
