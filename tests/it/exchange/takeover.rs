//! Claims and takeovers between worker steps, by the ledger's rules: a claim is taken over only
//! after an intent and one full ack wait without renewal, never while its holder renews, and a
//! step whose claim was taken over does not call WeChat.

use std::time::{Duration, Instant};

use super::{APPID, request, rig, success_of};
use wxlogin::{
    contract::ledger::{Claim, Renewal},
    exchange::Outcome,
};

#[tokio::test]
async fn a_claim_whose_holder_keeps_renewing_is_never_taken_over() {
    let rig = rig().await;
    let code = rig.control.mint_code(APPID, "mia").await.unwrap();
    let req = request(&rig, "l-3", &code);
    let key = req.request.code_key.clone();
    let ledger = rig.exchanger.ledger.clone();
    let Claim::Won { revision } = ledger
        .claim(&APPID.into(), &key, &"l-3".into(), "alive")
        .await
        .unwrap()
    else {
        panic!("the code should be free")
    };
    // The holder renews every third of an ack wait, as a live step does.
    let holder = {
        let (ledger, key) = (ledger.clone(), key.clone());
        let period = rig.exchanger.stale_claim / 3;
        tokio::spawn(async move {
            let mut revision = revision;
            loop {
                tokio::time::sleep(period).await;
                match ledger
                    .renew(&key, &"l-3".into(), "alive", revision)
                    .await
                    .unwrap()
                {
                    Renewal::Renewed(r) => revision = r,
                    Renewal::Lost => return false,
                }
            }
        })
    };
    let outcome = rig.exchanger.handle(&req).await.unwrap();
    assert_eq!(outcome, Outcome::InFlightElsewhere);
    assert!(!holder.is_finished(), "the live holder lost its claim");
    holder.abort();
    assert_eq!(rig.control.stats().await.unwrap().calls, 0);
}

#[tokio::test]
async fn a_claim_whose_holder_stopped_is_taken_over_after_a_full_ack_wait_and_exchanged_once() {
    let rig = rig().await;
    let code = rig.control.mint_code(APPID, "kai").await.unwrap();
    let req = request(&rig, "l-8", &code);
    // A step claimed the code and died: nothing renews it.
    let ledger = &rig.exchanger.ledger;
    let won = ledger
        .claim(&APPID.into(), &req.request.code_key, &"l-8".into(), "dead")
        .await;
    assert!(matches!(won.unwrap(), Claim::Won { .. }));
    let started = Instant::now();
    let outcome = rig.exchanger.handle(&req).await.unwrap();
    // The holder was given one full ack wait to renew before the takeover.
    assert!(started.elapsed() >= rig.exchanger.stale_claim);
    let Outcome::Exchanged(result) = outcome else {
        panic!("expected an exchange, got {outcome:?}")
    };
    assert!(result.is_success(), "{result:?}");
    assert_eq!(rig.control.stats().await.unwrap().calls, 1);
}

#[tokio::test]
async fn a_takeover_whose_holder_recorded_meanwhile_answers_from_its_result_without_calling() {
    let rig = rig().await;
    let code = rig.control.mint_code(APPID, "liv").await.unwrap();
    let req = request(&rig, "l-9", &code);
    let ledger = rig.exchanger.ledger.clone();
    let won = ledger
        .claim(&APPID.into(), &req.request.code_key, &"l-9".into(), "slow")
        .await;
    assert!(matches!(won.unwrap(), Claim::Won { .. }));
    // The holder has WeChat's answer in hand and records it while the taker waits.
    let recorded = success_of(&req, "l-9", "o-1");
    let holder = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        ledger.record(&recorded).await.unwrap()
    };
    let (outcome, _) = tokio::join!(rig.exchanger.handle(&req), holder);
    assert_eq!(outcome.unwrap(), Outcome::AnsweredFromLedger(recorded));
    assert_eq!(rig.control.stats().await.unwrap().calls, 0);
}

