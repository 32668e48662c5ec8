//! `202` tickets: what they carry (sealed, so any ingress can finish the login and nobody else
//! can read or forge one), their formats, and `GET /v1/login/{ticket}`.

use super::error_docs::{self, error_set};
use crate::contract::{AppId, CodeKey, LoginId};
use std::{sync::Arc, time::Duration};

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

use super::{
    Ingress,
    error::{self, ApiError},
    login::{IfStoreDown, TokenAnswer, answer},
    watch::code_result,
};

/// Tickets are sealed under this; the first format's tickets (no `joined`) were sealed under
/// `TICKET_AAD_V1`, which ingresses of the first format alone accept: they would hand a ticket
/// of this format any result of its code.
const TICKET_AAD: &[u8] = b"wxlogin-ticket-v2";
const TICKET_AAD_V1: &[u8] = b"wxlogin-ticket-v1";
const RETRY_AFTER_MS: u64 = 500;

/// What a 202's ticket carries (sealed): enough for any ingress to finish the login.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Ticket {
    pub(super) token: String,
    pub(super) login_id: LoginId,
    pub(super) appid: AppId,
    pub(super) code_key: CodeKey,
    pub(super) received_at_ms: i64,
    /// A duplicate submission that reached the stream before the code's exchange ended: it
    /// shares the code's one outcome. Absent in tickets of the first format: then only a result
    /// naming this login counts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) joined: bool,
}

/// Not ready yet: poll `GET /v1/login/{ticket}` after `retry_after_ms`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"ticket": EXAMPLE_TICKET, "retry_after_ms": 500}))]
pub(crate) struct Accepted {
    /// Sealed and opaque; it reveals nothing and only this deployment can read it.
    ticket: String,
    /// Wait this long before polling.
    retry_after_ms: u64,
}

pub(super) fn accepted(ingress: &Ingress, ticket: &Ticket) -> Result<Response, ApiError> {
    accepted_sealed(ingress, ticket, TICKET_AAD)
}

/// `202` with `ticket` sealed under `aad` (each kind of ticket has its own, so none opens as
/// another's).
pub(super) fn accepted_sealed<T: Serialize>(
    ingress: &Ingress,
    ticket: &T,
    aad: &[u8],
) -> Result<Response, ApiError> {
    let sealed = ingress
        .keyring
        .seal(&serde_json::to_vec(ticket).expect("ticket serializes"), aad);
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            ticket: sealed,
            retry_after_ms: RETRY_AFTER_MS,
        }),
    )
        .into_response())
}

