//! Fetching the fleet's token as the lease holder (`stable_token`, a forced refresh only from
//! the budget), recording failures so nobody retries in a loop, and the lease itself.

use std::time::Instant;

use async_nats::jetstream::kv::{CreateErrorKind, UpdateErrorKind};

use super::{
    AccessTokens, LEASE_STALE, Lent, REFUSED_BACKOFF, TRANSIENT_BACKOFF, TokenError, encode, key,
    lease_key,
    record::{self, TOKEN_RECORD_V1, TokenRecord},
};
use crate::{
    contract::{AppId, leader},
    wechat::{AccessToken, ApiError, ErrorClass},
};

impl AccessTokens {
    /// Takes the appid's fetch lease: an atomic create, or the takeover of a lease whose
    /// revision stayed the same for [`LEASE_STALE`] on our own clock; the lease's revision when
    /// it is ours.
    pub(super) async fn lease(
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
    pub(super) async fn release(&self, appid: &AppId, revision: u64) {
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
    pub(super) async fn fetch(
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
