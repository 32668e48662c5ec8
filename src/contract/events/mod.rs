//! The versioned event types that travel through NATS (see `nats/README.md`).
//!
//! Every payload is JSON with a `v` field. Readers accept the versions they know and refuse the
//! rest with a clear error, so a newer writer never corrupts an older reader's state. Secrets
//! never travel in plaintext: the login code and the session_key are sealed under the master key
//! (see [`crate::crypto::sealing`]). Each type and version has a JSON Schema made from these
//! types ([`schema`]), committed under `nats/schemas/`.

mod calls;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use calls::{
    CALL_ANSWERED_V1, CALL_REQUESTED_V1, CallAnswered, CallKind, CallOutcome, CallRequested,
    SESSION_KEY_RESET, SESSION_KEY_RESET_V1, SessionKeyReset,
};

use super::ids::{AppId, CodeKey, LoginId};
use crate::crypto::{Keyring, SealError, SealFormat};

pub const LOGIN_REQUESTED_V1: u32 = 1;
/// A request that exchanges something other than a login code (a phone code: [`PhoneExchange`]).
/// Readers of v1 only park it: they would send it to the wrong API.
pub const LOGIN_REQUESTED_V2: u32 = 2;
pub const LOGIN_RESULT_V1: u32 = 1;
/// A result with an outcome a v1 reader does not know ([`LoginOutcome::Phone`]).
pub const LOGIN_RESULT_V2: u32 = 2;
pub const UNIONID_LEARNED_V1: u32 = 1;
/// The `event` of a [`UnionidLearned`]. A [`LoginResult`] carries no `event` (the first format
/// of the results stream); every later kind of event on it names itself.
pub const UNIONID_LEARNED: &str = "unionid_learned";

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("event is not valid JSON of the expected shape: {0}")]
    Malformed(String),
    #[error("event version {0} is not supported by this build")]
    UnsupportedVersion(u32),
    #[error("event kind {0:?} is not known to this build")]
    UnknownKind(String),
}

/// Where and how the JSON is wrong, never the values in it (a reason is logged and kept with
/// a parked copy; serde's own message quotes what it found: an openid, say).
fn malformed(e: &serde_json::Error) -> EventError {
    let message = e.to_string();
    // "missing field `openid` at line 1 column 9" names a field of ours, not a value.
    if message.starts_with("missing field") {
        return EventError::Malformed(message);
    }
    EventError::Malformed(format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    ))
}

impl EventError {
    /// Whether a newer build may read it: a reader parks such an event for after its upgrade.
    pub fn is_from_a_newer_writer(&self) -> bool {
        matches!(
            self,
            EventError::UnsupportedVersion(_) | EventError::UnknownKind(_)
        )
    }

    /// Why a reader parks the event, in the words `wxlogin parked list` shows.
    pub fn parking_reason(&self) -> String {
        if self.is_from_a_newer_writer() {
            format!("written by a newer wxlogin: {self}")
        } else {
            format!("unreadable: {self}")
        }
    }
}

/// Published by the ingress on `{prefix}.codes.{appid}`: one login code to exchange.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
pub struct LoginRequested {
    pub v: u32,
    pub login_id: LoginId,
    pub appid: AppId,
    /// The `wx.login()` code, sealed: `v2` texts bound to this login and code key
    /// ([`LoginRequested::code_aad`]), so a sealed code cannot be replayed under another code
    /// key (past the ledger) or login; `v1` texts, of the first format, to the appid alone.
    pub code_sealed: String,
    /// Hash of (appid, code): the key of the code ledger and the de-duplication id.
    pub code_key: CodeKey,
    /// When the ingress received the code; it may not be sent upstream after
    /// `received_at_ms + code_ttl`.
    pub received_at_ms: i64,
    /// Set (and `v` = 2) when the code is a phone code of this session's user, not a login code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<PhoneExchange>,
}

/// What a phone-code exchange needs beyond a login's: whose number it is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
pub struct PhoneExchange {
    /// The session's user: WeChat checks that the code is theirs.
    pub openid: String,
    /// The session (its login) that submitted the code.
    pub session: LoginId,
}

impl LoginRequested {
    /// The associated data of a code sealed in `format` for this login.
    pub fn code_aad(&self, format: SealFormat) -> Vec<u8> {
        match format {
            SealFormat::V1 => self.appid.as_bytes().to_vec(),
            SealFormat::V2 => format!(
                "wxlogin-code-v2\n{}\n{}\n{}",
                self.appid, self.code_key, self.login_id
            )
            .into_bytes(),
        }
    }

    /// Seals `code` into this event, in the ring's format.
    pub fn seal_code(&mut self, keyring: &Keyring, code: &str) {
        self.code_sealed = keyring.seal_str(code, &self.code_aad(keyring.writes()));
    }

