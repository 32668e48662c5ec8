//! Recording a result: publishing it on the results stream (whose de-duplication keeps the
//! first result of a code authoritative), recording it in the ledger, and answering the ingress.

use std::time::Duration;

use async_nats::HeaderMap;

use super::{Exchanger, Incoming, WorkerError};
use crate::events::{self, HEADER_LOGIN_ID, HEADER_MSG_ID, LoginResult};

impl Exchanger {
    /// Publishes and records a result we hold, retrying through NATS hiccups (a cluster leader
    /// change, a reconnect) instead of giving the message back: the WeChat answer exists only
    /// in this process, and a redelivered code could not be exchanged again.
    pub(super) async fn record(&self, result: LoginResult) -> Result<LoginResult, WorkerError> {
        let give_up = tokio::time::Instant::now() + self.topology.exchange_ack_wait * 4;
        let mut attempt = 0;
        loop {
            let step = async {
                let kept = self.publish_result(result.clone()).await?;
                self.ledger.finish(&kept.code_key, &kept).await?;
                Ok::<_, WorkerError>(kept)
            };
            match step.await {
                Ok(kept) => return Ok(kept),
                Err(e) if tokio::time::Instant::now() < give_up => {
                    crate::meter::nats_error("record_result");
                    tracing::warn!(error = %e, attempt, "cannot record the result yet; retrying");
                    tokio::time::sleep(self.backoff.delay(attempt).max(Duration::from_millis(100)))
                        .await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Publishes the result and returns the one the stream keeps. The stream de-duplicates by
    /// code hash, so if a worker died after publishing but before recording in the ledger, the
    /// result it published stays authoritative and is what we answer with.
    async fn publish_result(&self, result: LoginResult) -> Result<LoginResult, WorkerError> {
        let unavailable = |e: &dyn std::fmt::Display| WorkerError::Unavailable(e.to_string());
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_MSG_ID, result.code_key.as_str());
        headers.insert(HEADER_LOGIN_ID, result.login_id.as_str());
        let subject = self.topology.result_subject(&result.appid);
        let ack = self
            .js
            .publish_with_headers(subject, headers, events::encode(&result))
            .await
            .map_err(|e| unavailable(&e))?
            .await
            .map_err(|e| unavailable(&e))?;
        if !ack.duplicate {
            return Ok(result);
        }
        let stream = self
            .js
            .get_stream(self.topology.results_stream())
            .await
            .map_err(|e| unavailable(&e))?;
        let original = stream
            .get_raw_message(ack.sequence)
            .await
            .map_err(|e| unavailable(&e))?;
        match LoginResult::decode(&original.payload) {
            Ok(first) => {
                tracing::warn!(
                    seq = ack.sequence,
                    "a result for this code was already published; answering with it"
                );
                Ok(first)
            }
            Err(e) => Err(unavailable(&e)),
        }
    }

    /// Best effort: if the ingress has gone, the client polls its ticket from the ledger.
    pub(super) async fn reply(&self, incoming: &Incoming, result: &LoginResult) {
        let Some(subject) = &incoming.reply else {
            return;
        };
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_LOGIN_ID, incoming.request.login_id.as_str());
        if let Err(e) = self
            .nats
            .publish_with_headers(subject.clone(), headers, events::encode(result))
            .await
        {
            tracing::debug!(error = %e, "reply not sent");
        }
    }
}
