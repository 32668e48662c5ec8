//! The OpenAPI document: what a running ingress serves at `GET /openapi.json` is exactly the
//! committed `docs/openapi.json`, every documented operation exists, and every endpoint and
//! errcode the README's HTTP API section names is in it.
//!
//! After changing the API, regenerate the committed file with
//! `cargo run -- openapi > docs/openapi.json` (or run this test with `WXLOGIN_UPDATE_OPENAPI=1`).

use std::path::PathBuf;

use crate::helpers::{Db, Options, spawn_app};
use serde_json::Value;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json")
}

fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            ops.push((method.to_uppercase(), path.clone()));
        }
    }
    ops
}

#[tokio::test]
async fn the_served_document_is_the_committed_one_and_every_documented_operation_exists() {
    let app = spawn_app(Options::new(Db::Sqlite)).await;
    let served = app.get_text("/openapi.json", "application/json").await;
    assert_eq!(served, wxlogin::ingress::openapi::json());

    if std::env::var_os("WXLOGIN_UPDATE_OPENAPI").is_some() {
        std::fs::write(committed_path(), &served).expect("write docs/openapi.json");
    }
    let committed = std::fs::read_to_string(committed_path()).unwrap_or_default();
    if committed != served {
        let line = committed
            .lines()
            .zip(served.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(committed.lines().count().min(served.lines().count()));
        panic!(
            "docs/openapi.json differs from the served document (first at line {}). Regenerate it:\n    \
             cargo run -- openapi > docs/openapi.json\nor run this test with WXLOGIN_UPDATE_OPENAPI=1.",
            line + 1
        );
    }

    // Each documented operation is routed: not axum's (or our fallback's) 404, not a 405.
    let doc: Value = serde_json::from_str(&served).unwrap();
    let ops = operations(&doc);
    assert!(ops.len() >= 7, "{ops:?}");
    for (method, path) in ops {
        let url = format!("{}{}", app.api, path.replace("{ticket}", "not-a-ticket"));
        let r = app
            .http
            .request(method.parse().unwrap(), &url)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_ne!(status, 405, "{method} {path} is documented but not routed");
        if status == 404 {
            // Only the ticket endpoint answers 404, with its own errcode.
            assert_eq!(
                (path.as_str(), &body["errcode"]),
                ("/v1/login/{ticket}", &Value::from(40029)),
                "{method} {path} is documented but not routed"
            );
        }
    }
    app.stop().await;
}

/// `(status, errcode)` pairs written like `` `400 41008` `` in a text.
fn status_errcode_pairs(text: &str) -> Vec<(u16, i64)> {
    let mut pairs = Vec::new();
    for span in text.split('`').skip(1).step_by(2) {
        let mut words = span.split_whitespace();
        if let (Some(s), Some(e), None) = (words.next(), words.next(), words.next())
            && let (Ok(s), Ok(e)) = (s.parse::<u16>(), e.parse::<i64>())
            && (400..600).contains(&s)
        {
            pairs.push((s, e));
        }
    }
    pairs
}

/// `("POST", "/v1/login")` for every `` `POST /v1/login` ``-like span in a text.
fn endpoints(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for span in text.split('`').skip(1).step_by(2) {
        if let Some((method, path)) = span.split_once(' ')
            && ["GET", "POST", "PUT", "DELETE", "PATCH"].contains(&method)
            && path.starts_with('/')
            && !path.contains(' ')
        {
            found.push((method.to_string(), path.to_string()));
        }
    }
    found
}

#[test]
fn every_endpoint_and_errcode_of_the_readme_http_api_section_is_in_the_document() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme.find("\n## HTTP API").expect("an HTTP API section");
    let rest = &readme[start + 1..];
    let section = &rest[..rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3)];

    let doc = serde_json::to_value(wxlogin::ingress::openapi::document()).unwrap();
    let ops = operations(&doc);
    let named = endpoints(section);
    assert!(named.len() >= 6, "{named:?}");
    for endpoint in &named {
        assert!(
            ops.contains(endpoint),
            "the README names {} {} but the OpenAPI document does not",
            endpoint.0,
            endpoint.1
        );
    }

    let mut documented = Vec::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            for (status, response) in op["responses"].as_object().unwrap() {
                let examples = &response["content"]["application/json"]["examples"];
                for example in examples.as_object().into_iter().flat_map(|e| e.values()) {
                    if let Some(errcode) = example["value"]["errcode"].as_i64() {
                        documented.push((status.parse::<u16>().unwrap(), errcode));
                    }
                }
            }
        }
    }
    let pairs = status_errcode_pairs(section);
    assert!(pairs.len() >= 12, "{pairs:?}");
    for pair in pairs {
        assert!(
            documented.contains(&pair),
            "the README names `{} {}` but no documented answer has it",
            pair.0,
            pair.1
        );
    }
}
