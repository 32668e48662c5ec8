//! Events through JSON: round trips, versions, kinds, malformed input described without its
//! values, result tags and bound codes.

use super::*;

fn result() -> LoginResult {
    LoginResult {
        v: LOGIN_RESULT_V1,
        login_id: "l1".into(),
        appid: "wx0123456789abcdef".into(),
        code_key: "k".into(),
        received_at_ms: 1,
        finished_at_ms: 2,
        upstream_calls: 1,
        outcome: LoginOutcome::Failure {
            errcode: 40029,
            reason: FailureReason::Rejected,
        },
        tag: None,
    }
}

fn ring() -> Keyring {
    Keyring::new(crate::crypto::MasterKey::generate(), vec![])
}

#[test]
fn a_tagged_result_is_trusted_only_unchanged_and_under_the_key() {
    let ring = ring();
    let tagged = result().tagged(&ring);
    assert_eq!(tagged.trust(&ring), Trust::Tagged);
    let decoded = LoginResult::decode(&encode(&tagged)).unwrap();
    assert_eq!(decoded.trust(&ring), Trust::Tagged);
    let mut moved = tagged.clone();
    moved.login_id = "l2".into();
    assert_eq!(moved.trust(&ring), Trust::Forged);
    let mut moved = tagged.clone();
    moved.code_key = "k2".into();
    assert_eq!(moved.trust(&ring), Trust::Forged);
    let mut changed = tagged.clone();
    changed.outcome = LoginOutcome::Success {
        openid: "oVictim".into(),
        unionid: None,
        session_key_sealed: "s".into(),
    };
    assert_eq!(changed.trust(&ring), Trust::Forged);
    assert_eq!(tagged.trust(&self::ring()), Trust::Forged);
}

#[test]
fn an_untagged_result_of_the_first_format_is_read_but_trusted_only_in_v1_mode() {
    let first_format = br#"{"v":1,"login_id":"l1","appid":"wx0123456789abcdef","code_key":"k","received_at_ms":1,"finished_at_ms":2,"upstream_calls":1,"outcome":"failure","errcode":40029,"reason":"rejected"}"#;
    let read = LoginResult::decode(first_format).unwrap();
    assert_eq!(read, result());
    assert_eq!(read.trust(&ring()), Trust::Forged);
    assert_eq!(read.trust(&ring().writing(SealFormat::V1)), Trust::Untagged);
    // Readers of the first format ignore the tag (serde skips unknown fields next to
    // the flattened outcome): the shape they decode.
    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct FirstFormatReader {
        v: u32,
        login_id: String,
        #[serde(flatten)]
        outcome: LoginOutcome,
    }
    let tagged = encode(&result().tagged(&ring()));
    assert!(serde_json::from_slice::<FirstFormatReader>(&tagged).is_ok());
}

#[test]
fn a_code_sealed_for_one_login_and_code_key_opens_for_no_other() {
    let ring = ring();
    let mut req = LoginRequested {
        v: LOGIN_REQUESTED_V1,
        login_id: "l1".into(),
        appid: "wx0123456789abcdef".into(),
        code_sealed: String::new(),
        code_key: "k1".into(),
        received_at_ms: 1,
        phone: None,
    };
    req.seal_code(&ring, "the-code");
    assert!(req.code_sealed.starts_with("v2."));
    assert_eq!(req.open_code(&ring).unwrap(), "the-code");
    let replayed = LoginRequested {
        code_key: "k2".into(),
        ..req.clone()
    };
    assert_eq!(replayed.open_code(&ring), Err(SealError::Invalid));
    let other_login = LoginRequested {
        login_id: "l2".into(),
        ..req.clone()
    };
    assert_eq!(other_login.open_code(&ring), Err(SealError::Invalid));
    // The first format (what old ingresses publish) still opens, under the appid.
    let old = LoginRequested {
        code_sealed: ring.seal_as(SealFormat::V1, b"old-code", req.appid.as_bytes()),
        ..req
    };
    assert_eq!(old.open_code(&ring).unwrap(), "old-code");
}

#[test]
fn a_result_round_trips_through_json() {
    let r = result();
    assert_eq!(LoginResult::decode(&encode(&r)).unwrap(), r);
}

#[test]
fn an_unknown_version_is_refused_by_name() {
    let mut r = result();
    r.v = 99;
    let err = LoginResult::decode(&encode(&r)).unwrap_err();
    assert!(matches!(err, EventError::UnsupportedVersion(99)));
}

