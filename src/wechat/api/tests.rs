//! The types' redaction, and what the access-token calls put on the wire (method, path, query, body), recorded by a few
//! lines of axum: the simulator checks the rules, this checks the shape of each request.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, http::Method, http::Uri, routing::any};
use secrecy::SecretString;

use super::*;
use crate::wechat::{ClientOptions, SessionKey, WechatClient};

#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    query: String,
    body: Vec<u8>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// Serves `answer` to every request and records each.
async fn recorder(answer: &'static str) -> (WechatClient, Log) {
    let log = Log::default();
    let router = Router::new()
        .fallback(any(
            move |State(log): State<Log>, method: Method, uri: Uri, body: Bytes| async move {
                log.lock().unwrap().push(Seen {
                    method,
                    path: uri.path().to_owned(),
                    query: uri.query().unwrap_or("").to_owned(),
                    body: body.to_vec(),
                });
                answer
            },
        ))
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let client = WechatClient::new(ClientOptions {
        base_url: format!("http://{addr}"),
        ..ClientOptions::default()
    })
    .unwrap();
    (client, log)
}

fn only(log: &Log) -> Seen {
    let seen = log.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    seen[0].clone()
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap()
}

#[tokio::test]
async fn stable_token_posts_json_with_the_secret_only_in_the_body() {
    let (client, log) = recorder(r#"{"access_token":"T","expires_in":7200}"#).await;
    let secret = SecretString::from("SECRET-CANARY");
    let fetched = client.stable_token("wx1", &secret, true).await.unwrap();
    assert_eq!(fetched.token, AccessToken::new("T".into()));
    let seen = only(&log);
    assert_eq!(
        (seen.method, seen.path.as_str()),
        (Method::POST, "/cgi-bin/stable_token")
    );
    assert_eq!(seen.query, "");
    assert_eq!(
        json(&seen.body),
        serde_json::json!({"grant_type":"client_credential","appid":"wx1",
                           "secret":"SECRET-CANARY","force_refresh":true})
    );
    let empty = client
        .stable_token("wx1", &SecretString::from(""), false)
        .await;
    assert_eq!(empty.unwrap_err().errcode(), 41004);
    assert_eq!(log.lock().unwrap().len(), 1, "an empty secret is not sent");
}

#[tokio::test]
async fn the_phone_call_sends_the_token_in_the_query_and_the_code_in_the_body() {
    let (client, log) = recorder(r#"{"errcode":40029,"errmsg":"invalid code"}"#).await;
    let token = AccessToken::new("TOK+/=".into());
    let err = client
        .phone_number(&token, "pcode", "o1")
        .await
        .unwrap_err();
    assert_eq!(err, ApiError::Rejected { errcode: 40029 });
    let seen = only(&log);
    assert_eq!(
        (seen.method, seen.path.as_str()),
        (Method::POST, "/wxa/business/getuserphonenumber")
    );
    assert_eq!(seen.query, "access_token=TOK%2B%2F%3D");
    assert_eq!(
        json(&seen.body),
        serde_json::json!({"code":"pcode","openid":"o1"})
    );
    client.phone_number(&token, "pcode", "").await.unwrap_err();
    let without_openid = log.lock().unwrap()[1].body.clone();
    assert_eq!(json(&without_openid), serde_json::json!({"code":"pcode"}));
}

#[tokio::test]
async fn session_key_calls_are_bodiless_gets_signed_in_the_query() {
    let (client, log) = recorder(r#"{"errcode":0,"errmsg":"ok","session_key":"bmV3"}"#).await;
    let token = AccessToken::new("TOK".into());
    let key = SessionKey::new("a2V5".into());
    let check = client.check_session(&token, "o1", &key).await.unwrap();
    assert_eq!(check, SessionKeyCheck::Current);
    let new_key = client.reset_session_key(&token, "o1", &key).await.unwrap();
    assert_eq!(new_key.expose(), "bmV3");
    let seen = log.lock().unwrap().clone();
    let signature = session_key_signature(&key);
    for (s, path) in seen
        .iter()
        .zip(["/wxa/checksession", "/wxa/resetusersessionkey"])
    {
        assert_eq!((&s.method, s.path.as_str()), (&Method::GET, path));
        assert_eq!(
            s.query,
            format!("access_token=TOK&openid=o1&signature={signature}&sig_method=hmac_sha256")
        );
        assert!(s.body.is_empty());
    }
}

#[test]
fn tokens_and_numbers_never_show_in_debug() {
    let token = AccessToken::new("TOKEN-CANARY".into());
    let fetched = FetchedToken {
        token: token.clone(),
        expires_in: Duration::from_secs(7200),
    };
    assert!(!format!("{token:?} {fetched:?}").contains("CANARY"));
    let info = PhoneInfo {
        phone_number: "+8613812345678".into(),
        pure_phone_number: "13812345678".into(),
        country_code: "86".into(),
        watermark_appid: "wx1".into(),
        watermark_timestamp: 1,
    };
    let shown = format!("{info:?}");
    assert!(!shown.contains("12345678"), "{shown}");
    assert!(shown.contains("wx1"));
}

#[test]
fn tokens_are_equal_exactly_when_their_text_is() {
    let a = AccessToken::new("abc".into());
    assert_eq!(a, AccessToken::new("abc".into()));
    assert_ne!(a, AccessToken::new("abd".into()));
    assert_ne!(a, AccessToken::new("ab".into()));
}

#[test]
fn every_api_url_is_under_the_base_url() {
    let urls = ApiUrls::new("http://127.0.0.1:9/wechat/").unwrap();
    assert_eq!(
        urls.stable_token.as_str(),
        "http://127.0.0.1:9/wechat/cgi-bin/stable_token"
    );
    assert_eq!(
        urls.phone_number.as_str(),
        "http://127.0.0.1:9/wechat/wxa/business/getuserphonenumber"
    );
    assert_eq!(
        urls.check_session.as_str(),
        "http://127.0.0.1:9/wechat/wxa/checksession"
    );
    assert_eq!(
        urls.reset_session_key.as_str(),
        "http://127.0.0.1:9/wechat/wxa/resetusersessionkey"
    );
}