#[tokio::test]
async fn a_step_whose_claim_was_taken_over_while_it_waited_for_quota_does_not_call_wechat() {
    let rig = rig().await;
    let code = rig.control.mint_code(APPID, "ola").await.unwrap();
    let req = request(&rig, "l-5", &code);
    // Another worker holds the fleet's schedule for the next 3 s: our step waits for quota.
    rig.exchanger
        .budget
        .reserve(
            APPID,
            1,
            3_000_000,
            60_000_000,
            wxlogin::exchange::budget::Slack::NONE,
        )
        .await
        .unwrap();
    let ledger = rig.exchanger.ledger.clone();
    let key = req.request.code_key.clone();
    // Meanwhile the claim becomes another step's (as after a partition that kept our renewals
    // from NATS for an ack wait): written over our revision, whatever it is.
    let rival = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        // The step's keeper may renew between our read and our write: write until it lands.
        for _ in 0..50 {
            let (_, revision) = ledger.claim_with_revision(&key).await.unwrap().unwrap();
            let taken = ledger
                .take_over(&key, &"l-5".into(), "rival", revision)
                .await;
            if let Some(rev) = taken.unwrap() {
                return Some(rev);
            }
        }
        None
    };
    let (outcome, taken) = tokio::join!(rig.exchanger.handle(&req), rival);
    assert!(taken.is_some(), "the rival should have written the claim");
    assert_eq!(outcome.unwrap(), Outcome::InFlightElsewhere);
    assert_eq!(rig.control.stats().await.unwrap().calls, 0);
    // The rival's claim stands.
    let (record, _) = ledger.claim_with_revision(&key).await.unwrap().unwrap();
    assert_eq!(record.holder.as_deref(), Some("rival"));
}

#[tokio::test]
async fn an_answer_in_hand_is_recorded_however_long_the_results_stream_refuses_it_and_never_raced()
{
    let rig = rig().await;
    let code = rig.control.mint_code(APPID, "ivy").await.unwrap();
    let req = request(&rig, "l-10", &code);
    // One result in the stream first: a limit of 0 messages would mean "no limit".
    let warm = rig.control.mint_code(APPID, "warm").await.unwrap();
    let warmed = rig.exchanger.handle(&request(&rig, "l-warm", &warm)).await;
    assert!(matches!(warmed.unwrap(), Outcome::Exchanged(_)));
    // The results stream refuses new messages (a full disk, a lost quorum).
    let js = &rig.exchanger.js;
    let normal = crate::helpers::refuse_writes(js, &rig.exchanger.topology.results_stream()).await;
    let holder = rig.exchanger.handle(&req);
    // Meanwhile the same message is redelivered to another step (the holder's progress acks
    // were lost), when the holder's claim is two ack waits old and it has had WeChat's answer
    // for as long.
    let (ack_wait, outage) = (rig.exchanger.stale_claim, rig.exchanger.stale_claim * 5);
    let redelivery = async {
        tokio::time::sleep(2 * ack_wait).await;
        let outcome = rig.exchanger.handle(&req).await.unwrap();
        tokio::time::sleep(outage.saturating_sub(3 * ack_wait)).await;
        js.update_stream(normal).await.unwrap();
        outcome
    };
    let (held, redelivered) = tokio::join!(holder, redelivery);
    assert_eq!(redelivered, Outcome::InFlightElsewhere);
    let Outcome::Exchanged(result) = held.unwrap() else {
        panic!("the holder should have recorded its answer")
    };
    assert!(result.is_success(), "{result:?}");
    assert_eq!(rig.control.stats().await.unwrap().calls, 2, "one per code");
    let kept = rig
        .exchanger
        .ledger
        .result(&APPID.into(), &req.request.code_key)
        .await;
    assert_eq!(kept.unwrap(), Some(result));
}

