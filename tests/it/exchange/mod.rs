//! The worker step, called directly: `Exchanger::handle(request) -> Outcome`, against a real
//! nats-server and the simulator.

mod pauses;
mod takeover;

use crate::helpers::{APPID, SECRET};
use natsd::NatsServer;
use secrecy::SecretString;
use wxlogin::{
    clock::Clock,
    contract::CodeKey,
    contract::events::{
        FailureReason, LOGIN_REQUESTED_V1, LOGIN_RESULT_V1, LoginOutcome, LoginRequested,
        LoginResult,
    },
    contract::ledger::{self, Ledger},
    contract::topology::Topology,
    exchange::{Exchanger, ExchangerParts, Incoming, Outcome},
    settings::{App, Settings},
    wechat::{ClientOptions, WechatClient},
};
use wxlogin_sim::{self as sim, SimApp, SimConfig};

struct Rig {
    exchanger: Exchanger,
    /// The ledger's bucket, to age entries out by hand.
    ledger_kv: async_nats::jetstream::kv::Store,
    control: sim::SimControl,
    _sim: sim::SimServer,
    /// The rig's own nats-server, for a test that reaches the buckets itself.
    nats: NatsServer,
}

async fn rig() -> Rig {
    rig_with_clock(Clock::system()).await
}

