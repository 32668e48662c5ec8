//! The worker step, called directly: `Exchanger::handle(request) -> Outcome`, against a real
//! nats-server and the simulator.

mod common;

use common::{APPID, SECRET};
use secrecy::SecretString;
use wxlogin::{
    events::{LOGIN_REQUESTED_V1, LoginOutcome, LoginRequested},
    exchange::{Exchanger, Incoming, Outcome},
    ledger::{self, Ledger},
    natsd::NatsServer,
    settings::App,
    sim::{self, SimApp, SimConfig},
    topology::Topology,
    wechat::{ClientOptions, WechatClient},
};

struct Rig {
    exchanger: Exchanger,
    control: sim::SimControl,
    _sim: sim::SimServer,
    _nats: NatsServer,
}

async fn rig() -> Rig {
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
    let topology = Topology {
        prefix: "step".into(),
        replicas: 1,
        code_ttl: std::time::Duration::from_secs(300),
        session_ttl: std::time::Duration::from_secs(3600),
        exchange_ack_wait: std::time::Duration::from_secs(30),
        results_max_age: std::time::Duration::ZERO,
    };
    let handles = topology.ensure(&js).await.unwrap();
    let wechat = WechatClient::new(ClientOptions {
        base_url: sim.base_url(),
        ..ClientOptions::default()
    })
    .unwrap();
    let apps = [App {
        appid: APPID.into(),
        secret: SecretString::from(SECRET.to_string()),
    }];
    let exchanger = Exchanger::new(
        wechat,
        &apps,
        "100/1s".parse().unwrap(),
        common::test_keyring(),
        Ledger::new(
            handles.ledger,
            handles.results.clone(),
            js.clone(),
            &topology,
        ),
        wxlogin::exchange::Budget::new(handles.quota),
        js,
        client,
        topology,
    );
    Rig {
        exchanger,
        control: sim.control(),
        _sim: sim,
        _nats: nats,
    }
}

fn request(rig: &Rig, login_id: &str, code: &str) -> Incoming {
    Incoming {
        request: LoginRequested {
            v: LOGIN_REQUESTED_V1,
            login_id: login_id.into(),
            appid: APPID.into(),
            code_sealed: rig.exchanger.keyring.seal_str(code, APPID.as_bytes()),
            code_key: ledger::code_key(APPID, code),
            received_at_ms: wxlogin::events::now_ms(),
        },
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
    // A later, different login with the same code: 40163 without calling WeChat. ("Later":
    // received after the first exchange finished; within the same millisecond it would count as
    // a concurrent duplicate and share the first's outcome.)
    let mut later = request(&rig, "l-2", &code);
    later.request.received_at_ms = result.finished_at_ms + 1;
    assert_eq!(again, Outcome::AnsweredFromLedger(result));
    let later = rig.exchanger.handle(&later).await.unwrap();
    let Outcome::AnsweredFromLedger(r) = later else {
        panic!("{later:?}")
    };
    assert!(matches!(
        r.outcome,
        LoginOutcome::Failure { errcode: 40163, .. }
    ));
    assert_eq!(rig.control.stats().await.unwrap().calls, 1);
}

#[tokio::test]
async fn a_fresh_claim_by_another_worker_is_left_alone() {
    let rig = rig().await;
    let code = rig.control.mint_code(APPID, "mia").await.unwrap();
    let req = request(&rig, "l-3", &code);
    rig.exchanger
        .ledger
        .claim(APPID, &req.request.code_key, "someone-else")
        .await
        .unwrap();
    let outcome = rig.exchanger.handle(&req).await.unwrap();
    assert_eq!(outcome, Outcome::InFlightElsewhere);
    assert_eq!(rig.control.stats().await.unwrap().calls, 0);
}

#[tokio::test]
async fn a_step_whose_claim_was_taken_over_while_it_waited_for_quota_does_not_call_wechat() {
    let mut rig = rig().await;
    rig.exchanger.stale_claim = std::time::Duration::from_millis(1500);
    let code = rig.control.mint_code(APPID, "ola").await.unwrap();
    let req = request(&rig, "l-5", &code);
    // Another worker holds the fleet's schedule for the next 3 s: our step waits for quota
    // long enough for its claim to look stale.
    rig.exchanger
        .budget
        .reserve(APPID, 1, 3_000_000)
        .await
        .unwrap();
    let ledger = rig.exchanger.ledger.clone();
    let code_key = req.request.code_key.clone();
    let rival = async {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let ledger::Claim::Taken { revision, .. } =
            ledger.claim(APPID, &code_key, "rival").await.unwrap()
        else {
            panic!("the step should hold the claim")
        };
        ledger
            .take_over(&code_key, "rival", revision)
            .await
            .unwrap()
    };
    let (outcome, taken) = tokio::join!(rig.exchanger.handle(&req), rival);
    assert!(taken.is_some(), "the rival should win the stale claim");
    assert_eq!(outcome.unwrap(), Outcome::InFlightElsewhere);
    assert_eq!(rig.control.stats().await.unwrap().calls, 0);
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
    let event = String::from_utf8(wxlogin::events::encode(&result).to_vec()).unwrap();
    assert!(!event.contains(&key));
    assert!(!event.contains(&code));
}

#[tokio::test]
async fn a_code_keeps_its_first_result_when_another_is_published_for_it() {
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
    // A second result for the same code (a taken-over worker finishing late): refused by the
    // stream, and the first is handed back.
    let late = wxlogin::events::LoginResult {
        login_id: "l-7".into(),
        outcome: LoginOutcome::Failure {
            errcode: 40163,
            reason: wxlogin::events::FailureReason::Rejected,
        },
        ..first.clone()
    };
    match rig.exchanger.ledger.record(&late).await.unwrap() {
        ledger::Recorded::Earlier(kept) => assert_eq!(*kept, first),
        other => panic!("the second result was kept: {other:?}"),
    }
    let entry = rig
        .exchanger
        .ledger
        .get(APPID, &first.code_key)
        .await
        .unwrap();
    assert_eq!(entry, Some(ledger::LedgerEntry::Done { result: first }));
}
