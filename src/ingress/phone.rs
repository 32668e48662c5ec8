//! `POST /v1/phone` and `GET /v1/phone/{ticket}`: a user's phone number from the phone code of
//! `getPhoneNumber` (`bindgetphonenumber`'s `detail.code`), exchanged through the pipeline like a
//! login code — the codes stream, a worker's quota for the phone API, one result per code — at
//! most once across the fleet (each successful exchange is billed, and a reused code answers
//! 40029, so a blind retry would be money lost and a wrong answer).
//!
//! One answer per phone code and session: the request id is made of the session and the code
//! ([`LoginId::for_phone`]), so the same session submitting the same code again — a double tap,
//! a retry after a timeout, another ingress — gets the same answer from the code's one result,
//! and any other session gets `409 40163`. The number travels sealed (events, replies) and is
//! opened only here, for the session's owner.

use std::{sync::Arc, time::Duration};

use axum::{
    Json,
    body::Body,
    extract::{Path, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

use super::{
    Ingress, account,
    body::{self, Media},
    error::{self, ApiError},
    error_docs::{self, error_set},
    login::publish_acked,
    ticket::Accepted,
    validate,
    watch::{ResultWatch, code_result},
};
use crate::{
    contract::{
        AppId, CodeKey, LoginId,
        events::{
            self, FailureReason, LOGIN_REQUESTED_V2, LoginOutcome, LoginRequested, LoginResult,
            PhoneExchange, PhoneNumber, Trust,
        },
        headers,
    },
    sessions::SessionRecord,
};

/// Phone tickets are sealed under this: a login ticket never opens as one, nor the reverse.
const PHONE_TICKET_AAD: &[u8] = b"wxlogin-phone-ticket-v1";
/// `{"code": "…"}` and nothing much else.
const MAX_PHONE_BODY_BYTES: usize = 1024;

/// The body of `POST /v1/phone`.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"code": "e31968a7f94cc5ee25fafc2aef2773f0bb8c3937b22520eb8ee345274d00c144"}))]
pub(crate) struct PhoneBody {
    /// `detail.code` of the `bindgetphonenumber` event (not a `wx.login()` code).
    code: Option<serde_json::Value>,
}

/// The user's phone number, as WeChat gave it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"phoneNumber": "13800000000", "purePhoneNumber": "13800000000", "countryCode": "86"}))]
pub(crate) struct PhoneAnswer {
    /// With the country prefix for numbers outside mainland China.
    #[serde(rename = "phoneNumber")]
    phone_number: String,
    /// Never with a country prefix.
    #[serde(rename = "purePhoneNumber")]
    pure_phone_number: String,
    /// Always a string (`"86"`), whatever WeChat sent.
    #[serde(rename = "countryCode")]
    country_code: String,
}

/// What a phone 202's ticket carries (sealed).
#[derive(Debug, Serialize, Deserialize)]
struct PhoneTicket {
    request_id: LoginId,
    /// The session that asked: only it may follow the ticket.
    session: LoginId,
    appid: AppId,
    code_key: CodeKey,
    received_at_ms: i64,
}

/// Exchanges a phone code for the session user's phone number.
///
/// The code is exchanged with WeChat at most once; the same session sending it again gets the
/// same answer, any other session `409`. On `400 40029` or `503 -1`, the user taps the button
/// again (a new code); never resend a code that failed.
#[utoipa::path(
    post,
    path = "/v1/phone",
    tag = "session",
    operation_id = "phone",
    security(("bearer" = [])),
    request_body(content = PhoneBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The session user's phone number.", body = PhoneAnswer),
        (status = 202, description = "Not ready within `WXLOGIN_LOGIN_WAIT_MS`: poll `GET /v1/phone/{ticket}` after `retry_after_ms`.", body = Accepted),
        PhoneErrors,
    ),
)]
#[tracing::instrument(skip_all, fields(request_id))]
pub(super) async fn post_phone(
    State(ingress): State<Arc<Ingress>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    phone(&ingress, &headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn phone(ingress: &Ingress, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    // The token first: nobody without a session gets their body read.
    let (_, record) = account::session(ingress, headers).await?;
    let bytes = body::read_bytes(headers, body, MAX_PHONE_BODY_BYTES, &[Media::Json])
        .await?
        .1;
    let parsed: PhoneBody = serde_json::from_slice(&bytes).map_err(|_| error::UNREADABLE_BODY)?;
    let code = match parsed.code {
        None | Some(serde_json::Value::Null) => return Err(error::MISSING_CODE),
        Some(serde_json::Value::String(c)) if validate::is_plausible_code(&c) => c,
        Some(_) => return Err(error::INVALID_PHONE_CODE),
    };
    if !matches!(
        ingress.nats.connection_state(),
        async_nats::connection::State::Connected
    ) {
        return Err(error::UNAVAILABLE);
    }
    let code_key = CodeKey::of_phone(&record.appid, &code);
    let ticket = PhoneTicket {
        request_id: LoginId::for_phone(&record.login_id, &code_key),
        session: record.login_id.clone(),
        appid: record.appid.clone(),
        code_key,
        received_at_ms: ingress.clock.now_ms(),
    };
    tracing::Span::current().record("request_id", ticket.request_id.as_str());
    // The same session's request in flight here already (a double tap) keeps its waiter: this
    // one follows the code's result instead of taking the reply from it.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let waiting = match ingress.waiters.entry(ticket.request_id.clone()) {
        dashmap::Entry::Occupied(_) => None,
        dashmap::Entry::Vacant(v) => {
            v.insert(tx);
            Some(rx)
        }
    };
    let published = publish(ingress, &ticket, &record, &code).await;
    let Some(rx) = waiting else {
        published.map_err(|e| {
            tracing::warn!(error = %e, "cannot publish the phone code");
            error::UNAVAILABLE
        })?;
        return follow_result(ingress, &ticket, &record).await;
    };
    let duplicate = match published {
        Ok(duplicate) => duplicate,
        Err(e) => {
            ingress.waiters.remove(&ticket.request_id);
            crate::meter::nats_error("publish_phone_code");
            tracing::warn!(error = %e, "cannot publish the phone code");
            return Err(error::UNAVAILABLE);
        }
    };
    if duplicate {
        // Submitted before (by this session, or another): the code's one result decides.
        ingress.waiters.remove(&ticket.request_id);
        return follow_result(ingress, &ticket, &record).await;
    }
    match tokio::time::timeout(ingress.login_wait, rx).await {
        Ok(Ok(result)) => answer(ingress, &ticket, &record, &result),
        _ => {
            ingress.waiters.remove(&ticket.request_id);
            accepted(ingress, &ticket)
        }
    }
}

/// Submitted before (by this session, or another): the code's one result decides, now or
/// once it is stored (within the login wait; then a ticket).
async fn follow_result(
    ingress: &Ingress,
    ticket: &PhoneTicket,
    record: &SessionRecord,
) -> Result<Response, ApiError> {
    let (watch, stored) = ResultWatch::start(ingress, &ticket.appid, &ticket.code_key).await?;
    let result = match stored {
        Some(result) => Some(result),
        None => watch.wait(ingress.login_wait).await,
    };
    match result {
        Some(result) => answer(ingress, ticket, record, &result),
        None => accepted(ingress, ticket),
    }
}

/// Publishes the phone code; `Ok(true)` when JetStream says it was submitted before.
async fn publish(
    ingress: &Ingress,
    ticket: &PhoneTicket,
    record: &SessionRecord,
    code: &str,
) -> Result<bool, String> {
    let mut event = LoginRequested {
        v: LOGIN_REQUESTED_V2,
        login_id: ticket.request_id.clone(),
        appid: ticket.appid.clone(),
        code_sealed: String::new(),
        code_key: ticket.code_key.clone(),
        received_at_ms: ticket.received_at_ms,
        phone: Some(PhoneExchange {
            openid: record.openid.clone(),
            session: record.login_id.clone(),
        }),
    };
    event.seal_code(&ingress.keyring, code);
    let headers = headers::for_code(&event, &ingress.reply_subject);
    let subject = ingress.topology.code_subject(&ticket.appid);
    let ack = publish_acked(ingress, subject, headers, events::encode(&event)).await?;
    Ok(ack.duplicate)
}

/// Turns the code's result into the answer: the number only for the session whose request the
/// result is (a tagged result of this very code), opened here and nowhere else.
fn answer(
    ingress: &Ingress,
    ticket: &PhoneTicket,
    record: &SessionRecord,
    result: &LoginResult,
) -> Result<Response, ApiError> {
    if result.trust(&ingress.keyring) != Trust::Tagged
        || result.code_key != ticket.code_key
        || result.appid != ticket.appid
    {
        crate::meter::untrusted("result");
        tracing::warn!("a phone result that fails authentication, or is another code's: ignored");
        return Err(error::UNAVAILABLE);
    }
    if !result.answers(&ticket.request_id, false) {
        tracing::debug!("the phone code's result belongs to another session: a reuse");
        return Err(error::CODE_USED);
    }
    match &result.outcome {
        LoginOutcome::Phone {
            openid,
            phone_sealed,
            ..
        } if *openid == record.openid => {
            let opened = ingress
                .keyring
                .open_string(phone_sealed, &events::phone_aad(&result.appid, openid))
                .ok()
                .and_then(|json| serde_json::from_str::<PhoneNumber>(&json).ok());
            let Some(number) = opened else {
                tracing::error!("cannot open a phone result's number: master keys differ?");
                return Err(error::SERVER_MISCONFIGURED);
            };
            Ok(Json(PhoneAnswer {
                phone_number: number.phone_number,
                pure_phone_number: number.pure_phone_number,
                country_code: number.country_code,
            })
            .into_response())
        }
        LoginOutcome::Failure { errcode, reason } => Err(failure_answer(*errcode, *reason)),
        _ => {
            tracing::warn!("a phone request's result is no phone number of its user");
            Err(error::UPSTREAM_UNEXPECTED)
        }
    }
}

fn failure_answer(errcode: i64, reason: FailureReason) -> ApiError {
    match (reason, errcode) {
        (FailureReason::AlreadyUsed, _) => error::CODE_USED,
        (FailureReason::Rejected, 40013) => error::PHONE_CODE_OTHER_APP,
        (FailureReason::Rejected, _) => error::INVALID_PHONE_CODE,
        (FailureReason::Expired, _) => error::PHONE_CODE_SPENT,
        (FailureReason::Misconfigured, _) => error::SERVER_MISCONFIGURED,
        (FailureReason::Unexpected, _) => error::UPSTREAM_UNEXPECTED,
    }
}

fn accepted(ingress: &Ingress, ticket: &PhoneTicket) -> Result<Response, ApiError> {
    super::ticket::accepted_sealed(ingress, ticket, PHONE_TICKET_AAD)
}

/// Follows a phone `202`'s ticket, with the bearer token of the session that asked.
#[utoipa::path(
    get,
    path = "/v1/phone/{ticket}",
    tag = "session",
    operation_id = "phone_ticket",
    security(("bearer" = [])),
    params(("ticket" = String, Path, description = "The `ticket` of a `202` answer of `POST /v1/phone`.")),
    responses(
        (status = 200, description = "The session user's phone number.", body = PhoneAnswer),
        (status = 202, description = "Still not ready: poll again after `retry_after_ms`.", body = Accepted),
        PhoneErrors,
    ),
)]
#[tracing::instrument(skip_all)]
pub(super) async fn get_phone_ticket(
    State(ingress): State<Arc<Ingress>>,
    headers: HeaderMap,
    Path(sealed): Path<String>,
) -> Response {
    follow(&ingress, &headers, &sealed)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn follow(
    ingress: &Ingress,
    headers: &HeaderMap,
    sealed: &str,
) -> Result<Response, ApiError> {
    let (_, record) = account::session(ingress, headers).await?;
    let ticket = ingress
        .keyring
        .open(sealed, PHONE_TICKET_AAD)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<PhoneTicket>(&bytes).ok())
        // Another session's ticket is nobody's business here.
        .filter(|t| t.session == record.login_id)
        .ok_or(error::UNKNOWN_TICKET)?;
    let age = Duration::from_millis(
        ingress
            .clock
            .now_ms()
            .saturating_sub(ticket.received_at_ms)
            .max(0) as u64,
    );
    let t = &ingress.topology;
    if age > t.ledger_max_age() {
        return Err(error::UNKNOWN_TICKET);
    }
    match code_result(ingress, &ticket.appid, &ticket.code_key).await? {
        Some(result) => answer(ingress, &ticket, &record, &result),
        None if age > t.code_ttl + 2 * t.exchange_ack_wait => Err(error::PHONE_CODE_SPENT),
        None => accepted(ingress, &ticket),
    }
}