/// Follows a `202` ticket: answers like `POST /v1/login` (200, 202 again, or the login's
/// error); `503 -1` once the code is past its TTL + 2 ack waits without a result, and
/// `404 40029` once the ticket is older than the code's ledger record.
#[utoipa::path(
    get,
    path = "/v1/login/{ticket}",
    tag = "login",
    operation_id = "login_ticket",
    params(("ticket" = String, Path, description = "The `ticket` of a `202` answer.")),
    responses(
        (status = 200, description = "Logged in.", body = TokenAnswer),
        (status = 202, description = "Still not ready: poll again after `retry_after_ms`.", body = Accepted),
        TicketErrors,
    ),
)]
#[tracing::instrument(skip_all, fields(login_id))]
pub(super) async fn get_ticket(
    State(ingress): State<Arc<Ingress>>,
    Path(sealed): Path<String>,
) -> Response {
    let Some(ticket) = open_ticket(&ingress.keyring, &sealed) else {
        return error::UNKNOWN_TICKET.into_response();
    };
    tracing::Span::current().record("login_id", ticket.login_id.as_str());
    let age = Duration::from_millis(
        ingress
            .clock
            .now_ms()
            .saturating_sub(ticket.received_at_ms)
            .max(0) as u64,
    );
    if age > ingress.topology.ledger_max_age() {
        return error::UNKNOWN_TICKET.into_response();
    }
    let result = match code_result(&ingress, &ticket.appid, &ticket.code_key).await {
        Ok(Some(result)) => answer(&ingress, &ticket, &result, IfStoreDown::Unavailable).await,
        Ok(None) if age > ingress.topology.code_ttl + 2 * ingress.topology.exchange_ack_wait => {
            Err(error::EXPIRED)
        }
        Ok(None) => accepted(&ingress, &ticket),
        Err(e) => Err(e),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// A ticket of this format, or of the first (read as not joined: it then takes only a result
/// naming its own login).
fn open_ticket(keyring: &crate::crypto::Keyring, sealed: &str) -> Option<Ticket> {
    let (bytes, current) = match keyring.open(sealed, TICKET_AAD) {
        Ok(bytes) => (bytes, true),
        Err(_) => (keyring.open(sealed, TICKET_AAD_V1).ok()?, false),
    };
    let mut ticket: Ticket = serde_json::from_slice(&bytes).ok()?;
    ticket.joined &= current;
    Some(ticket)
}

/// A real ticket (sealed; it reveals nothing), for the examples.
pub(crate) const EXAMPLE_TICKET: &str = concat!(
    "v1.4eb9a03c.aP87sL83hIuMNk00dln8vvYTTzSZZ2FAgmlLZyp2mmcfeLh5MYkqwac73t46-NS5fSP9",
    "z6n4zNfPsmnlD6b7cHaJwChRv4kYt0ZFc6O7d_U_lcRNUkR9dJVmLA4-R8hDYF-QbmRqHt8z4MLcuH8r",
    "sn582uyMhFi_qXOku4sTvH8fI0n_UqwQ9wbkmP4Z62XSvUmJFghldmop8_TM6ZMDdZTerAjIEA9h0H_Z",
    "Tv9PmhbKudGBbEk0AP4sqiq9yS0yghMk5XI92j8mEW46pt4N8zvsNjY2LYdI9ijWfAD6HGa2L2RBKzFZ",
    "-OmxIu17npdXInQO2xwVMg",
);

error_set! {
    /// What `GET /v1/login/{ticket}` can answer besides 200 and 202.
    TicketErrors {
        MISSING_CODE: error_docs::WHEN_MISSING_CODE,
        INVALID_CODE: error_docs::WHEN_INVALID_CODE,
        UNAUTHORIZED: "the session this ticket created has since been logged out or expired",
        UNKNOWN_TICKET: "the ticket is unknown, forged, or older than a code could still be \
exchanged; call `wx.login()` again",
        CODE_USED: error_docs::WHEN_CODE_USED,
        HIGH_RISK: error_docs::WHEN_HIGH_RISK,
        SERVER_MISCONFIGURED: error_docs::WHEN_MISCONFIGURED,
        UPSTREAM_UNEXPECTED: error_docs::WHEN_UPSTREAM_UNEXPECTED,
        TOO_MANY_ATTEMPTS: "this client address made too many login attempts and ticket polls \
(`WXLOGIN_CLIENT_QUOTA`); wait `Retry-After` seconds",
        UNAVAILABLE: error_docs::WHEN_UNAVAILABLE,
        EXPIRED: error_docs::WHEN_EXPIRED,
        OVERLOADED: "this server has too many logins in flight; wait `Retry-After` seconds",
        REQUEST_TIMEOUT: error_docs::WHEN_REQUEST_TIMEOUT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring() -> crate::crypto::Keyring {
        crate::crypto::Keyring::new(crate::crypto::MasterKey::generate(), Vec::new())
    }

    const FIRST_FORMAT: &str =
        r#"{"token":"wxl_t","login_id":"l-1","appid":"wx1","code_key":"k","received_at_ms":1}"#;

    #[test]
    fn a_ticket_of_the_first_format_is_read_as_not_joined() {
        let keyring = keyring();
        let old = keyring.seal(FIRST_FORMAT.as_bytes(), TICKET_AAD_V1);
        let ticket = open_ticket(&keyring, &old).expect("first-format tickets stay readable");
        assert_eq!((ticket.login_id.as_str(), ticket.joined), ("l-1", false));
        // Whatever it says, a first-format ticket never counts as joined.
        let claims_joined = FIRST_FORMAT.replace('}', r#","joined":true}"#);
        let old = keyring.seal(claims_joined.as_bytes(), TICKET_AAD_V1);
        assert!(!open_ticket(&keyring, &old).unwrap().joined);
    }

    #[test]
    fn a_ticket_of_this_format_keeps_its_joined_mark_and_first_format_readers_refuse_it() {
        let keyring = keyring();
        let joined = FIRST_FORMAT.replace('}', r#","joined":true}"#);
        let sealed = keyring.seal(joined.as_bytes(), TICKET_AAD);
        assert!(open_ticket(&keyring, &sealed).unwrap().joined);
        // An ingress of the first format opens tickets under its own AAD only: it answers
        // 404 for this one instead of handing it the code's result.
        assert!(keyring.open(&sealed, TICKET_AAD_V1).is_err());
    }
}
