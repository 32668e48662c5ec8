//! Sealing under a rotatable keyring: round trips, associated data, tampering, malformed
//! texts, unknown keys, rotation, both formats, tags, and that keys never show in `Debug`.

use super::*;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

#[test]
fn the_key_id_is_eight_hex_digits_of_the_domain_separated_hash() {
    let key = MasterKey::from_base64(&STANDARD.encode([0u8; 32])).unwrap();
    let digest = Sha256::new()
        .chain_update(b"wxlogin-master-key-id")
        .chain_update([0u8; 32])
        .finalize();
    assert_eq!(key.key_id(), hex::encode(digest)[..8]);
}

#[test]
fn debug_of_a_master_key_shows_only_its_id() {
    let key = MasterKey::generate();
    let shown = format!("{key:?}");
    assert!(shown.contains(&key.key_id()));
    assert!(!shown.contains(&key.to_base64()));
    assert!(!shown.contains("bytes"));
}

fn ring() -> (Keyring, MasterKey) {
    let key = MasterKey::generate();
    (Keyring::new(key.clone(), vec![]), key)
}

#[test]
fn a_sealed_secret_opens_with_the_same_aad() {
    let (ring, key) = ring();
    let sealed = ring.seal(b"session-key-bytes", b"wxapp:oUser1");
    let parts: Vec<&str> = sealed.split('.').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0], "v2");
    assert_eq!(parts[1], key.key_id());
    assert!(!parts[2].contains(['=', '+', '/']));
    assert_eq!(
        ring.open(&sealed, b"wxapp:oUser1").unwrap(),
        b"session-key-bytes"
    );
    assert_eq!(
        ring.open_string(&ring.seal_str("héllo", b""), b"").unwrap(),
        "héllo"
    );
}

#[test]
fn sealing_twice_gives_different_texts() {
    let (ring, _) = ring();
    assert_ne!(ring.seal(b"same", b"aad"), ring.seal(b"same", b"aad"));
}

#[test]
fn another_aad_does_not_open() {
    let (ring, _) = ring();
    let sealed = ring.seal(b"secret", b"wxapp:oUser1");
    assert_eq!(ring.open(&sealed, b"wxapp:oUser2"), Err(SealError::Invalid));
}

#[test]
fn a_tampered_sealed_text_does_not_open() {
    let (ring, _) = ring();
    let sealed = ring.seal(b"secret", b"");
    let body_start = sealed.rfind('.').unwrap() + 1;
    for pos in [body_start, body_start + 20, sealed.len() - 1] {
        let mut bytes = sealed.clone().into_bytes();
        bytes[pos] = if bytes[pos] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert!(
            matches!(
                ring.open(&tampered, b""),
                Err(SealError::Invalid | SealError::Malformed)
            ),
            "position {pos}"
        );
    }
}

#[test]
fn malformed_sealed_texts_are_reported_as_malformed() {
    let (ring, key) = ring();
    let kid = key.key_id();
    let sealed = ring.seal(b"secret", b"");
    let body = sealed.rsplit('.').next().unwrap();
    for bad in [
        String::new(),
        "v1".to_owned(),
        format!("v3.{kid}.{body}"),
        // Upper case (a key id of digits only is its own upper case: one run in ~40 drew one).
        format!("v1.A{}.{body}", &kid[1..]),
        format!("v1.{kid}"),
        format!("v1.{kid}.{body}.x"),
        format!("v1.{kid}.{}", &body[..20]),
        format!("v1.{kid}.{body}=="),
        format!("v1.{kid}.not base64"),
    ] {
        assert_eq!(ring.open(&bad, b""), Err(SealError::Malformed), "{bad:?}");
    }
}

#[test]
fn a_text_sealed_under_an_unknown_key_names_the_key() {
    let (ring, _) = ring();
    let (other, other_key) = self::ring();
    let sealed = other.seal(b"secret", b"");
    assert_eq!(
        ring.open(&sealed, b""),
        Err(SealError::UnknownKey {
            kid: other_key.key_id()
        })
    );
}

#[test]
fn after_rotation_old_texts_still_open_and_want_resealing() {
    let old = MasterKey::generate();
    let before = Keyring::new(old.clone(), vec![]);
    let sealed_before = before.seal(b"secret", b"aad");

    let new = MasterKey::generate();
    let after = Keyring::new(new.clone(), vec![old]);
    assert_eq!(after.open(&sealed_before, b"aad").unwrap(), b"secret");
    assert!(after.needs_reseal(&sealed_before));

    let sealed_after = after.seal(b"secret", b"aad");
    assert!(sealed_after.contains(&new.key_id()));
    assert!(!after.needs_reseal(&sealed_after));
    assert_eq!(after.primary_key_id(), new.key_id());
    // The old ring cannot read what the new primary sealed.
    assert!(matches!(
        before.open(&sealed_after, b"aad"),
        Err(SealError::UnknownKey { .. })
    ));
}

#[test]
fn a_master_key_round_trips_through_base64_and_keeps_its_id() {
    let key = MasterKey::generate();
    let again = MasterKey::from_base64(&format!("{}\n", key.to_base64())).unwrap();
    assert_eq!(again.key_id(), key.key_id());
    assert_eq!(key.key_id().len(), 8);
    assert_ne!(MasterKey::generate().key_id(), key.key_id());
}

#[test]
fn a_master_key_that_is_not_32_bytes_is_refused() {
    for bad in [
        STANDARD.encode([1u8; 31]),
        STANDARD.encode([1u8; 33]),
        "%%%".to_owned(),
        String::new(),
    ] {
        assert_eq!(
            MasterKey::from_base64(&bad).unwrap_err(),
            SealError::BadKey,
            "{bad:?}"
        );
    }
}

