//! The catalogue of hostile requests: one of each kind of junk with the status and errcode it
//! must get.

use reqwest::Method;
use serde_json::{Value, json};

use super::bodies::login_bodies;

pub struct Hostile {
    pub what: &'static str,
    pub method: Method,
    pub path: String,
    pub content_type: Option<&'static str>,
    pub body: Vec<u8>,
    pub bearer: Option<&'static str>,
    pub status: u16,
    pub errcode: i64,
}

pub fn h(
    what: &'static str,
    method: Method,
    path: &str,
    ct: Option<&'static str>,
    body: impl Into<Vec<u8>>,
    status: u16,
    errcode: i64,
) -> Hostile {
    Hostile {
        what,
        method,
        path: path.to_string(),
        content_type: ct,
        body: body.into(),
        bearer: None,
        status,
        errcode,
    }
}

pub const JSON: Option<&str> = Some("application/json");
pub const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

/// A JSON value as a request body.
pub fn j(v: Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

/// One of each kind of junk; none of them holds a plausible code for the configured app.
pub fn hostile_requests() -> Vec<Hostile> {
    let login = "/v1/login";
    let mut all = login_bodies(login);
    all.extend([
        h("GET on login", Method::GET, login, None, "", 405, 43002),
        h("PUT on login", Method::PUT, login, JSON, "{}", 405, 43002),
        h(
            "DELETE on login",
            Method::DELETE,
            login,
            None,
            "",
            405,
            43002,
        ),
        h(
            "PATCH on logout",
            Method::PATCH,
            "/v1/logout",
            None,
            "",
            405,
            43002,
        ),
        h("POST on me", Method::POST, "/v1/me", JSON, "{}", 405, 43001),
        h(
            "GET on decrypt",
            Method::GET,
            "/v1/decrypt",
            None,
            "",
            405,
            43002,
        ),
        h(
            "unknown path",
            Method::POST,
            "/v1/nothing",
            JSON,
            "{}",
            404,
            40066,
        ),
        h(
            "path traversal",
            Method::GET,
            "/v1/../../etc/passwd",
            None,
            "",
            404,
            40066,
        ),
        h(
            "junk ticket",
            Method::GET,
            "/v1/login/not-a-ticket",
            None,
            "",
            404,
            40029,
        ),
        h(
            "huge ticket",
            Method::GET,
            &format!("/v1/login/{}", "A".repeat(4000)),
            None,
            "",
            404,
            40029,
        ),
        h(
            "decrypt without a token",
            Method::POST,
            "/v1/decrypt",
            JSON,
            j(json!({"encryptedData": "x", "iv": "y"})),
            401,
            40001,
        ),
        h(
            "me without a token",
            Method::GET,
            "/v1/me",
            None,
            "",
            401,
            40001,
        ),
    ]);
    let mut forged = h(
        "decrypt with a forged token",
        Method::POST,
        "/v1/decrypt",
        JSON,
        j(json!({"encryptedData": "x", "iv": "y"})),
        401,
        40001,
    );
    forged.bearer = Some("wxl_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    all.push(forged);
    let mut junk_bearer = h(
        "me with a junk token",
        Method::GET,
        "/v1/me",
        None,
        "",
        401,
        40001,
    );
    junk_bearer.bearer = Some("' OR 1=1 --");
    all.push(junk_bearer);
    all
}