    /// Opens the code, under the associated data of the format it was sealed in. `v1` codes
    /// are opened in every mode: they come from ingresses not yet writing `v2` during an
    /// upgrade, and one replayed later is a code WeChat expired after 5 minutes.
    pub fn open_code(&self, keyring: &Keyring) -> Result<String, SealError> {
        let format = SealFormat::of(&self.code_sealed).ok_or(SealError::Malformed)?;
        keyring.open_string(&self.code_sealed, &self.code_aad(format))
    }
}

/// Why a login failed. The errcode tells the client; the reason tells operators.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// WeChat rejected the code or the user (40029, 40163, 40226, 41008).
    Rejected,
    /// Our appid/secret/IP is wrong (40013, 40125, 41002, 41004, 40164, 40243).
    Misconfigured,
    /// WeChat kept failing (or limiting) until the code was too old to send.
    Expired,
    /// An errcode we do not know.
    Unexpected,
    /// The code was exchanged before (a later reuse): 40163 without asking WeChat.
    AlreadyUsed,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum LoginOutcome {
    Success {
        openid: String,
        unionid: Option<String>,
        /// Sealed under the master key (AAD: `appid:openid`).
        session_key_sealed: String,
    },
    Failure {
        errcode: i64,
        reason: FailureReason,
    },
    /// A phone code exchanged (results of `v` 2 only).
    Phone {
        openid: String,
        /// [`PhoneNumber`] as JSON, sealed (AAD: [`phone_aad`]).
        phone_sealed: String,
        /// [`crate::crypto::LookupKey`] hash of the number ([`phone_hash`]): for indexes and
        /// lookups without the number.
        phone_hash: String,
    },
}

/// A user's phone number as WeChat gave it; travels and rests only sealed.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PhoneNumber {
    #[serde(rename = "phoneNumber")]
    pub phone_number: String,
    #[serde(rename = "purePhoneNumber")]
    pub pure_phone_number: String,
    /// Always a string, whether WeChat sent `"86"` or `86`.
    #[serde(rename = "countryCode")]
    pub country_code: String,
}

impl std::fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PhoneNumber(<redacted>)")
    }
}

/// The associated data of a sealed phone number: it opens only as this app's user's.
pub fn phone_aad(appid: &AppId, openid: &str) -> Vec<u8> {
    format!("wxlogin-phone-v1\n{appid}\n{openid}").into_bytes()
}

/// The lookup hash of a number: the same number of the same app hashes the same, whoever's.
pub fn phone_hash(key: &crate::crypto::LookupKey, appid: &AppId, phone: &PhoneNumber) -> String {
    key.hash(
        "wxlogin-phone-v1",
        &[appid, &phone.country_code, &phone.pure_phone_number],
    )
}

/// Published by a worker on `{prefix}.results.{appid}.{code hash}`, once per code (retained: the
/// code's final record, and what replays read) and sent to the ingress's reply subject.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
pub struct LoginResult {
    pub v: u32,
    pub login_id: LoginId,
    pub appid: AppId,
    pub code_key: CodeKey,
    pub received_at_ms: i64,
    pub finished_at_ms: i64,
    /// Upstream calls this worker made for the code.
    pub upstream_calls: u32,
    #[serde(flatten)]
    pub outcome: LoginOutcome,
    /// A [`Keyring::tag`] over everything above ([`LoginResult::tag_aad`]): who lacks the
    /// master key cannot make a result an ingress turns into a session, nor move one to another
    /// login or code. Absent in results of the first format (still read: replays, upserter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// Whether an ingress may act on a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Its tag verifies: a worker with the master key wrote it, for this login and code.
    Tagged,
    /// First format, no tag: trusted only while the fleet writes `v1` (old workers still run).
    Untagged,
    /// A tag that does not verify, or no tag where one is required: ignored.
    Forged,
}

impl LoginResult {
    /// Whether this result, a code's one result, may answer `login`: only the login that
    /// exchanged the code, or a duplicate submission that `joined` that exchange before it
    /// ended. Any other login presenting the code is a reuse (40163). The one rule behind "one
    /// code, one user": the worker applies it to redeliveries, the ingress to tickets and
    /// duplicates.
    pub fn answers(&self, login: &LoginId, joined: bool) -> bool {
        self.login_id == *login || joined
    }

    pub fn is_success(&self) -> bool {
        matches!(self.outcome, LoginOutcome::Success { .. })
    }

    /// What the tag covers: every field but the tag, as this build serializes them.
    fn tag_aad(&self) -> Vec<u8> {
        let untagged = LoginResult {
            tag: None,
            ..self.clone()
        };
        tag_aad(b"wxlogin-result-v1\n", &untagged)
    }

