//! `POST /v1/phone` end to end against the simulator's `getuserphonenumber`: one exchange per
//! phone code across sessions and repeats, WeChat's errcodes as the client sees them, the number
//! on the user's row only sealed (with its lookup hash), and nowhere in plaintext. The fleet's
//! access_token is `tokens`; session-key checks and resets are `session_keys`.

mod session_keys;
mod tokens;

use crate::helpers::{APPID, Db, Options, TestApp, spawn_app};
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use wxlogin_sim::{Endpoint, ScriptedAnswer};

/// Logs `user` in; returns the token.
pub(crate) async fn login(app: &TestApp, user: &str) -> String {
    let code = app.mint(user).await;
    let (status, body) = app.login_following_tickets(&code).await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().unwrap().to_string()
}

async fn phone(app: &TestApp, token: &str, code: &str) -> (u16, Value) {
    app.phone_following_tickets(token, code).await
}

fn assert_errcode(answer: &(u16, Value), status: u16, errcode: i64, what: &str) {
    assert_eq!(answer.0, status, "{what}: {}", answer.1);
    assert_eq!(answer.1["errcode"], errcode, "{what}: {}", answer.1);
    assert!(
        answer.1.get("phoneNumber").is_none(),
        "{what}: {}",
        answer.1
    );
}

async fn phone_exchanges(app: &TestApp) -> u64 {
    app.control.stats().await.unwrap().apis.phone.exchanged
}

/// The bytes of every file under `dir` (a SQLite database and its WAL, a NATS store).
fn bytes_under(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in walkdir(dir) {
        all.extend(std::fs::read(entry).unwrap_or_default());
    }
    all
}

fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walkdir(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

async fn a_session_gets_its_number_once_and_the_same_code_again_gets_the_same_answer(db: Db) {
    let app = spawn_app(Options::new(db)).await;
    let token = login(&app, "alice").await;
    let minted = app
        .control
        .mint_phone_code_for(APPID, "alice", "+8613912345678", None)
        .await
        .unwrap();
    let first = phone(&app, &token, &minted.code).await;
    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!(
        first.1,
        json!({"phoneNumber": "+8613912345678", "purePhoneNumber": "13912345678", "countryCode": "86"})
    );
    // A double tap, a retry after a timeout: the same answer, WeChat not asked again.
    let again = phone(&app, &token, &minted.code).await;
    assert_eq!(again, first);
    assert_eq!(phone_exchanges(&app).await, 1);
    // The row holds the number sealed, with its hash; no byte of the database holds it plain.
    let mut row = None;
    for _ in 0..100 {
        row = app
            .users()
            .await
            .into_iter()
            .find(|u| u.phone_hash.is_some());
        if row.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let row = row.expect("the phone number reaches the user's row");
    assert_eq!(row.login_count, 1);
    assert_eq!(row.phone_hash.as_ref().unwrap().len(), 64);
    let sealed = row.phone_sealed.as_deref().unwrap();
    assert!(!sealed.contains("13912345678"));
    if db == Db::Sqlite {
        let path = app.db_url.trim_start_matches("sqlite://");
        let dir = std::path::Path::new(path.split('?').next().unwrap())
            .parent()
            .unwrap();
        assert!(
            !contains(&bytes_under(dir), "13912345678"),
            "a plaintext number in the database"
        );
    }
    // A replay of the results stream into an empty database rebuilds the same number.
    let (fresh, _, _fresh_dir) = crate::upsert::fresh_db(Db::Sqlite).await;
    let stats = wxlogin::upsert::replay(
        &app.js().await,
        &app.topology(),
        &fresh,
        wxlogin::upsert::ReplayFrom::Start,
        100,
        |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!((stats.logins, stats.phones), (1, 1));
    let replayed = wxlogin::upsert::users::Entity::find()
        .all(&fresh)
        .await
        .unwrap();
    assert_eq!(
        (
            &replayed[0].phone_hash,
            &replayed[0].phone_sealed,
            replayed[0].phone_at_ms
        ),
        (&row.phone_hash, &row.phone_sealed, row.phone_at_ms)
    );
    // Nor in any event or record NATS stores.
    assert!(
        !contains(&bytes_under(app.nats.store_dir()), "13912345678"),
        "a plaintext number in the NATS store"
    );
    app.stop().await;
}

async fn any_other_session_presenting_the_code_gets_409_and_no_number(db: Db) {
    let app = spawn_app(Options::new(db)).await;
    let alice = login(&app, "alice").await;
    let minted = app.control.mint_phone_code(APPID, "alice").await.unwrap();
    assert_eq!(phone(&app, &alice, &minted.code).await.0, 200);
    // Alice's second session (another login), and Bob: the code is not theirs to use.
    let alice_again = login(&app, "alice").await;
    let bob = login(&app, "bob").await;
    for (who, token) in [("alice's other session", &alice_again), ("bob", &bob)] {
        let answer = phone(&app, token, &minted.code).await;
        assert_errcode(&answer, 409, 40163, who);
    }
    assert_eq!(phone_exchanges(&app).await, 1);
    app.stop().await;
}

/// WeChat's answers as the client sees them: a spent code (40029), another app's code (40013),
/// a 40029 after an attempt that may have reached WeChat (503: tap again), a numeric
/// `countryCode`, another app's watermark.
async fn wechats_phone_answers_reach_the_client_as_documented(db: Db) {
    let app = spawn_app(Options::new(db)).await;
    let token = login(&app, "alice").await;
    // A code spent by an earlier exchange elsewhere (a previous deployment, a leak).
    let spent = app.control.mint_phone_code(APPID, "alice").await.unwrap();
    let first = phone(&app, &token, &spent.code).await;
    assert_eq!(first.0, 200);
    let other_session = login(&app, "alice").await;
    // (Another session's request for the same code is refused before WeChat; a fresh
    // deployment would see WeChat's own 40029, scripted here.)
    let stale = app.control.mint_phone_code(APPID, "alice").await.unwrap();
    app.control
        .script_endpoint(Endpoint::PhoneNumber, vec![errcode_answer(40029)])
        .await
        .unwrap();
    assert_errcode(
        &phone(&app, &other_session, &stale.code).await,
        400,
        40029,
        "a used code",
    );
    // A 502 (the call may have reached WeChat), then 40029: the code may be spent by us.
    let lost = app.control.mint_phone_code(APPID, "alice").await.unwrap();
    let gateway = ScriptedAnswer {
        status: 502,
        content_type: "text/html".into(),
        body: "<html>502 Bad Gateway</html>".into(),
    };
    app.control
        .script_endpoint(Endpoint::PhoneNumber, vec![gateway, errcode_answer(40029)])
        .await
        .unwrap();
    assert_errcode(
        &phone(&app, &token, &lost.code).await,
        503,
        -1,
        "40029 after a 502",
    );
    // 40013: the code belongs to another app.
    let foreign = app.control.mint_phone_code(APPID, "alice").await.unwrap();
    app.control
        .script_endpoint(Endpoint::PhoneNumber, vec![errcode_answer(40013)])
        .await
        .unwrap();
    assert_errcode(
        &phone(&app, &token, &foreign.code).await,
        400,
        40013,
        "another app's code",
    );
    // countryCode as a number reaches the client as a string.
    app.control.set_country_code_numeric(true).await.unwrap();
    let numeric = app.control.mint_phone_code(APPID, "alice").await.unwrap();
    let answer = phone(&app, &token, &numeric.code).await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert_eq!(answer.1["countryCode"], json!("86"));
    // An answer watermarked for another app is nobody's number.
    let watermarked = app.control.mint_phone_code(APPID, "alice").await.unwrap();
    let body = json!({"errcode": 0, "errmsg": "ok", "phone_info": {
        "phoneNumber": "13800000000", "purePhoneNumber": "13800000000", "countryCode": "86",
        "watermark": {"timestamp": 1_700_000_000, "appid": "wxffffffffffffffff"}}});
    app.control
        .script_endpoint(Endpoint::PhoneNumber, vec![json_answer(body)])
        .await
        .unwrap();
    assert_errcode(
        &phone(&app, &token, &watermarked.code).await,
        502,
        -1,
        "another app's watermark",
    );
    app.stop().await;
}

fn json_answer(body: Value) -> ScriptedAnswer {
    ScriptedAnswer {
        status: 200,
        content_type: "application/json".into(),
        body: body.to_string(),
    }
}

fn errcode_answer(errcode: i64) -> ScriptedAnswer {
    json_answer(json!({"errcode": errcode, "errmsg": "scripted"}))
}

/// A double tap on one ingress while WeChat is slow: both taps get the number, one exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_double_tap_while_wechat_is_slow_gets_the_number_twice_from_one_exchange() {
    let app = spawn_app(Options::new(Db::Sqlite)).await;
    let token = login(&app, "alice").await;
    let slow = wxlogin_sim::EndpointFaults {
        latency_ms: 1500,
        ..Default::default()
    };
    app.faults(wxlogin_sim::Faults {
        endpoints: std::collections::BTreeMap::from([(Endpoint::PhoneNumber, slow)]),
        ..Default::default()
    })
    .await;
    let minted = app.control.mint_phone_code(APPID, "alice").await.unwrap();
    let body = json!({"code": minted.code});
    let first = app.post_phone(&token, &body);
    let second = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        app.post_phone(&token, &body).await
    };
    let (a, b) = tokio::join!(first, second);
    for r in [a, b] {
        assert_eq!(r.status(), 200);
        let number: Value = r.json().await.unwrap();
        assert_eq!(number["purePhoneNumber"], minted.pure_phone_number.as_str());
    }
    assert_eq!(phone_exchanges(&app).await, 1);
    app.stop().await;
}

/// Bad input is refused at the door with a clear error and without a WeChat call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_phone_requests_are_refused_before_any_upstream_call() {
    let app = spawn_app(Options::new(Db::Sqlite)).await;
    let token = login(&app, "alice").await;
    let post = |body: Value| {
        let (app, token) = (&app, &token);
        async move {
            let r = app.post_phone(token, &body).await;
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    assert_errcode(&post(json!({})).await, 400, 41008, "no code");
    assert_errcode(&post(json!({"code": 7})).await, 400, 40029, "a number");
    assert_errcode(
        &post(json!({"code": "no spaces please"})).await,
        400,
        40029,
        "junk",
    );
    assert_errcode(
        &post(json!({"code": "a".repeat(129)})).await,
        400,
        40029,
        "too long",
    );
    let big = app
        .http
        .post(format!("{}/v1/phone", app.api))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(format!("{{\"code\":\"{}\"}}", "a".repeat(2000)))
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    let form = app
        .http
        .post(format!("{}/v1/phone", app.api))
        .bearer_auth(&token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("code=abcdefgh12345678")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415);
    // Without a session nothing is read.
    let anonymous = app
        .http
        .post(format!("{}/v1/phone", app.api))
        .json(&json!({"code": "abcdefgh12345678"}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    // Another session's ticket, or a forged one, is unknown.
    let forged = app
        .http
        .get(format!("{}/v1/phone/v1.00000000.AAAA", app.api))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 404);
    assert_eq!(phone_exchanges(&app).await, 0);
    assert_eq!(
        app.control.stats().await.unwrap().apis.stable_token.normal,
        0
    );
    app.stop().await;
}

on_both_databases!(
    a_session_gets_its_number_once_and_the_same_code_again_gets_the_same_answer,
    any_other_session_presenting_the_code_gets_409_and_no_number,
    wechats_phone_answers_reach_the_client_as_documented,
);
