//! Every NATS header wxlogin writes or reads, by name, and the header maps of the three messages
//! a login publishes: its code, its result and the reply to the waiting ingress. Stages build
//! and read headers only through here.

use async_nats::HeaderMap;

use super::{
    events::{LoginRequested, LoginResult, UnionidLearned},
    ids::LoginId,
};

/// The core-NATS subject the ingress waits on for this login's result.
pub const REPLY: &str = "Wxlogin-Reply";
/// The login id, from the HTTP request to the worker, the result, the reply and the upsert.
pub const LOGIN_ID: &str = "Wxlogin-Login-Id";
/// JetStream's de-duplication id.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// JetStream's condition "publish only if the subject holds nothing yet" (value `0`).
pub const EXPECTED_LAST_SUBJECT_SEQ: &str = "Nats-Expected-Last-Subject-Sequence";
/// What a KV entry's message is (`DEL`, `PURGE`; absent: a put), as NATS KV writes it.
pub const KV_OPERATION: &str = "KV-Operation";
/// Set by the server on the marker it leaves when a KV entry ages out.
pub const MARKER_REASON: &str = "Nats-Marker-Reason";
/// On a parked copy: why the stage could not apply the event.
pub const PARKED_REASON: &str = "Wxlogin-Parked-Reason";
/// On a parked copy: the subject the event was read from.
pub const PARKED_FROM: &str = "Wxlogin-Parked-From";
/// On a parked copy: its stream sequence there.
pub const PARKED_FROM_SEQ: &str = "Wxlogin-Parked-From-Seq";

/// A code on `{P}.codes.{appid}`: de-duplicated by its key, naming the ingress that waits for
/// it and the login.
pub fn for_code(request: &LoginRequested, reply_subject: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(MSG_ID, request.code_key.as_str());
    headers.insert(REPLY, reply_subject);
    headers.insert(LOGIN_ID, request.login_id.as_str());
    headers
}

/// A code's result on its own subject, published only while that subject is empty: the
/// first result of a code is its only one.
pub fn for_result(result: &LoginResult) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(LOGIN_ID, result.login_id.as_str());
    headers.insert(EXPECTED_LAST_SUBJECT_SEQ, "0");
    headers
}

/// A unionid learnt by a decrypt: several decrypts of one session within the stream's
/// de-duplication window store one event.
pub fn for_unionid(event: &UnionidLearned) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(LOGIN_ID, event.login_id.as_str());
    headers.insert(MSG_ID, format!("unionid:{}", event.login_id).as_str());
    headers
}

/// A reset session_key: one event per reset call, however often its publish is retried.
pub fn for_key_reset(event: &crate::contract::events::SessionKeyReset) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(LOGIN_ID, event.call_id.as_str());
    headers.insert(MSG_ID, format!("reset:{}", event.call_id).as_str());
    headers
}

/// An event imported from a file (`wxlogin events import`), on `subject` (without the
/// prefix): stored only while its subject is empty, and once within the duplicate window.
pub fn for_import(subject: &str, login_id: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(login_id) = login_id {
        headers.insert(LOGIN_ID, login_id);
    }
    headers.insert(MSG_ID, format!("import:{subject}").as_str());
    headers.insert(EXPECTED_LAST_SUBJECT_SEQ, "0");
    headers
}

/// A parked copy: the original's headers (but for the conditions of its first publish), why,
/// and where from. A message parked twice (redelivered before its ack) is stored once.
pub fn for_parked(
    original: Option<&HeaderMap>,
    from_subject: &str,
    from_seq: u64,
    reason: &str,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, values) in original.into_iter().flat_map(|h| h.iter()) {
        let name: &str = name.as_ref();
        if [MSG_ID, EXPECTED_LAST_SUBJECT_SEQ, REPLY].contains(&name) {
            continue;
        }
        for value in values {
            headers.append(name, value.as_str());
        }
    }
    // A header value is one line.
    let reason: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(400)
        .collect();
    headers.insert(PARKED_REASON, reason.as_str());
    headers.insert(PARKED_FROM, from_subject);
    headers.insert(PARKED_FROM_SEQ, from_seq.to_string().as_str());
    headers.insert(MSG_ID, format!("parked:{from_subject}:{from_seq}").as_str());
    headers
}

/// The reply to the ingress waiting for `login_id`.
pub fn for_reply(login_id: &LoginId) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(LOGIN_ID, login_id.as_str());
    headers
}

/// The login id a message carries, if any.
pub fn login_id(headers: Option<&HeaderMap>) -> Option<&str> {
    Some(headers?.get(LOGIN_ID)?.as_str())
}

/// The reply subject of the ingress waiting for a code, if any.
pub fn reply_subject(headers: Option<&HeaderMap>) -> Option<&str> {
    Some(headers?.get(REPLY)?.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `nats/README.md` documents the headers for the `nats` CLI's users: a copy, kept whole.
    #[test]
    fn the_nats_readme_names_every_header_a_login_carries() {
        let readme = include_str!("../../nats/README.md");
        for name in [
            REPLY,
            LOGIN_ID,
            MSG_ID,
            EXPECTED_LAST_SUBJECT_SEQ,
            PARKED_REASON,
            PARKED_FROM,
            PARKED_FROM_SEQ,
        ] {
            assert!(readme.contains(&format!("`{name}`")), "{name}");
        }
    }
}
