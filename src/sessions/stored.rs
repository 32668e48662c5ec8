//! How a session record rests in the bucket, and which stored records are believed.
//!
//! - Current format: `{"v":2,"sealed":"<seal of the record's JSON>"}`, sealed under the master
//!   key with the AAD `wxlogin-session-v2:<token hash>`: whoever writes to the bucket without
//!   the key cannot make a record that opens, nor move one to another token, nor change a field.
//! - First format: the record's JSON in clear (`"v":1`). Nothing authenticates it, so it is
//!   believed only (a) while the fleet still writes it (`seal_format = "v1"`, a rolling upgrade),
//!   or (b) at a bucket revision at or below `session_legacy_max_revision`, the bucket's last
//!   sequence recorded once by the operator at the upgrade: records written before it are
//!   today's sessions, anything in the first format written after it is a forgery. Such a
//!   record is sealed again when it is read.

use serde::{Deserialize, Serialize};

use super::{SessionError, SessionRecord};
use crate::crypto::{Keyring, SealFormat};

const RECORD_V2: u32 = 2;
const AAD_PREFIX: &str = "wxlogin-session-v2:";

/// What the bucket holds under a token's hash, as this build reads it.
pub(super) enum Stored {
    /// Sealed, and it opened: genuine.
    Sealed(SessionRecord),
    /// First format, in clear: see the module's top for when it is believed.
    Legacy(SessionRecord),
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    v: u32,
    sealed: String,
}

#[derive(Deserialize)]
struct Version {
    v: u32,
}

fn aad(token_hash: &str) -> Vec<u8> {
    format!("{AAD_PREFIX}{token_hash}").into_bytes()
}

/// The stored form of `record` under `token_hash`, in the format the ring writes.
pub(super) fn encode(keyring: &Keyring, token_hash: &str, record: &SessionRecord) -> bytes::Bytes {
    let json = serde_json::to_vec(record).expect("a session record serializes");
    let value = match keyring.writes() {
        SealFormat::V1 => json,
        SealFormat::V2 => serde_json::to_vec(&Envelope {
            v: RECORD_V2,
            sealed: keyring.seal(&json, &aad(token_hash)),
        })
        .expect("an envelope serializes"),
    };
    value.into()
}

/// Reads a stored value: `Forged` when it is sealed but does not open here (tampered, moved
/// from another token, or sealed under a key this ring lacks), or is no record at all (what
/// nobody with the key wrote: e.g. a JetStream API answer someone had the server store under
/// the key, see docs/security.md) — refused as no session, so its token's owner logs in again.
pub(super) fn decode(
    keyring: &Keyring,
    token_hash: &str,
    value: &[u8],
) -> Result<Stored, SessionError> {
    let version: Version = serde_json::from_slice(value).map_err(|_| SessionError::Forged)?;
    match version.v {
        RECORD_V2 => {
            let envelope: Envelope =
                serde_json::from_slice(value).map_err(|_| SessionError::Forged)?;
            let json = keyring
                .open(&envelope.sealed, &aad(token_hash))
                .map_err(|_| SessionError::Forged)?;
            let record = serde_json::from_slice(&json).map_err(|_| SessionError::Corrupt)?;
            Ok(Stored::Sealed(record))
        }
        1 => serde_json::from_slice(value)
            .map(Stored::Legacy)
            .map_err(|_| SessionError::Forged),
        _ => Err(SessionError::Forged),
    }
}

/// Whether a first-format record at `revision` is believed (see the module's top).
pub(super) fn legacy_believed(keyring: &Keyring, legacy_max_revision: u64, revision: u64) -> bool {
    keyring.writes() == SealFormat::V1 || revision <= legacy_max_revision
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    fn record() -> SessionRecord {
        SessionRecord {
            v: 1,
            appid: "wx0123456789abcdef".into(),
            openid: "oUser".into(),
            unionid: None,
            session_key_sealed: "s".into(),
            login_id: "l1".into(),
            created_at_ms: 1,
            expires_at_ms: 2,
            key_stale: false,
        }
    }

    #[test]
    fn a_sealed_record_opens_only_under_its_own_token_hash_and_unchanged() {
        let ring = Keyring::new(MasterKey::generate(), vec![]);
        let stored = encode(&ring, "h1", &record());
        assert!(!String::from_utf8_lossy(&stored).contains("oUser"));
        assert!(matches!(decode(&ring, "h1", &stored), Ok(Stored::Sealed(r)) if r == record()));
        assert!(matches!(
            decode(&ring, "h2", &stored),
            Err(SessionError::Forged)
        ));
        let other = Keyring::new(MasterKey::generate(), vec![]);
        assert!(matches!(
            decode(&other, "h1", &stored),
            Err(SessionError::Forged)
        ));
    }

    #[test]
    fn the_first_format_is_written_in_v1_mode_and_believed_only_up_to_the_cutover() {
        let v1 = Keyring::new(MasterKey::generate(), vec![]).writing(SealFormat::V1);
        let stored = encode(&v1, "h1", &record());
        assert_eq!(
            serde_json::from_slice::<SessionRecord>(&stored).unwrap(),
            record()
        );
        assert!(matches!(decode(&v1, "h1", &stored), Ok(Stored::Legacy(_))));
        assert!(legacy_believed(&v1, 0, 99));
        let v2 = v1.writing(SealFormat::V2);
        assert!(legacy_believed(&v2, 10, 10));
        assert!(!legacy_believed(&v2, 10, 11));
        assert!(!legacy_believed(&v2, 0, 1));
    }
}
