//! Both claim formats read each other.
use super::*;

/// The first format, as workers deployed before this one read and write it.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "state", rename_all = "snake_case")]
enum FirstFormat {
    Claimed { login_id: String, at_ms: i64 },
}

#[test]
fn a_first_format_worker_reads_an_intent_as_the_holders_claim_of_the_same_age() {
    let held = ClaimRecord {
        takeover_by: Some("step-b".into()),
        ..claim_record(&"l-1".into(), "step-a", 1_000)
    };
    let bytes = encode(&Stored::Claimed(held.clone()));
    let old: FirstFormat = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        old,
        FirstFormat::Claimed {
            login_id: "l-1".into(),
            at_ms: held.at_ms
        }
    );
}

#[test]
fn a_first_format_claim_reads_as_a_claim_with_no_known_holder() {
    let old = serde_json::to_vec(&FirstFormat::Claimed {
        login_id: "l-1".into(),
        at_ms: 7,
    })
    .unwrap();
    let Stored::Claimed(record) = serde_json::from_slice(&old).unwrap();
    assert_eq!(record.login_id, "l-1");
    assert_eq!((record.holder, record.takeover_by), (None, None));
}