error_set! {
    /// What `POST /v1/phone` and its ticket can answer besides 200 and 202.
    PhoneErrors {
        MISSING_CODE: "`code` left out",
        INVALID_PHONE_CODE: "the phone code cannot be one (8–128 chars of `[0-9A-Za-z_-]`), or \
WeChat says it is invalid, expired or used: the user taps the button again",
        PHONE_CODE_OTHER_APP: "the phone code was issued to another mini program",
        UNREADABLE_BODY: "the body is not JSON of the expected shape",
        UNAUTHORIZED: error_docs::WHEN_UNAUTHORIZED,
        UNKNOWN_TICKET: "the ticket is unknown, another session's, or older than a code could \
still be exchanged",
        CODE_USED: "the phone code was already exchanged for another session",
        SERVER_MISCONFIGURED: "our WeChat configuration is wrong (secret, IP allow-list, the \
access_token refused); alert the operators",
        UPSTREAM_UNEXPECTED: error_docs::WHEN_UPSTREAM_UNEXPECTED,
        UNAVAILABLE: error_docs::WHEN_UNAVAILABLE,
        PHONE_CODE_SPENT: "WeChat did not answer in time and the code may have been spent: the \
user taps the button again",
        BODY_TOO_LARGE: "the body is larger than 1 KiB",
        UNSUPPORTED_MEDIA: "the content type is not `application/json`",
        TOO_MANY_ATTEMPTS: "this client address made too many attempts (`WXLOGIN_CLIENT_QUOTA`)",
        OVERLOADED: "this server has too many requests in flight; wait `Retry-After` seconds",
        REQUEST_TIMEOUT: error_docs::WHEN_REQUEST_TIMEOUT,
    }
}