/// The rig, its worker going by `clock` (the machine's clock, or one that is off).
async fn rig_with_clock(clock: Clock) -> Rig {
    let nats = NatsServer::start_temporary().await.unwrap();
    let sim = sim::spawn(SimConfig {
        apps: vec![SimApp {
            appid: APPID.into(),
            secret: SECRET.into(),
            unionid: false,
        }],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let topology = Topology::from_settings(&Settings {
        nats_prefix: "step".into(),
        // Kept forever: a test may read a result long after it was recorded.
        results_max_age_secs: 0,
        ..Settings::default()
    });
    let handles = topology.ensure(&js).await.unwrap();
    let wechat = WechatClient::new(ClientOptions {
        base_url: sim.base_url(),
        // The simulator is on loopback; a short connect timeout leaves the steps a call window
        // within the short ack wait below (a call must be out well before a takeover).
        connect_timeout: std::time::Duration::from_millis(200),
        ..ClientOptions::default()
    })
    .unwrap();
    let apps = [App {
        appid: APPID.into(),
        secret: SecretString::from(SECRET.to_string()),
    }];
    let ledger_kv = handles.ledger.clone();
    let keyring = crate::helpers::test_keyring();
    let tokens = wxlogin::exchange::AccessTokens::new(
        handles.tokens.clone(),
        wechat.clone(),
        apps.iter()
            .map(|a| (a.appid.clone(), a.secret.clone()))
            .collect(),
        keyring.clone(),
        clock,
        std::time::Duration::from_secs(240),
    );
    let mut exchanger = Exchanger::new(ExchangerParts {
        wechat,
        apps: &apps,
        quota: "100/1s".parse().unwrap(),
        phone_quota: "100/1s".parse().unwrap(),
        tokens: std::sync::Arc::new(tokens),
        lookup: wxlogin::crypto::LookupKey::derived_from(&wxlogin::crypto::MasterKey::generate()),
        keyring,
        ledger: Ledger::new(
            handles.ledger,
            handles.results.clone(),
            js.clone(),
            &topology,
            Clock::system(),
        ),
        budget: wxlogin::exchange::Budget::new(handles.quota, clock),
        js,
        nats: client,
        topology,
    });
    // A short ack wait, so takeovers (which give the holder one full ack wait) take seconds.
    exchanger.stale_claim = std::time::Duration::from_millis(1500);
    Rig {
        exchanger,
        ledger_kv,
        control: sim.control(),
        _sim: sim,
        nats,
    }
}

fn request(rig: &Rig, login_id: &str, code: &str) -> Incoming {
    let mut request = LoginRequested {
        v: LOGIN_REQUESTED_V1,
        login_id: login_id.into(),
        appid: APPID.into(),
        code_sealed: String::new(),
        code_key: CodeKey::of(&APPID.into(), code),
        received_at_ms: Clock::system().now_ms(),
        phone: None,
    };
    // As the ingress seals it: bound to this login and code key.
    request.seal_code(&rig.exchanger.keyring, code);
    Incoming {
        request,
        reply: None,
    }
}

#[tokio::test]
async fn a_step_exchanges_once_and_a_redelivery_is_answered_from_the_ledger() {
    let rig = rig().await;
    let code = rig.control.mint_code(APPID, "lee").await.unwrap();
    let first = rig
        .exchanger
        .handle(&request(&rig, "l-1", &code))
        .await
        .unwrap();
    let Outcome::Exchanged(result) = first else {
        panic!("expected an exchange, got {first:?}")
    };
    assert!(matches!(
        result.outcome,
        LoginOutcome::Success { unionid: None, .. }
    ));
    assert_eq!(result.upstream_calls, 1);
    // The same message again (a redelivery): same result, WeChat not called.
    let again = rig
        .exchanger
        .handle(&request(&rig, "l-1", &code))
        .await
        .unwrap();
    assert_eq!(again, Outcome::AnsweredFromLedger(result));
    // Another login with the same code, even one stamped as received before the exchange
    // ended (clocks of other machines prove nothing): 40163, named by itself, WeChat not called.
    let mut other = request(&rig, "l-2", &code);
    other.request.received_at_ms -= 60_000;
    let other = rig.exchanger.handle(&other).await.unwrap();
    assert_already_used(&other, "l-2");
    assert_eq!(rig.control.stats().await.unwrap().calls, 1);
}

/// A worker on a machine whose clock runs ahead by more than a code's life takes every code
/// for expired: it fails the login (the client calls `wx.login()` again) and never sends the
/// code upstream, whatever its quota slot says.
#[tokio::test]
async fn a_worker_whose_clock_runs_a_code_ttl_ahead_never_sends_the_code_upstream() {
    let ttl = Settings::default().code_ttl();
    let rig = rig_with_clock(Clock::off_by_ms(ttl.as_millis() as i64 + 1_000)).await;
    let code = rig.control.mint_code(APPID, "kit").await.unwrap();
    let outcome = rig
        .exchanger
        .handle(&request(&rig, "l-clock", &code))
        .await
        .unwrap();
    let Outcome::Exchanged(result) = outcome else {
        panic!("expected a recorded result, got {outcome:?}")
    };
    assert_eq!(
        result.outcome,
        LoginOutcome::Failure {
            errcode: -1,
            reason: FailureReason::Expired
        }
    );
    assert_eq!(result.upstream_calls, 0);
    assert_eq!(rig.control.stats().await.unwrap().calls, 0);
}

#[tokio::test]
async fn a_code_replayed_after_its_claim_aged_out_is_refused_without_calling_wechat() {
    let rig = rig().await;
    let code = rig.control.mint_code(APPID, "ada").await.unwrap();
    let first = rig
        .exchanger
        .handle(&request(&rig, "l-1", &code))
        .await
        .unwrap();
    assert!(matches!(first, Outcome::Exchanged(ref r) if r.is_success()));
    // The claim's entry ages out (code TTL + ack wait + 60 s after its last write); the result
    // stays for days. Purging the entry stands in for the expiry.
    rig.ledger_kv
        .purge(CodeKey::of(&APPID.into(), &code))
        .await
        .unwrap();
    let replay = rig
        .exchanger
        .handle(&request(&rig, "l-attacker", &code))
        .await
        .unwrap();
    assert_already_used(&replay, "l-attacker");
    assert_eq!(rig.control.stats().await.unwrap().calls, 1);
}

#[tokio::test]
async fn a_result_recorded_first_by_another_login_is_never_handed_to_this_one() {
    let rig = rig().await;
    let code = rig.control.mint_code(APPID, "bea").await.unwrap();
    let req = request(&rig, "l-b", &code);
    // WeChat answers slowly; meanwhile a result of another login lands for the same code (a
    // step that held the code before ours, finishing late).
    rig.control
        .set_faults(&sim::Faults {
            latency_ms: 800,
            ..Default::default()
        })
        .await
        .unwrap();
    let ledger = rig.exchanger.ledger.clone();
    let theirs = success_of(&req, "l-a", "o-victim");
    let rival = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        ledger.record(&theirs).await.unwrap()
    };
    let (ours, recorded) = tokio::join!(rig.exchanger.handle(&req), rival);
    assert!(matches!(recorded, ledger::Recorded::Ours(_)));
    let ours = ours.unwrap();
    assert_already_used(&ours, "l-b");
    // The stream keeps the first result, and only that one.
    let kept = ledger
        .result(&APPID.into(), &req.request.code_key)
        .await
        .unwrap();
    assert_eq!(kept, Some(theirs));
}

#[tokio::test]
async fn a_session_key_leaves_the_step_only_sealed() {
    let rig = rig().await;
    let code = rig.control.mint_code(APPID, "noa").await.unwrap();
    let Outcome::Exchanged(result) = rig
        .exchanger
        .handle(&request(&rig, "l-4", &code))
        .await
        .unwrap()
    else {
        panic!()
    };
    let LoginOutcome::Success {
        openid,
        session_key_sealed,
        ..
    } = &result.outcome
    else {
        panic!()
    };
    let aad = format!("{APPID}:{openid}");
    let key = rig
        .exchanger
        .keyring
        .open_string(session_key_sealed, aad.as_bytes())
        .unwrap();
    assert_eq!(key.len(), 24, "a base64 session_key of 16 bytes");
    let event = String::from_utf8(wxlogin::contract::events::encode(&result).to_vec()).unwrap();
    assert!(!event.contains(&key));
    assert!(!event.contains(&code));
}

#[tokio::test]
async fn the_stream_refuses_a_second_result_for_a_code_and_keeps_the_first() {
    let rig = rig().await;
    let code = rig.control.mint_code(APPID, "pia").await.unwrap();
    let Outcome::Exchanged(first) = rig
        .exchanger
        .handle(&request(&rig, "l-6", &code))
        .await
        .unwrap()
    else {
        panic!()
    };
    let late = LoginResult {
        login_id: "l-7".into(),
        outcome: LoginOutcome::Failure {
            errcode: 40163,
            reason: wxlogin::contract::events::FailureReason::Rejected,
        },
        ..first.clone()
    };
    // The ledger reports the first; whether it is the caller's own is the caller's to judge
    // (a step of `l-7` answers its login 40163: see the test above).
    match rig.exchanger.ledger.record(&late).await.unwrap() {
        ledger::Recorded::Earlier(kept) => assert_eq!(*kept, first),
        other => panic!("the second result was kept: {other:?}"),
    }
    let kept = rig
        .exchanger
        .ledger
        .result(&APPID.into(), &first.code_key)
        .await
        .unwrap();
    assert_eq!(kept, Some(first));
}

/// A successful result of `login_id` for `req`'s code, as a step that called WeChat records it.
fn success_of(req: &Incoming, login_id: &str, openid: &str) -> LoginResult {
    LoginResult {
        v: LOGIN_RESULT_V1,
        login_id: login_id.into(),
        appid: APPID.into(),
        code_key: req.request.code_key.clone(),
        received_at_ms: req.request.received_at_ms,
        finished_at_ms: Clock::system().now_ms(),
        upstream_calls: 1,
        outcome: LoginOutcome::Success {
            openid: openid.into(),
            unionid: None,
            session_key_sealed: "sealed".into(),
        },
        tag: None,
    }
}

/// The step answered `login_id` itself with 40163 ("already used").
pub(crate) fn assert_already_used(outcome: &Outcome, login_id: &str) {
    let (Outcome::AnsweredFromLedger(r) | Outcome::Exchanged(r)) = outcome else {
        panic!("expected an answer, got {outcome:?}")
    };
    assert_eq!(r.login_id, login_id, "{r:?}");
    assert!(
        matches!(
            r.outcome,
            LoginOutcome::Failure {
                errcode: 40163,
                reason: FailureReason::AlreadyUsed
            }
        ),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_code_whose_result_this_worker_cannot_read_fails_its_login_without_calling_wechat() {
    let rig = rig().await;
    let code = rig.control.mint_code(APPID, "zed").await.unwrap();
    let req = request(&rig, "l-13", &code);
    // A result of a version this build does not know (a newer worker's, mid-rollout).
    let subject = rig
        .exchanger
        .topology
        .result_subject(&APPID.into(), &req.request.code_key);
    let ack = rig
        .exchanger
        .js
        .publish(subject, r#"{"v":99}"#.into())
        .await;
    ack.unwrap().await.unwrap();
    // Answered (not left to be redelivered for as long as the codes stream keeps it).
    let outcome = rig.exchanger.handle(&req).await.unwrap();
    let Outcome::AnsweredFromLedger(r) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(r.login_id, "l-13");
    assert!(
        matches!(
            r.outcome,
            LoginOutcome::Failure {
                errcode: -1,
                reason: FailureReason::Unexpected
            }
        ),
        "{r:?}"
    );
    assert_eq!(rig.control.stats().await.unwrap().calls, 0);
}
