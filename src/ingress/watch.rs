//! A code's result, read from the results stream's leader ([`code_result`]), and waited for on
//! the code's own subject without polling ([`ResultWatch`]): what a duplicate login, a ticket
//! and a phone request follow.

use std::time::Duration;

use futures::StreamExt;

use super::{
    Ingress,
    error::{self, ApiError},
};
use crate::contract::{AppId, CodeKey, events::LoginResult};

/// Waiting for a code's result on its subject, without polling.
pub(super) struct ResultWatch<'a> {
    ingress: &'a Ingress,
    appid: &'a AppId,
    code_key: &'a CodeKey,
    results: async_nats::Subscriber,
}

impl<'a> ResultWatch<'a> {
    /// Subscribes to the code's result subject (the server told, by the flush, before the read,
    /// so a result published after the read reaches us), then reads the stored result.
    pub(super) async fn start(
        ingress: &'a Ingress,
        appid: &'a AppId,
        code_key: &'a CodeKey,
    ) -> Result<(ResultWatch<'a>, Option<LoginResult>), ApiError> {
        let unavailable = |e: &dyn std::fmt::Display| {
            tracing::warn!(error = %e, "cannot watch for the code's result");
            error::UNAVAILABLE
        };
        let subject = ingress.topology.result_subject(appid, code_key);
        let results = ingress
            .nats
            .subscribe(subject)
            .await
            .map_err(|e| unavailable(&e))?;
        ingress.nats.flush().await.map_err(|e| unavailable(&e))?;
        let stored = code_result(ingress, appid, code_key).await?;
        let watch = ResultWatch {
            ingress,
            appid,
            code_key,
            results,
        };
        Ok((watch, stored))
    }

    /// The result once it is stored, within `wait`; `None` past it or on an error. A message on
    /// the subject only wakes us: core NATS delivers publishes the stream refused too (a second
    /// result, a result while the stream is full), so the stored one is read — a few times, as
    /// the message can reach us before the stream has stored it.
    pub(super) async fn wait(mut self, wait: Duration) -> Option<LoginResult> {
        let found = tokio::time::timeout(wait, async {
            while self.results.next().await.is_some() {
                for pause in [0, 20, 100] {
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    if let Some(result) =
                        code_result(self.ingress, self.appid, self.code_key).await?
                    {
                        return Ok(Some(result));
                    }
                }
            }
            Ok::<_, ApiError>(None)
        })
        .await;
        match found {
            Ok(Ok(result)) => result,
            _ => None,
        }
    }
}

/// The code's result, as the results stream's leader has it.
pub(super) async fn code_result(
    ingress: &Ingress,
    appid: &AppId,
    code_key: &CodeKey,
) -> Result<Option<LoginResult>, ApiError> {
    ingress.ledger.result(appid, code_key).await.map_err(|e| {
        tracing::warn!(error = %e, "code ledger unavailable");
        error::UNAVAILABLE
    })
}
