//! `202` tickets: what they carry (sealed, so any ingress can finish the login and nobody else
//! can read or forge one), their formats, and `GET /v1/login/{ticket}`.

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
    login::{TokenAnswer, answer, code_result},
};
use crate::events;

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
    pub(super) login_id: String,
    pub(super) appid: String,
    pub(super) code_key: String,
    pub(super) received_at_ms: i64,
    /// A duplicate submission that reached the stream before the code's exchange ended: it
    /// shares the code's one outcome. Absent in tickets of the first format: then only a result
    /// naming this login counts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) joined: bool,
}

/// Not ready yet: poll `GET /v1/login/{ticket}` after `retry_after_ms`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"ticket": super::openapi::EXAMPLE_TICKET, "retry_after_ms": 500}))]
pub(crate) struct Accepted {
    /// Sealed and opaque; it reveals nothing and only this deployment can read it.
    ticket: String,
    /// Wait this long before polling.
    retry_after_ms: u64,
}

pub(super) fn accepted(ingress: &Ingress, ticket: &Ticket) -> Result<Response, ApiError> {
    let sealed = ingress.keyring.seal(
        &serde_json::to_vec(ticket).expect("ticket serializes"),
        TICKET_AAD,
    );
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
/// error) for as long as the code could still be exchanged; then `404 40029`.
#[utoipa::path(
    get,
    path = "/v1/login/{ticket}",
    tag = "login",
    operation_id = "login_ticket",
    params(("ticket" = String, Path, description = "The `ticket` of a `202` answer.")),
    responses(
        (status = 200, description = "Logged in.", body = TokenAnswer),
        (status = 202, description = "Still not ready: poll again after `retry_after_ms`.", body = Accepted),
        super::openapi::TicketErrors,
    ),
)]
#[tracing::instrument(skip_all, fields(login_id))]
pub async fn get_ticket(
    State(ingress): State<Arc<Ingress>>,
    Path(sealed): Path<String>,
) -> Response {
    let Some(ticket) = open_ticket(&ingress.keyring, &sealed) else {
        return error::UNKNOWN_TICKET.into_response();
    };
    tracing::Span::current().record("login_id", ticket.login_id.as_str());
    let age = Duration::from_millis(
        events::now_ms()
            .saturating_sub(ticket.received_at_ms)
            .max(0) as u64,
    );
    if age > ingress.topology.ledger_max_age() {
        return error::UNKNOWN_TICKET.into_response();
    }
    let result = match code_result(&ingress, &ticket).await {
        Ok(Some(result)) => answer(&ingress, &ticket, &result).await,
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
