//! What a NATS client without the master key can write, and that none of it becomes a session:
//! session records put straight into the bucket (plain JSON, copied under another token hash,
//! tampered), forged or re-published results sent to a waiting ingress's reply subject and to
//! the code's subject of the results stream. And that the sessions of the first format
//! written before the cutover survive (and are sealed on read).

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use serde_json::json;
use wxlogin::{
    contract::{
        events::{self, LoginOutcome, LoginRequested, LoginResult},
        headers,
    },
    sessions::{self, SessionRecord},
};
use wxlogin_sim::Faults;

use crate::helpers::{APPID, Db, Options, SettingsTweak, TestApp, spawn_app};

async fn raw_nats(app: &TestApp) -> (async_nats::Client, jetstream::Context) {
    let client = async_nats::connect(app.nats.url().to_string())
        .await
        .expect("a raw NATS client");
    let js = jetstream::new(client.clone());
    (client, js)
}

/// A raw client seeing every code and every result the app's pipeline publishes, subscribed
/// (and the server told) before it returns.
pub(super) async fn watch_codes_and_results(
    app: &TestApp,
) -> (
    async_nats::Client,
    async_nats::Subscriber,
    async_nats::Subscriber,
) {
    let (client, _) = raw_nats(app).await;
    let prefix = app.topology().prefix;
    let codes = client.subscribe(format!("{prefix}.codes.>")).await.unwrap();
    let results = client
        .subscribe(format!("{prefix}.results.>"))
        .await
        .unwrap();
    client.flush().await.unwrap();
    (client, codes, results)
}

async fn sessions_bucket(app: &TestApp) -> kv::Store {
    let (_, js) = raw_nats(app).await;
    js.get_key_value(app.topology().sessions_bucket())
        .await
        .expect("the sessions bucket")
}

/// A record as the first format wrote it: the record's JSON in clear.
fn first_format_record(openid: &str, login_id: &str) -> bytes::Bytes {
    let now = chrono::Utc::now().timestamp_millis();
    let record = SessionRecord {
        v: 1,
        appid: APPID.into(),
        openid: openid.into(),
        unionid: None,
        session_key_sealed: "v1.00000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
        login_id: login_id.into(),
        created_at_ms: now,
        expires_at_ms: now + 3_600_000,
        key_stale: false,
    };
    serde_json::to_vec(&record).unwrap().into()
}

