//! The synchronous WeChat calls the workers answer for the ingress and for operators
//! ([`crate::contract::events::CallRequested`]): a session-key check (`wxa/checksession`) and a
//! session-key reset (`wxa/resetusersessionkey`). Every worker is in one queue group per appid,
//! so one answers each call; [`Exchanger::call`] is the step, a plain function tests call.
//!
//! Both are signed with the session_key (HMAC-SHA256 of the empty string) and need the fleet's
//! access_token; a token error invalidates it if it is still the one that failed and the call
//! is re-sent once with the next. They are not limited by a quota of ours: WeChat allows
//! 60,000 a minute per app, far above what sessions ask.

use std::sync::Arc;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{Exchanger, token::TokenError};
use crate::{
    contract::{
        events::{
            self, CALL_ANSWERED_V1, CallAnswered, CallKind, CallOutcome, CallRequested,
            SESSION_KEY_RESET, SESSION_KEY_RESET_V1, SessionKeyReset,
        },
        headers,
    },
    wechat::{ApiError, SessionKey, SessionKeyCheck},
};

impl Exchanger {
    /// Answers `req`: what WeChat said, tagged for the caller.
    #[tracing::instrument(skip_all, fields(call_id = %req.call_id, appid = %req.appid, kind = ?req.kind))]
    pub async fn call(&self, req: &CallRequested) -> CallAnswered {
        let outcome = self.make_call(req).await;
        CallAnswered {
            v: CALL_ANSWERED_V1,
            call_id: req.call_id.clone(),
            appid: req.appid.clone(),
            outcome,
            tag: None,
        }
        .tagged(&self.keyring)
    }

    async fn make_call(&self, req: &CallRequested) -> CallOutcome {
        let failed = |errcode| CallOutcome::Failed { errcode };
        if !self.apps.contains_key(&req.appid) {
            return failed(40013);
        }
        let aad = format!("{}:{}", req.appid, req.openid);
        let key = match self
            .keyring
            .open_string(&req.session_key_sealed, aad.as_bytes())
        {
            Ok(k) => SessionKey::new(k),
            Err(e) => {
                tracing::error!(error = %e, "cannot open the call's session_key");
                return failed(-1);
            }
        };
        let mut resent = false;
        loop {
            let lent = match self.tokens.token(&req.appid).await {
                Ok(lent) => lent,
                Err(TokenError::Refused { errcode }) => return failed(errcode),
                Err(e) => {
                    tracing::warn!(error = %e, "no access_token for the call");
                    return failed(-1);
                }
            };
            let answer = match req.kind {
                CallKind::CheckSession => self
                    .wechat
                    .check_session(&lent.token, &req.openid, &key)
                    .await
                    .map(|check| CallOutcome::Checked {
                        current: check == SessionKeyCheck::Current,
                    }),
                CallKind::ResetSessionKey => {
                    match self
                        .wechat
                        .reset_session_key(&lent.token, &req.openid, &key)
                        .await
                    {
                        Ok(new) => {
                            let sealed = self.keyring.seal_str(new.expose(), aad.as_bytes());
                            return self.record_reset(req, sealed).await;
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            crate::meter::upstream_call(answer.as_ref().map_or_else(ApiError::errcode, |_| 0));
            match answer {
                Ok(outcome) => return outcome,
                Err(ApiError::TokenRejected { .. }) if !resent => {
                    self.tokens.rejected(&req.appid, &lent).await;
                    resent = true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "WeChat call failed");
                    return failed(e.errcode());
                }
            }
        }
    }
}

impl Exchanger {
    /// The old key died with WeChat's answer: the new one is recorded on the results stream
    /// (for the user's row, and replays) before the caller hears of it, retried for a while;
    /// the answer says whether it was, and carries the key sealed either way.
    async fn record_reset(&self, req: &CallRequested, sealed: String) -> CallOutcome {
        let event = reset_event(req, sealed.clone(), self.clock.now_ms());
        let subject = self.topology.key_reset_subject(&req.appid, &req.call_id);
        for attempt in 0..10u32 {
            match publish_reset(&self.js, &subject, &event).await {
                Ok(()) => {
                    return CallOutcome::Reset {
                        session_key_sealed: sealed,
                        recorded: true,
                    };
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "cannot record the reset session_key yet");
                    tokio::time::sleep(self.backoff.delay(attempt)).await;
                }
            }
        }
        tracing::error!("the reset session_key could not be recorded here: the caller records it");
        CallOutcome::Reset {
            session_key_sealed: sealed,
            recorded: false,
        }
    }
}

/// The event of the reset `req` asked for.
pub fn reset_event(req: &CallRequested, sealed: String, now_ms: i64) -> SessionKeyReset {
    SessionKeyReset {
        v: SESSION_KEY_RESET_V1,
        event: SESSION_KEY_RESET.into(),
        call_id: req.call_id.clone(),
        appid: req.appid.clone(),
        openid: req.openid.clone(),
        session_key_sealed: sealed,
        reset_at_ms: now_ms,
    }
}

/// Records a reset on the results stream (once per call, however often it is retried).
pub async fn publish_reset(
    js: &async_nats::jetstream::Context,
    subject: &str,
    event: &SessionKeyReset,
) -> Result<(), String> {
    let ack = js
        .publish_with_headers(
            subject.to_string(),
            headers::for_key_reset(event),
            events::encode(event),
        )
        .await
        .map_err(|e| e.to_string())?;
    ack.await.map(drop).map_err(|e| e.to_string())
}

/// Answers calls for this worker's apps until `shutdown`.
pub async fn answer_calls(
    exchanger: Arc<Exchanger>,
    shutdown: CancellationToken,
) -> Result<(), async_nats::SubscribeError> {
    let mut subscriptions = Vec::new();
    for appid in exchanger.apps.keys() {
        for kind in [CallKind::CheckSession, CallKind::ResetSessionKey] {
            let subject = exchanger.topology.call_subject(appid, kind);
            let queue = exchanger.topology.call_queue();
            subscriptions.push(exchanger.nats.queue_subscribe(subject, queue).await?);
        }
    }
    let mut calls = futures::stream::select_all(subscriptions);
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            msg = calls.next() => match msg { Some(m) => m, None => return Ok(()) },
        };
        let exchanger = exchanger.clone();
        tokio::spawn(async move {
            let Some(reply) = headers::reply_subject(msg.headers.as_ref()).map(str::to_owned)
            else {
                return;
            };
            let req = match CallRequested::decode(&msg.payload) {
                // Each kind only on its own subject: a reset only from whoever may publish
                // there (the admin), never from an ingress.
                Ok(req)
                    if *msg.subject == exchanger.topology.call_subject(&req.appid, req.kind) =>
                {
                    req
                }
                Ok(_) => {
                    crate::meter::untrusted("call");
                    tracing::warn!(subject = %msg.subject, "a call on another kind's subject ignored");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable call ignored");
                    return;
                }
            };
            let answer = exchanger.call(&req).await;
            let headers = headers::for_reply(&req.call_id);
            if let Err(e) = exchanger
                .nats
                .publish_with_headers(reply, headers, events::encode(&answer))
                .await
            {
                tracing::debug!(error = %e, "call answer not sent");
            }
        });
    }
}
