//! Each role's NATS user is refused what another role does, by the server itself: the test
//! connects with a role's seed and tries. A MAC over session records stops forgery by someone
//! without the master key; these permissions are what stop a role from putting an old record
//! back over a logout (rollback) or reading another's replies.

use serde_json::{Value, json};
use wxlogin::contract::access::Identity;

use super::spawn_secured;
use crate::helpers::{APPID, Db, TestApp, secured::next_refusal};

/// Publishes `subject` as `identity` and expects the server's refusal naming it.
async fn refused_publish(app: &TestApp, identity: Identity, subject: &str) {
    let secured = app.secured.as_ref().unwrap();
    let (client, mut errors) = secured.client(&app.settings, identity).await;
    client
        .publish(subject.to_string(), "x".into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    let refusal = next_refusal(&mut errors)
        .await
        .unwrap_or_else(|| panic!("{identity} may publish to {subject}"));
    assert!(
        refusal.to_lowercase().contains("permissions violation") && refusal.contains(subject),
        "{identity} → {subject}: {refusal}"
    );
}

/// Subscribes to `subject` as `identity` and expects the server's refusal.
async fn refused_subscribe(app: &TestApp, identity: Identity, subject: &str) {
    let secured = app.secured.as_ref().unwrap();
    let (client, mut errors) = secured.client(&app.settings, identity).await;
    let _sub = client.subscribe(subject.to_string()).await.unwrap();
    client.flush().await.unwrap();
    let refusal = next_refusal(&mut errors)
        .await
        .unwrap_or_else(|| panic!("{identity} may subscribe to {subject}"));
    assert!(
        refusal.to_lowercase().contains("permissions violation") && refusal.contains(subject),
        "{identity} ← {subject}: {refusal}"
    );
}

async fn login(app: &TestApp, user: &str) -> String {
    let code = app.mint(user).await;
    let r = app.post_login(json!({"appid": APPID, "code": code})).await;
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn an_ingress_user_cannot_take_codes_nor_forge_results_or_replies(db: Db) {
    let app = spawn_secured(db, |_| {}).await;
    let t = app.topology();
    let next = format!(
        "$JS.API.CONSUMER.MSG.NEXT.{}.{}",
        t.codes_stream(),
        t.exchange_consumer()
    );
    refused_publish(&app, Identity::Ingress, &next).await;
    let result = t.result_subject(&APPID.into(), &"0".repeat(64).as_str().into());
    refused_publish(&app, Identity::Ingress, &result).await;
    refused_publish(&app, Identity::Ingress, &t.reply_subject("someone")).await;
    let quota = format!("$KV.{}.{APPID}", t.quota_bucket());
    refused_publish(&app, Identity::Ingress, &quota).await;
    let worker_inbox = format!("{}.>", t.inbox_prefix(Identity::Worker));
    refused_subscribe(&app, Identity::Ingress, &worker_inbox).await;
    app.stop().await;
}

/// A worker (or anyone with its seed) cannot write a session — not a new one, and not an old
/// record put back over a logout — nor read one, nor read the replies carrying openids.
async fn a_worker_user_cannot_write_read_or_roll_back_sessions_nor_read_replies(db: Db) {
    let app = spawn_secured(db, |_| {}).await;
    let t = app.topology();
    let token = login(&app, "alice").await;
    let hash = wxlogin::sessions::token_hash(&token);
    let sessions = app
        .js()
        .await
        .get_key_value(t.sessions_bucket())
        .await
        .unwrap();
    let live = sessions.get(&hash).await.unwrap().expect("alice's record");
    assert_eq!(app.post_logout(&token).await.status(), 204);

    let key = format!("$KV.{}.{hash}", t.sessions_bucket());
    refused_publish(&app, Identity::Worker, &key).await;
    refused_publish(&app, Identity::Upserter, &key).await;
    // The refused rollback changed nothing: the logout stands.
    assert_eq!(app.me(&token).await.status(), 401);
    assert_ne!(
        sessions.get(&hash).await.unwrap().as_deref(),
        Some(&live[..]),
        "the old record is not back"
    );
    let read = format!("$JS.API.STREAM.MSG.GET.KV_{}", t.sessions_bucket());
    refused_publish(&app, Identity::Worker, &read).await;
    refused_subscribe(&app, Identity::Worker, &format!("{}.reply.*", t.prefix)).await;
    refused_subscribe(&app, Identity::Upserter, &format!("{}.reply.*", t.prefix)).await;
    app.stop().await;
}

async fn an_upserter_user_cannot_publish_codes_results_or_the_quota(db: Db) {
    let app = spawn_secured(db, |_| {}).await;
    let t = app.topology();
    refused_publish(&app, Identity::Upserter, &t.code_subject(&APPID.into())).await;
    let result = t.result_subject(&APPID.into(), &"0".repeat(64).as_str().into());
    refused_publish(&app, Identity::Upserter, &result).await;
    let quota = format!("$KV.{}.{APPID}", t.quota_bucket());
    refused_publish(&app, Identity::Upserter, &quota).await;
    let ledger = format!("$KV.{}.x", t.ledger_bucket());
    refused_publish(&app, Identity::Upserter, &ledger).await;
    app.stop().await;
}

/// The company's other services may ask for signatures and nothing else: no code, result,
/// session, token, call or JetStream API of the pipeline; and the ingress may not answer
/// their requests (only the upserter signs).
async fn a_service_user_may_only_ask_for_signatures(db: Db) {
    let app = spawn_secured(db, |_| {}).await;
    let t = app.topology();
    let p = &t.prefix;
    for subject in [
        format!("{p}.codes.{APPID}"),
        format!("{p}.calls.{APPID}"),
        format!("$KV.{}.{APPID}", t.tokens_bucket()),
        format!("$JS.API.STREAM.INFO.{}", t.results_stream()),
    ] {
        refused_publish(&app, Identity::Service, &subject).await;
    }
    for subject in [
        format!("{p}.results.>"),
        format!("{p}.reply.*"),
        format!("{p}.calls.*"),
        format!("{p}.sign.*"),
    ] {
        refused_subscribe(&app, Identity::Service, &subject).await;
    }
    // A session-key reset is the admin's (an operator's command), never the ingress's.
    let reset = t.call_subject(
        &APPID.into(),
        wxlogin::contract::events::CallKind::ResetSessionKey,
    );
    refused_publish(&app, Identity::Ingress, &reset).await;
    // Nobody but a worker reads the calls with their sealed keys, nor answers a service.
    refused_subscribe(&app, Identity::Ingress, &format!("{p}.calls.*")).await;
    let service_inbox = format!("{}.x", t.inbox_prefix(Identity::Service));
    refused_publish(&app, Identity::Ingress, &service_inbox).await;
    refused_publish(&app, Identity::Worker, &service_inbox).await;
    app.stop().await;
}

/// What the server does not stop (measured, nats-server 2.14): a JetStream API request whose
/// reply subject is a bucket's key has the server's answer stored there, whoever asked. It
/// grants nothing: a session key holding an API answer is refused (its owner is logged out), and
/// a quota schedule holding one is never read as an empty schedule (which would start a second
/// schedule and overspend): no slot is handed out until an operator deletes the key.
async fn an_api_answer_sent_to_a_bucket_key_grants_nothing(db: Db) {
    let app = spawn_secured(db, |_| {}).await;
    let t = app.topology();
    let secured = app.secured.as_ref().unwrap();
    let token = login(&app, "alice").await;
    let hash = wxlogin::sessions::token_hash(&token);
    let targets = [
        (
            Identity::Worker,
            format!("$KV.{}.{hash}", t.sessions_bucket()),
        ),
        (
            Identity::Ingress,
            format!("$KV.{}.{APPID}", t.quota_bucket()),
        ),
    ];
    for (identity, subject) in &targets {
        let (client, _errors) = secured.client(&app.settings, *identity).await;
        let info = format!("$JS.API.STREAM.INFO.{}", t.codes_stream());
        client
            .publish_with_reply(info, subject.clone(), "".into())
            .await
            .unwrap();
        client.flush().await.unwrap();
    }
    let js = app.js().await;
    let quota = js.get_key_value(t.quota_bucket()).await.unwrap();
    for _ in 0..50 {
        if quota.entry(APPID).await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let spoiled = quota
        .entry(APPID)
        .await
        .unwrap()
        .expect("the answer was stored");
    assert!(
        serde_json::from_slice::<wxlogin::exchange::budget::Schedule>(&spoiled.value).is_err(),
        "what the server stored is no schedule"
    );
    assert_eq!(
        app.me(&token).await.status(),
        401,
        "a spoiled session is refused"
    );
    let budget = wxlogin::exchange::Budget::new(quota, wxlogin::clock::Clock::system());
    assert!(
        budget
            .reserve(
                APPID,
                1,
                1_000,
                1_000_000,
                wxlogin::exchange::budget::Slack::NONE
            )
            .await
            .is_err(),
        "an unreadable schedule hands out no slot"
    );
    app.stop().await;
}

/// Only `wxlogin migrate` (the admin) creates or changes streams and consumers.
async fn no_role_but_the_admin_may_create_or_change_streams_or_consumers(db: Db) {
    let app = spawn_secured(db, |_| {}).await;
    let t = app.topology();
    for identity in [Identity::Ingress, Identity::Worker, Identity::Upserter] {
        let update = format!("$JS.API.STREAM.UPDATE.{}", t.codes_stream());
        refused_publish(&app, identity, &update).await;
        let create = format!("$JS.API.STREAM.CREATE.{}_X", t.prefix);
        refused_publish(&app, identity, &create).await;
        let consumer = format!(
            "$JS.API.CONSUMER.CREATE.{}.{}",
            t.codes_stream(),
            t.exchange_consumer()
        );
        refused_publish(&app, identity, &consumer).await;
    }
    app.stop().await;
}

/// No credentials, or credentials without the private CA (so no verified TLS): no connection.
async fn a_client_without_credentials_or_without_the_ca_is_refused(db: Db) {
    let app = spawn_secured(db, |_| {}).await;
    let url = app.nats.url().to_string();
    assert!(async_nats::connect(&url).await.is_err(), "no credentials");
    let secured = app.secured.as_ref().unwrap();
    let seed = std::fs::read_to_string(secured.seed(Identity::Admin)).unwrap();
    let no_ca = async_nats::ConnectOptions::with_nkey(seed.trim().to_string())
        .connection_timeout(std::time::Duration::from_secs(3))
        .connect(&url)
        .await;
    assert!(no_ca.is_err(), "an unverified certificate was accepted");
    app.stop().await;
}

on_both_databases!(a_worker_user_cannot_write_read_or_roll_back_sessions_nor_read_replies);

mod sqlite_only {
    use crate::helpers::Db;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_ingress_user_cannot_take_codes_nor_forge_results_or_replies() {
        super::an_ingress_user_cannot_take_codes_nor_forge_results_or_replies(Db::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_upserter_user_cannot_publish_codes_results_or_the_quota() {
        super::an_upserter_user_cannot_publish_codes_results_or_the_quota(Db::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_role_but_the_admin_may_create_or_change_streams_or_consumers() {
        super::no_role_but_the_admin_may_create_or_change_streams_or_consumers(Db::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_service_user_may_only_ask_for_signatures() {
        super::a_service_user_may_only_ask_for_signatures(Db::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_api_answer_sent_to_a_bucket_key_grants_nothing() {
        super::an_api_answer_sent_to_a_bucket_key_grants_nothing(Db::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_without_credentials_or_without_the_ca_is_refused() {
        super::a_client_without_credentials_or_without_the_ca_is_refused(Db::Sqlite).await
    }
}