#[tokio::test]
async fn another_logins_claim_is_never_taken_over_and_the_submission_is_refused_at_once() {
    let rig = rig().await;
    let code = rig.control.mint_code(APPID, "uma").await.unwrap();
    let req = request(&rig, "l-attacker", &code);
    let key = req.request.code_key.clone();
    let ledger = &rig.exchanger.ledger;
    // The victim's step claimed the code and stopped renewing (it died, or it is slow).
    let won = ledger
        .claim(&APPID.into(), &key, &"l-victim".into(), "victim-step")
        .await;
    assert!(matches!(won.unwrap(), Claim::Won { .. }));
    let started = Instant::now();
    let outcome = rig.exchanger.handle(&req).await.unwrap();
    assert!(started.elapsed() < rig.exchanger.stale_claim, "it waited");
    super::assert_already_used(&outcome, "l-attacker");
    // The victim's claim is as it was: no intent, same holder; WeChat never asked.
    let (record, _) = ledger.claim_with_revision(&key).await.unwrap().unwrap();
    assert_eq!(record.holder.as_deref(), Some("victim-step"));
    assert_eq!(record.takeover_by, None);
    assert_eq!(rig.control.stats().await.unwrap().calls, 0);
}

#[tokio::test]
async fn the_intent_of_a_taker_that_died_too_does_not_block_the_next_one() {
    let rig = rig().await;
    let code = rig.control.mint_code(APPID, "val").await.unwrap();
    let req = request(&rig, "l-11", &code);
    let key = req.request.code_key.clone();
    let ledger = &rig.exchanger.ledger;
    let Claim::Won { revision } = ledger
        .claim(&APPID.into(), &key, &"l-11".into(), "dead")
        .await
        .unwrap()
    else {
        panic!("the code should be free")
    };
    // A first taker wrote its intent, then died too.
    let (record, _) = ledger.claim_with_revision(&key).await.unwrap().unwrap();
    let intent = ledger.intend_takeover(&key, &record, revision, "taker-1");
    let intent = intent.await.unwrap().expect("the intent is written");
    let outcome = rig.exchanger.handle(&req).await.unwrap();
    assert!(
        matches!(outcome, Outcome::Exchanged(ref r) if r.is_success()),
        "{outcome:?}"
    );
    assert_eq!(rig.control.stats().await.unwrap().calls, 1);
    let (record, now) = ledger.claim_with_revision(&key).await.unwrap().unwrap();
    assert_ne!(record.holder.as_deref(), Some("dead"));
    assert_eq!(record.takeover_by, None);
    assert!(now > intent);
}

#[tokio::test]
async fn of_two_takers_at_once_the_first_to_intend_takes_over_and_the_other_backs_off() {
    let rig = rig().await;
    let code = rig.control.mint_code(APPID, "wes").await.unwrap();
    let req = request(&rig, "l-12", &code);
    let (appid, login_id) = (APPID.into(), "l-12".into());
    let won = rig
        .exchanger
        .ledger
        .claim(&appid, &req.request.code_key, &login_id, "dead");
    assert!(matches!(won.await.unwrap(), Claim::Won { .. }));
    // Two deliveries of the message reach steps at nearly the same time. Had the second
    // written its own intent over the first's, the first would fail and retry, and so on.
    let first = rig.exchanger.handle(&req);
    let second = async {
        // Once the first step's intent is in the ledger (however slow the machine).
        let ledger = &rig.exchanger.ledger;
        for _ in 0..200 {
            let held = ledger.claim_with_revision(&req.request.code_key).await;
            if held
                .unwrap()
                .is_some_and(|(record, _)| record.takeover_by.is_some())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        rig.exchanger.handle(&req).await
    };
    let (first, second) = tokio::join!(first, second);
    assert!(matches!(first.unwrap(), Outcome::Exchanged(ref r) if r.is_success()));
    assert_eq!(second.unwrap(), Outcome::InFlightElsewhere);
    assert_eq!(rig.control.stats().await.unwrap().calls, 1);
}