async fn me_status(app: &TestApp, token: &str) -> (u16, serde_json::Value) {
    let r = app.me(token).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_record_written_without_the_master_key_is_refused_with_401() {
    let app = spawn_app(Options::new(Db::Sqlite)).await;
    let bucket = sessions_bucket(&app).await;

    // Plain JSON (the first format) for a token of the forger's choosing.
    let forged = sessions::new_token();
    bucket
        .put(
            sessions::token_hash(&forged),
            first_format_record("oVictim", "l-forged"),
        )
        .await
        .unwrap();
    let (status, body) = me_status(&app, &forged).await;
    assert_eq!(status, 401, "a plain record made a session: {body}");

    // A real session's record copied under another token hash.
    let code = app.mint("alice").await;
    let (status, body) = app.login_following_tickets(&code).await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_string();
    assert_eq!(me_status(&app, &token).await.0, 200);
    let real = bucket
        .get(sessions::token_hash(&token))
        .await
        .unwrap()
        .expect("the record");
    assert!(
        !String::from_utf8_lossy(&real).contains("\"openid\""),
        "the stored record is sealed"
    );
    let copy = sessions::new_token();
    bucket
        .put(sessions::token_hash(&copy), real.clone())
        .await
        .unwrap();
    assert_eq!(me_status(&app, &copy).await.0, 401, "a copied record");

    // The same record with its sealed text changed.
    let mut envelope: serde_json::Value = serde_json::from_slice(&real).unwrap();
    let sealed = envelope["sealed"].as_str().unwrap().to_string();
    let flipped = format!(
        "{}{}",
        &sealed[..sealed.len() - 1],
        if sealed.ends_with('A') { 'B' } else { 'A' }
    );
    envelope["sealed"] = flipped.into();
    bucket
        .put(
            sessions::token_hash(&token),
            serde_json::to_vec(&envelope).unwrap().into(),
        )
        .await
        .unwrap();
    assert_eq!(me_status(&app, &token).await.0, 401, "a tampered record");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_format_sessions_up_to_the_cutover_survive_and_are_sealed_and_later_ones_are_refused()
{
    // The bucket of a fresh deployment starts at revision 1: the first put below is "today's"
    // session, written before the upgrade; the cutover is recorded as revision 1.
    let mut opts = Options::new(Db::Sqlite);
    opts.tweak = SettingsTweak::new(|s| s.session_legacy_max_revision = 1);
    let app = spawn_app(opts).await;
    let bucket = sessions_bucket(&app).await;
    let today = sessions::new_token();
    let revision = bucket
        .put(
            sessions::token_hash(&today),
            first_format_record("oToday", "l-today"),
        )
        .await
        .unwrap();
    assert_eq!(revision, 1);
    let later = sessions::new_token();
    bucket
        .put(
            sessions::token_hash(&later),
            first_format_record("oVictim", "l-later"),
        )
        .await
        .unwrap();

    let (status, me) = me_status(&app, &today).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["openid"], "oToday");
    // Sealed on that read: the entry is now the current format, and still the same session.
    let stored = bucket
        .get(sessions::token_hash(&today))
        .await
        .unwrap()
        .unwrap();
    let stored: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(stored["v"], 2, "{stored}");
    assert!(stored.get("openid").is_none());
    assert_eq!(me_status(&app, &today).await.1["openid"], "oToday");

    let (status, body) = me_status(&app, &later).await;
    assert_eq!(
        status, 401,
        "a first-format record after the cutover: {body}"
    );
    app.stop().await;
}

/// The next code published on the codes stream, as a client of NATS sees it: the event and its
/// reply subject.
async fn next_code(codes: &mut async_nats::Subscriber) -> (LoginRequested, String) {
    let msg = tokio::time::timeout(Duration::from_secs(10), codes.next())
        .await
        .expect("a code is published")
        .unwrap();
    let reply = headers::reply_subject(msg.headers.as_ref())
        .expect("a reply subject")
        .to_string();
    (LoginRequested::decode(&msg.payload).unwrap(), reply)
}

fn forged_success(req: &LoginRequested, openid: &str, tag: Option<String>) -> LoginResult {
    LoginResult {
        v: events::LOGIN_RESULT_V1,
        login_id: req.login_id.clone(),
        appid: req.appid.clone(),
        code_key: req.code_key.clone(),
        received_at_ms: req.received_at_ms,
        finished_at_ms: req.received_at_ms + 1,
        upstream_calls: 1,
        outcome: LoginOutcome::Success {
            openid: openid.into(),
            unionid: None,
            session_key_sealed: "v2.00000000.AAAA".into(),
        },
        tag,
    }
}

/// Follows the login's answer (202 tickets) for a while; every token it ever hands out.
async fn tokens_of(app: &TestApp, first: reqwest::Response) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut body: serde_json::Value = first.json().await.unwrap();
    for _ in 0..10 {
        if let Some(t) = body["token"].as_str() {
            tokens.push(t.to_string());
            break;
        }
        let Some(ticket) = body["ticket"].as_str().map(str::to_string) else {
            break;
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = app.get_ticket(&ticket).await;
        body = r.json().await.unwrap();
        // A 503 keeps the ticket good: poll it again.
        if body.get("ticket").is_none() && body.get("token").is_none() {
            body = json!({ "ticket": ticket });
        }
    }
    tokens
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_results_on_the_reply_subject_and_the_results_stream_give_no_token() {
    let mut opts = Options::new(Db::Sqlite);
    opts.login_wait = Duration::from_secs(3);
    let app = spawn_app(opts).await;
    // WeChat slow, so the login is still waiting while the forger publishes.
    app.faults(Faults {
        latency_ms: 1500,
        ..Faults::default()
    })
    .await;
    let topology = app.topology();
    let (client, js) = raw_nats(&app).await;
    let mut codes = client
        .subscribe(format!("{}.codes.>", topology.prefix))
        .await
        .unwrap();
    client.flush().await.unwrap();

    let code = app.mint("alice").await;
    let login = {
        let app_http = app.http.clone();
        let url = format!("{}/v1/login", app.api);
        tokio::spawn(async move {
            app_http
                .post(url)
                .json(&json!({"appid": APPID, "code": code}))
                .send()
                .await
                .unwrap()
        })
    };
    let (req, reply) = next_code(&mut codes).await;
    // No tag, and a tag made under another key, to the waiting ingress...
    let other_key = wxlogin::crypto::Keyring::new(wxlogin::crypto::MasterKey::generate(), vec![]);
    for forged in [
        forged_success(&req, "oMallory", None),
        forged_success(&req, "oMallory", None).tagged(&other_key),
    ] {
        client
            .publish_with_headers(
                reply.clone(),
                headers::for_reply(&req.login_id),
                events::encode(&forged),
            )
            .await
            .unwrap();
    }
    // ... and as the code's one result on the results stream (before the worker's).
    let forged = forged_success(&req, "oMallory", None);
    js.publish_with_headers(
        topology.result_subject(&req.appid, &req.code_key),
        headers::for_result(&forged),
        events::encode(&forged),
    )
    .await
    .unwrap()
    .await
    .expect("the forged result is stored");
    client.flush().await.unwrap();

    let tokens = tokens_of(&app, login.await.unwrap()).await;
    assert!(
        tokens.is_empty(),
        "a forged result made a session: {tokens:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_result_republished_for_another_login_is_ignored_and_that_login_gets_its_own() {
    let mut opts = Options::new(Db::Sqlite);
    opts.login_wait = Duration::from_secs(4);
    let app = spawn_app(opts).await;
    let (client, mut codes, mut results) = watch_codes_and_results(&app).await;

    // Alice logs in; the forger keeps her real (tagged) result.
    let code = app.mint("alice").await;
    let (status, body) = app.login_following_tickets(&code).await;
    assert_eq!(status, 200, "{body}");
    let alice_openid = me_status(&app, body["token"].as_str().unwrap()).await.1["openid"].clone();
    let alices = LoginResult::decode(&results.next().await.unwrap().payload).unwrap();
    assert!(alices.tag.is_some());
    let _ = next_code(&mut codes).await;

    // Bob's login waits for a slow WeChat; Alice's result is sent to his waiting ingress, as
    // it is and renamed to his login and code.
    app.faults(Faults {
        latency_ms: 1500,
        ..Faults::default()
    })
    .await;
    let code = app.mint("bob").await;
    let login = {
        let (http, url) = (app.http.clone(), format!("{}/v1/login", app.api));
        tokio::spawn(async move {
            http.post(url)
                .json(&json!({"appid": APPID, "code": code}))
                .send()
                .await
                .unwrap()
        })
    };
    let (bobs, reply) = next_code(&mut codes).await;
    let renamed = LoginResult {
        login_id: bobs.login_id.clone(),
        code_key: bobs.code_key.clone(),
        ..alices.clone()
    };
    for forged in [&alices, &renamed] {
        client
            .publish_with_headers(
                reply.clone(),
                headers::for_reply(&bobs.login_id),
                events::encode(forged),
            )
            .await
            .unwrap();
    }
    client.flush().await.unwrap();

    let tokens = tokens_of(&app, login.await.unwrap()).await;
    assert_eq!(tokens.len(), 1, "Bob still logs in with his own result");
    let me = me_status(&app, &tokens[0]).await.1;
    assert_ne!(me["openid"], alice_openid, "Bob got Alice's session");
    app.stop().await;
}
