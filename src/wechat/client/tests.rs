//! Tests of the client's pure parts, and of HTTP behaviour the simulator cannot play (bodies
//! over its control limit, redirects, echoing the query back), against a few lines of axum.

use std::{collections::HashMap, io};

use axum::{Router, extract::Query, http::StatusCode, routing::get};
use secrecy::SecretString;

use super::*;

const APPID: &str = "wx1111111111111111";
const SECRET: &str = "SECRET-CANARY-7f3a";

fn secret() -> SecretString {
    SecretString::from(SECRET)
}

fn client(base_url: &str) -> WechatClient {
    WechatClient::new(ClientOptions {
        base_url: base_url.to_owned(),
        ..ClientOptions::default()
    })
    .expect("client builds")
}

fn retry(reason: RetryReason) -> ExchangeError {
    ExchangeError::Retryable { reason }
}

/// Serves `router` on a free loopback port.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

#[test]
fn the_endpoint_is_appended_to_the_base_url_with_or_without_a_slash() {
    for base in ["https://api.weixin.qq.com", "https://api.weixin.qq.com/"] {
        assert_eq!(
            endpoint_url(base).unwrap().as_str(),
            "https://api.weixin.qq.com/sns/jscode2session"
        );
    }
    assert_eq!(
        endpoint_url("http://127.0.0.1:8080/wechat")
            .unwrap()
            .as_str(),
        "http://127.0.0.1:8080/wechat/sns/jscode2session"
    );
}

#[test]
fn a_base_url_that_is_not_plain_http_or_https_is_refused() {
    for bad in [
        "",
        "api.weixin.qq.com",
        "ftp://api.weixin.qq.com",
        "https://user:pw@api.weixin.qq.com",
        "https://api.weixin.qq.com/?x=1",
    ] {
        assert!(
            matches!(endpoint_url(bad), Err(ClientBuildError::BaseUrl)),
            "{bad:?}"
        );
    }
}

#[test]
fn missing_arguments_get_wechats_errcodes_in_wechats_order() {
    assert_eq!(missing_argument("", "", ""), Some(41002));
    assert_eq!(missing_argument("wx", "", ""), Some(41004));
    assert_eq!(missing_argument("wx", "s", ""), Some(41008));
    assert_eq!(missing_argument("wx", "s", "c"), None);
}

#[test]
fn redaction_removes_every_copy_of_the_secret() {
    assert_eq!(redact("a S b S", &["S"]), "a <redacted> b <redacted>");
    assert_eq!(
        redact("a S b T", &["S", "", "T"]),
        "a <redacted> b <redacted>"
    );
    assert_eq!(redact("abc", &[""]), "abc");
}

#[test]
fn loopback_hosts_are_recognised() {
    for (url, lo) in [
        ("http://127.0.0.1:1/", true),
        ("http://localhost/", true),
        ("http://[::1]/", true),
        ("http://10.0.0.1/", false),
        ("https://api.weixin.qq.com/", false),
    ] {
        assert_eq!(is_loopback(&Url::parse(url).unwrap()), lo, "{url}");
    }
}

#[tokio::test]
async fn a_huge_body_is_a_retryable_bad_body_with_or_without_a_length() {
    let huge = format!(
        r#"{{"openid":"o","session_key":"k","pad":"{}"}}"#,
        "x".repeat(1 << 20)
    );
    let with_length = huge.clone();
    let router = Router::new()
        .route(
            "/known/sns/jscode2session",
            get(move || {
                let body = with_length.clone();
                async move { body }
            }),
        )
        .route(
            "/chunked/sns/jscode2session",
            get(move || {
                let body = huge.clone();
                async move {
                    // A stream has no Content-Length: the cap must hold while reading.
                    let chunks = body
                        .into_bytes()
                        .chunks(8192)
                        .map(|c| Ok::<_, io::Error>(c.to_vec()))
                        .collect::<Vec<_>>();
                    axum::body::Body::from_stream(futures::stream::iter(chunks))
                }
            }),
        );
    let base = serve(router).await;
    for prefix in ["known", "chunked"] {
        let client = client(&format!("{base}/{prefix}"));
        let err = client
            .code2session(APPID, &secret(), "code")
            .await
            .unwrap_err();
        assert_eq!(err, retry(RetryReason::BadBody), "{prefix}");
    }
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let router = Router::new().route(
        "/sns/jscode2session",
        get(|| async {
            (
                StatusCode::FOUND,
                [("location", "http://127.0.0.1:9/steal")],
                "",
            )
        }),
    );
    let client = client(&serve(router).await);
    let err = client
        .code2session(APPID, &secret(), "code")
        .await
        .unwrap_err();
    assert_eq!(err, retry(RetryReason::HttpStatus(302)));
}