#[test]
fn debug_of_a_keyring_shows_key_ids_but_no_key() {
    let key = MasterKey::generate();
    let ring = Keyring::new(key.clone(), vec![MasterKey::generate()]);
    let shown = format!("{ring:?}");
    assert!(shown.contains(&key.key_id()));
    assert!(!shown.contains(&key.to_base64()));
}

/// Sealed by the first format's code (AES-256-GCM) under the all-zero key, AAD `wxapp:oUser1`.
const V1_UNDER_ZERO_KEY: &str =
    "v1.5be5cd1a.RwGNj5hpFSlod-f4-0S3TUJE3sGPJgVE9xlFVf9fC24FLzgbtH1DB5Ic9DvG";

fn zero_key() -> MasterKey {
    MasterKey::from_base64(&STANDARD.encode([0u8; 32])).unwrap()
}

#[test]
fn a_text_of_the_first_format_still_opens() {
    let ring = Keyring::new(zero_key(), vec![]);
    assert_eq!(
        ring.open(V1_UNDER_ZERO_KEY, b"wxapp:oUser1").unwrap(),
        b"session-key-bytes"
    );
    assert_eq!(
        ring.open(V1_UNDER_ZERO_KEY, b"wxapp:oUser2"),
        Err(SealError::Invalid)
    );
    // Read, and wanted again in the current format.
    assert!(ring.needs_reseal(V1_UNDER_ZERO_KEY));
    assert!(
        !ring
            .clone()
            .writing(SealFormat::V1)
            .needs_reseal(V1_UNDER_ZERO_KEY)
    );
}

#[test]
fn the_current_format_has_a_192_bit_nonce_and_the_first_still_seals_when_asked() {
    let (ring, _) = ring();
    let body = |sealed: &str| {
        URL_SAFE_NO_PAD
            .decode(sealed.rsplit('.').next().unwrap())
            .unwrap()
            .len()
    };
    let v2 = ring.seal(b"12345", b"aad");
    assert_eq!(body(&v2), 24 + 5 + 16);
    let v1_ring = ring.clone().writing(SealFormat::V1);
    let v1 = v1_ring.seal(b"12345", b"aad");
    assert!(v1.starts_with("v1."), "{v1}");
    assert_eq!(body(&v1), 12 + 5 + 16);
    assert_eq!(v1_ring.writes(), SealFormat::V1);
    // Every ring opens both, whichever it writes.
    for sealed in [&v1, &v2] {
        assert_eq!(ring.open(sealed, b"aad").unwrap(), b"12345");
        assert_eq!(v1_ring.open(sealed, b"aad").unwrap(), b"12345");
    }
}

#[test]
fn a_text_relabelled_with_the_other_format_does_not_open() {
    let (ring, _) = ring();
    let v2 = ring.seal(b"secret", b"aad");
    let as_v1 = v2.replacen("v2.", "v1.", 1);
    assert_eq!(ring.open(&as_v1, b"aad"), Err(SealError::Invalid));
    let v1 = ring.seal_as(
        SealFormat::V1,
        b"a longer secret than the nonce gap",
        b"aad",
    );
    let as_v2 = v1.replacen("v1.", "v2.", 1);
    assert_eq!(ring.open(&as_v2, b"aad"), Err(SealError::Invalid));
}

#[test]
fn the_two_formats_use_different_keys() {
    // The v2 key is derived (HKDF), never the configured bytes AES-GCM uses.
    let key = zero_key();
    assert_ne!(key.v2, key.bytes);
    assert_ne!(MasterKey::generate().v2, key.v2);
}

#[test]
fn a_tag_verifies_only_for_its_aad_and_only_with_the_key() {
    let (ring, _) = ring();
    let tag = ring.tag(b"result:l1:k1");
    assert!(tag.starts_with("v2."), "{tag}");
    assert_eq!(ring.verify_tag(&tag, b"result:l1:k1"), Ok(()));
    assert_eq!(
        ring.verify_tag(&tag, b"result:l2:k1"),
        Err(SealError::Invalid)
    );
    let (other, _) = self::ring();
    assert!(other.verify_tag(&tag, b"result:l1:k1").is_err());
    // A seal of something is not a tag, nor is a v1 text.
    let sealed = ring.seal(b"x", b"result:l1:k1");
    assert_eq!(
        ring.verify_tag(&sealed, b"result:l1:k1"),
        Err(SealError::Invalid)
    );
    let v1 = ring.seal_as(SealFormat::V1, b"", b"result:l1:k1");
    assert_eq!(
        ring.verify_tag(&v1, b"result:l1:k1"),
        Err(SealError::Malformed)
    );
    assert!(ring.verify_tag("", b"").is_err());
    // Even a ring writing the first format makes v2 tags (only v2 readers check them).
    assert!(
        ring.clone()
            .writing(SealFormat::V1)
            .tag(b"a")
            .starts_with("v2.")
    );
}

#[test]
fn the_seal_format_setting_reads_lower_case_names() {
    #[derive(serde::Deserialize)]
    struct S {
        f: SealFormat,
    }
    let read = |t: &str| serde_json::from_str::<S>(t).map(|s| s.f);
    assert_eq!(read(r#"{"f":"v1"}"#).unwrap(), SealFormat::V1);
    assert_eq!(read(r#"{"f":"v2"}"#).unwrap(), SealFormat::V2);
    assert!(read(r#"{"f":"v3"}"#).is_err());
    assert_eq!(SealFormat::default(), SealFormat::V2);
    assert_eq!(SealFormat::of("v1.x.y"), Some(SealFormat::V1));
    assert_eq!(SealFormat::of("nope"), None);
}
