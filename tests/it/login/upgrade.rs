//! A rolling upgrade to the bound, `v2` formats: with `seal_format = "v1"` a new build writes
//! only what builds of the first formats read (codes sealed in `v1` under the appid alone,
//! session records in clear, session keys and tickets in `v1`), and still logs in; results
//! carry a tag those builds ignore.

use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use serde_json::json;
use wxlogin::{
    contract::events::{LoginOutcome, LoginRequested},
    crypto::SealFormat,
    sessions::{self, SessionRecord},
};
use wxlogin_bench::Answer;
use wxlogin_sim::Faults;

use crate::helpers::{APPID, Db, Options, SettingsTweak, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_v1_mode_a_new_build_writes_what_the_first_formats_readers_read() {
    let mut opts = Options::new(Db::Sqlite);
    opts.login_wait = Duration::from_millis(300);
    opts.tweak = SettingsTweak::new(|s| s.seal_format = SealFormat::V1);
    let app = spawn_app(opts).await;
    let topology = app.topology();
    let (client, mut codes, mut results) = super::forgery::watch_codes_and_results(&app).await;
    // Slow enough for a 202: the ticket is sealed in v1 too.
    app.faults(Faults {
        latency_ms: 800,
        ..Faults::default()
    })
    .await;

    let code = app.mint("alice").await;
    let r = app.post_login(json!({"appid": APPID, "code": code})).await;
    assert_eq!(r.status(), 202);
    let first: serde_json::Value = r.json().await.unwrap();
    assert!(
        first["ticket"].as_str().unwrap().starts_with("v1."),
        "{first}"
    );
    let answer = app
        .miniprogram()
        .follow(Answer {
            status: 202,
            body: first,
            via_ticket: false,
        })
        .await
        .expect("the ticket");
    assert_eq!(answer.status, 200, "{answer:?}");
    let token = answer.body["token"].as_str().unwrap();

    let published = LoginRequested::decode(&codes.next().await.unwrap().payload).unwrap();
    assert!(published.code_sealed.starts_with("v1."));
    assert_eq!(published.code_aad(SealFormat::V1), APPID.as_bytes());

    let result = results.next().await.unwrap().payload;
    let decoded = wxlogin::contract::events::LoginResult::decode(&result).unwrap();
    let LoginOutcome::Success {
        session_key_sealed, ..
    } = &decoded.outcome
    else {
        panic!("{decoded:?}")
    };
    assert!(
        session_key_sealed.starts_with("v1."),
        "{session_key_sealed}"
    );
    // Tagged all the same: the one field first-format readers do not know, and ignore
    // (`src/contract/events.rs` tests that).
    assert!(decoded.tag.is_some());

    // The session record is the first format's plain JSON, which old ingresses read.
    let bucket = jetstream::new(client.clone())
        .get_key_value(topology.sessions_bucket())
        .await
        .unwrap();
    let stored = bucket
        .get(sessions::token_hash(token))
        .await
        .unwrap()
        .unwrap();
    let record: SessionRecord = serde_json::from_slice(&stored).expect("a first-format record");
    assert_eq!(record.v, 1);
    assert_eq!(app.me(token).await.status(), 200);
    app.stop().await;
}