#[tokio::test]
async fn a_code_with_reserved_and_non_ascii_characters_reaches_wechat_intact() {
    // Echoes what arrived: openid = js_code, session_key = the whole decoded query.
    let router = Router::new().route(
        "/sns/jscode2session",
        get(|Query(q): Query<HashMap<String, String>>| async move {
            let echo = serde_json::to_string(&q).unwrap();
            serde_json::json!({ "openid": q.get("js_code"), "session_key": echo }).to_string()
        }),
    );
    let client = client(&serve(router).await);
    let code = "a&b=c#d e+f%20g/h?i=微信&grant_type=evil";
    let session = client.code2session(APPID, &secret(), code).await.unwrap();
    assert_eq!(session.openid, code);
    let seen: HashMap<String, String> = serde_json::from_str(session.session_key.expose()).unwrap();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_eq!(seen["appid"], APPID);
    assert_eq!(seen["secret"], SECRET);
    assert_eq!(seen["grant_type"], "authorization_code");
}

#[tokio::test]
async fn building_refuses_a_bad_base_url_and_an_unusable_root_ca() {
    let bad_url = WechatClient::new(ClientOptions {
        base_url: "api.weixin.qq.com".into(),
        ..ClientOptions::default()
    });
    assert!(matches!(bad_url, Err(ClientBuildError::BaseUrl)));
    let bad_ca = WechatClient::new(ClientOptions {
        extra_root_ca_pem: Some(b"not a certificate".to_vec()),
        ..ClientOptions::default()
    });
    assert!(matches!(bad_ca, Err(ClientBuildError::RootCa)));
}

#[tokio::test]
async fn building_accepts_an_extra_root_ca() {
    let client = WechatClient::new(ClientOptions {
        extra_root_ca_pem: Some(ISRG_ROOT_X2.as_bytes().to_vec()),
        ..ClientOptions::default()
    });
    assert!(client.is_ok());
}

/// A real root (ISRG Root X2, valid until 2040), as a private deployment would add its own.
const ISRG_ROOT_X2: &str = "-----BEGIN CERTIFICATE-----
MIICGzCCAaGgAwIBAgIQQdKd0XLq7qeAwSxs6S+HUjAKBggqhkjOPQQDAzBPMQsw
CQYDVQQGEwJVUzEpMCcGA1UEChMgSW50ZXJuZXQgU2VjdXJpdHkgUmVzZWFyY2gg
R3JvdXAxFTATBgNVBAMTDElTUkcgUm9vdCBYMjAeFw0yMDA5MDQwMDAwMDBaFw00
MDA5MTcxNjAwMDBaME8xCzAJBgNVBAYTAlVTMSkwJwYDVQQKEyBJbnRlcm5ldCBT
ZWN1cml0eSBSZXNlYXJjaCBHcm91cDEVMBMGA1UEAxMMSVNSRyBSb290IFgyMHYw
EAYHKoZIzj0CAQYFK4EEACIDYgAEzZvVn4CDCuwJSvMWSj5cz3es3mcFDR0HttwW
+1qLFNvicWDEukWVEYmO6gbf9yoWHKS5xcUy4APgHoIYOIvXRdgKam7mAHf7AlF9
ItgKbppbd9/w+kHsOdx1ymgHDB/qo0IwQDAOBgNVHQ8BAf8EBAMCAQYwDwYDVR0T
AQH/BAUwAwEB/zAdBgNVHQ4EFgQUfEKWrt5LSDv6kviejM9ti6lyN5UwCgYIKoZI
zj0EAwMDaAAwZQIwe3lORlCEwkSHRhtFcP9Ymd70/aTSVaYgLXTWNLxBo1BfASdW
tL4ndQavEi51mI38AjEAi/V3bNTIZargCyzuFJ0nN6T5U6VR5CmD1/iQMVtCnwr1
/q4AaOeMSQ+2b1tbFfLn
-----END CERTIFICATE-----
";