#[test]
fn the_results_stream_tells_its_kinds_of_event_apart() {
    let login = result();
    assert_eq!(
        ResultEvent::decode(&encode(&login)).unwrap(),
        ResultEvent::Login(login)
    );
    let learned = UnionidLearned {
        v: UNIONID_LEARNED_V1,
        event: UNIONID_LEARNED.into(),
        login_id: "l1".into(),
        appid: "wx0123456789abcdef".into(),
        openid: "o".into(),
        unionid: "u".into(),
        session_key_sealed: "s".into(),
        learned_at_ms: 3,
    };
    assert_eq!(
        ResultEvent::decode(&encode(&learned)).unwrap(),
        ResultEvent::Unionid(learned)
    );
    let newer = ResultEvent::decode(br#"{"v":1,"event":"phone_learned"}"#).unwrap_err();
    assert!(newer.is_from_a_newer_writer(), "{newer}");
    let newer = ResultEvent::decode(br#"{"v":2,"event":"unionid_learned"}"#).unwrap_err();
    assert!(newer.is_from_a_newer_writer(), "{newer}");
    assert!(
        !ResultEvent::decode(b"{}")
            .unwrap_err()
            .is_from_a_newer_writer()
    );
}

#[test]
fn a_malformed_event_is_described_without_its_values() {
    let err = LoginResult::decode(br#"{"v":1,"login_id":"l","appid":"wx0123456789abcdef","code_key":"k","received_at_ms":"o-secretish","finished_at_ms":2,"upstream_calls":1,"outcome":"success","openid":"o","unionid":null,"session_key_sealed":"s"}"#).unwrap_err().to_string();
    assert!(!err.contains("o-secretish"), "{err}");
    assert!(err.contains("line 1"), "{err}");
    let missing = LoginResult::decode(br#"{"v":1}"#).unwrap_err().to_string();
    assert!(missing.contains("missing field"), "{missing}");
}

#[test]
fn garbage_is_malformed() {
    assert!(matches!(
        LoginResult::decode(b"{\"v\":1"),
        Err(EventError::Malformed(_))
    ));
    assert!(matches!(
        LoginRequested::decode(b"[]"),
        Err(EventError::Malformed(_))
    ));
}

fn phone_request() -> LoginRequested {
    LoginRequested {
        v: LOGIN_REQUESTED_V2,
        login_id: "p1".into(),
        appid: "wx0123456789abcdef".into(),
        code_sealed: "sealed".into(),
        code_key: "k1".into(),
        received_at_ms: 1,
        phone: Some(PhoneExchange {
            openid: "o".into(),
            session: "l1".into(),
        }),
    }
}

#[test]
fn a_phone_request_is_version_2_and_readers_of_the_first_format_park_it() {
    let req = phone_request();
    let bytes = encode(&req);
    assert_eq!(LoginRequested::decode(&bytes).unwrap(), req);
    // What workers before phone numbers ran: `decode(bytes, LOGIN_REQUESTED_V1)`. They park it
    // as a newer writer's instead of sending a phone code to code2Session.
    let old = decode::<LoginRequested>(&bytes, LOGIN_REQUESTED_V1).unwrap_err();
    assert!(old.is_from_a_newer_writer(), "{old}");
    // A version that does not match its fields is refused, either way round.
    let v1_with_phone = encode(&LoginRequested {
        v: 1,
        ..req.clone()
    });
    assert!(LoginRequested::decode(&v1_with_phone).is_err());
    let v2_without = encode(&LoginRequested { phone: None, ..req });
    assert!(LoginRequested::decode(&v2_without).is_err());
}

#[test]
fn a_phone_result_is_version_2_and_upserters_of_the_first_format_park_it() {
    let result = LoginResult {
        v: LOGIN_RESULT_V2,
        login_id: "p1".into(),
        appid: "wx0123456789abcdef".into(),
        code_key: "k1".into(),
        received_at_ms: 1,
        finished_at_ms: 2,
        upstream_calls: 1,
        outcome: LoginOutcome::Phone {
            openid: "o".into(),
            phone_sealed: "sealed".into(),
            phone_hash: "h".into(),
        },
        tag: None,
    };
    let bytes = encode(&result);
    assert_eq!(
        ResultEvent::decode(&bytes).unwrap(),
        ResultEvent::Login(result.clone())
    );
    let old = decode::<LoginResult>(&bytes, LOGIN_RESULT_V1).unwrap_err();
    assert!(old.is_from_a_newer_writer(), "{old}");
    let v1_phone = encode(&LoginResult { v: 1, ..result });
    assert!(LoginResult::decode(&v1_phone).is_err());
}

#[test]
fn a_phone_number_shows_nothing_in_debug_and_its_hash_depends_on_the_number_only() {
    let n = PhoneNumber {
        phone_number: "+8613800000000".into(),
        pure_phone_number: "13800000000".into(),
        country_code: "86".into(),
    };
    assert!(!format!("{n:?}").contains("138"));
    let key = crate::crypto::LookupKey::derived_from(&crate::crypto::MasterKey::generate());
    let appid = AppId::from("wx0123456789abcdef");
    let same = PhoneNumber {
        phone_number: "13800000000".into(),
        ..n.clone()
    };
    assert_eq!(
        phone_hash(&key, &appid, &n),
        phone_hash(&key, &appid, &same)
    );
    let other = PhoneNumber {
        pure_phone_number: "13800000001".into(),
        ..n.clone()
    };
    assert_ne!(
        phone_hash(&key, &appid, &n),
        phone_hash(&key, &appid, &other)
    );
}