    /// This result, tagged under the ring's primary key.
    pub fn tagged(mut self, keyring: &Keyring) -> Self {
        self.tag = None;
        self.tag = Some(keyring.tag(&self.tag_aad()));
        self
    }

    /// Whether an ingress may act on this result (see [`Trust`]).
    pub fn trust(&self, keyring: &Keyring) -> Trust {
        match &self.tag {
            Some(tag) if keyring.verify_tag(tag, &self.tag_aad()).is_ok() => Trust::Tagged,
            None if keyring.writes() == SealFormat::V1 => Trust::Untagged,
            _ => Trust::Forged,
        }
    }
}

/// Published by the ingress on `{prefix}.results.{appid}.unionid.{login id}` when `/v1/decrypt`
/// reads a unionId for a session that had none: the upserter sets it on the user's row,
/// whichever of this and the login's own result it applies first (so a replay rebuilds it too).
/// It carries the session's login and sealed key, so that it can make the row if the login's
/// result has not been applied yet; a login's own key always wins over it (see
/// [`crate::upsert::users`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
pub struct UnionidLearned {
    pub v: u32,
    /// Always [`UNIONID_LEARNED`].
    pub event: String,
    /// The login whose session decrypted the data.
    pub login_id: LoginId,
    pub appid: AppId,
    pub openid: String,
    pub unionid: String,
    /// That login's session_key, sealed as in its result (AAD: `appid:openid`).
    pub session_key_sealed: String,
    pub learned_at_ms: i64,
}

/// An event of the results stream, as the upserter and replays read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultEvent {
    Login(LoginResult),
    Unionid(UnionidLearned),
    KeyReset(SessionKeyReset),
}

impl ResultEvent {
    pub fn decode(bytes: &[u8]) -> Result<Self, EventError> {
        let versioned: Versioned = serde_json::from_slice(bytes).map_err(|e| malformed(&e))?;
        match versioned.event.as_deref() {
            None => LoginResult::decode(bytes).map(ResultEvent::Login),
            Some(UNIONID_LEARNED) => decode(bytes, UNIONID_LEARNED_V1).map(ResultEvent::Unionid),
            Some(SESSION_KEY_RESET) => SessionKeyReset::decode(bytes).map(ResultEvent::KeyReset),
            Some(other) => Err(EventError::UnknownKind(other.to_owned())),
        }
    }
}

#[derive(Deserialize)]
struct Versioned {
    v: u32,
    #[serde(default)]
    event: Option<String>,
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], known: u32) -> Result<T, EventError> {
    let versioned: Versioned = serde_json::from_slice(bytes).map_err(|e| malformed(&e))?;
    if versioned.v != known {
        return Err(EventError::UnsupportedVersion(versioned.v));
    }
    serde_json::from_slice(bytes).map_err(|e| malformed(&e))
}

/// Reads `T` of version `v1` or `v2`; `fits` says whether what was read matches its version
/// (a v1 event has no v2 field, a v2 event has one).
fn decode_v1_or_v2<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    fits: impl Fn(&T, u32) -> bool,
) -> Result<T, EventError> {
    let versioned: Versioned = serde_json::from_slice(bytes).map_err(|e| malformed(&e))?;
    if !matches!(versioned.v, 1 | 2) {
        return Err(EventError::UnsupportedVersion(versioned.v));
    }
    let event: T = serde_json::from_slice(bytes).map_err(|e| malformed(&e))?;
    if !fits(&event, versioned.v) {
        return Err(EventError::Malformed(format!(
            "fields that do not belong to version {}",
            versioned.v
        )));
    }
    Ok(event)
}

impl LoginRequested {
    pub fn decode(bytes: &[u8]) -> Result<Self, EventError> {
        decode_v1_or_v2(bytes, |r: &LoginRequested, v| {
            r.phone.is_some() == (v == LOGIN_REQUESTED_V2)
        })
    }
}

impl LoginResult {
    pub fn decode(bytes: &[u8]) -> Result<Self, EventError> {
        decode_v1_or_v2(bytes, |r: &LoginResult, v| {
            matches!(r.outcome, LoginOutcome::Phone { .. }) == (v == LOGIN_RESULT_V2)
        })
    }
}

/// What a tag over an event covers: a label naming its kind, then the event (its tag left out)
/// as this build serializes it.
fn tag_aad<T: Serialize>(label: &[u8], untagged: &T) -> Vec<u8> {
    let mut aad = label.to_vec();
    aad.extend_from_slice(&encode(untagged));
    aad
}

pub fn encode<T: Serialize>(event: &T) -> bytes::Bytes {
    // Serializing these plain structs cannot fail.
    serde_json::to_vec(event)
        .expect("events serialize to JSON")
        .into()
}

pub mod schema;

#[cfg(test)]
mod tests;
