//! Recording a result: publishing it on the code's own subject of the results stream, where
//! the first result of a code is the only one (see [`crate::ledger`]), and answering the
//! ingress.

use std::time::Duration;

use async_nats::HeaderMap;

use super::{Exchanger, Incoming, WorkerError};
use crate::{
    events::{self, HEADER_LOGIN_ID, LoginResult},
    ledger::Recorded,
};

impl Exchanger {
    /// Publishes the result we hold and returns the one the stream keeps, retrying through
    /// NATS hiccups (a cluster leader change, a reconnect) instead of giving the message back:
    /// the WeChat answer exists only in this process, and a redelivered code could not be
    /// exchanged again. If a worker that died after publishing left a result, that one stays
    /// authoritative and is what we answer with.
    pub(super) async fn record(&self, result: LoginResult) -> Result<LoginResult, WorkerError> {
        let give_up = tokio::time::Instant::now() + self.topology.exchange_ack_wait * 4;
        let mut attempt = 0;
        loop {
            match self.ledger.record(&result).await {
                Ok(Recorded::Ours(seq)) => {
                    tracing::debug!(seq, "result published");
                    return Ok(result);
                }
                Ok(Recorded::Earlier(first)) => {
                    if first.login_id != result.login_id {
                        tracing::warn!(
                            "a result for this code was already published; answering with it"
                        );
                    }
                    return Ok(*first);
                }
                Err(e) if tokio::time::Instant::now() < give_up => {
                    crate::meter::nats_error("record_result");
                    tracing::warn!(error = %e, attempt, "cannot record the result yet; retrying");
                    tokio::time::sleep(self.backoff.delay(attempt).max(Duration::from_millis(100)))
                        .await;
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
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
