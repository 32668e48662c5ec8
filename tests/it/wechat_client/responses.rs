//! Odd bodies (HTML pages, truncated JSON, an errcode as a string, a missing session_key) and
//! the transport: a hanging WeChat and a closed port.

use std::time::{Duration, Instant};

use wxlogin::wechat::{ExchangeError, RetryReason};

use wxlogin_sim::Faults;

use super::{APPID, assert_no_secret_in, client, harness, harness_with_timeout, retry, secret};

// ---------- odd bodies ----------

#[tokio::test]
async fn an_html_502_page_is_a_retryable_http_status() {
    let h = harness().await;
    let html = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>";
    let err = h.scripted(502, "text/html", html).await.unwrap_err();
    assert_eq!(err, retry(RetryReason::HttpStatus(502)));

    h.faults(Faults {
        http_502_ratio: 1.0,
        ..Faults::default()
    })
    .await;
    let err = h.exchange(&h.code(APPID, "alice").await).await.unwrap_err();
    assert_eq!(err, retry(RetryReason::HttpStatus(502)));
}

#[tokio::test]
async fn an_html_page_with_status_200_is_a_bad_body() {
    let h = harness().await;
    let err = h
        .scripted(200, "text/html", "<html>maintenance</html>")
        .await
        .unwrap_err();
    assert_eq!(err, retry(RetryReason::BadBody));
}

#[tokio::test]
async fn truncated_json_is_a_retryable_bad_body() {
    let h = harness().await;
    let err = h
        .answer(r#"{"session_key":"a2V5a2V5","openid":"o"#)
        .await
        .unwrap_err();
    assert_eq!(err, retry(RetryReason::BadBody));
    assert!(err.may_have_consumed_code());

    h.faults(Faults {
        garbage_ratio: 1.0,
        ..Faults::default()
    })
    .await;
    for _ in 0..10 {
        let err = h.exchange(&h.code(APPID, "alice").await).await.unwrap_err();
        assert_eq!(err, retry(RetryReason::BadBody));
    }
}

#[tokio::test]
async fn an_errcode_written_as_a_string_is_still_classified() {
    let h = harness().await;
    let err = h
        .scripted(
            200,
            "application/json",
            r#"{"errcode":"40029","errmsg":"invalid code"}"#,
        )
        .await
        .unwrap_err();
    assert_eq!(err, ExchangeError::Rejected { errcode: 40029 });
}

#[tokio::test]
async fn a_success_without_a_session_key_is_a_bad_body() {
    let h = harness().await;
    let err = h.answer(r#"{"openid":"oX"}"#).await.unwrap_err();
    assert_eq!(err, retry(RetryReason::BadBody));
}

// ---------- transport ----------

#[tokio::test]
async fn a_hanging_wechat_times_out_as_retryable() {
    let h = harness_with_timeout(Duration::from_millis(300)).await;
    h.faults(Faults {
        hang_ratio: 1.0,
        ..Faults::default()
    })
    .await;
    let started = Instant::now();
    let err = h.exchange(&h.code(APPID, "alice").await).await.unwrap_err();
    assert_eq!(err, retry(RetryReason::Timeout));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.may_have_consumed_code(),
        "a timed-out call may have reached WeChat"
    );
}

#[tokio::test]
async fn a_closed_port_is_a_connect_failure_that_did_not_consume_the_code() {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = client(&format!("http://{addr}"), Duration::from_secs(5));
    let err = client
        .code2session(APPID, &secret(), "code")
        .await
        .unwrap_err();
    assert_eq!(err, retry(RetryReason::Connect));
    assert!(err.is_retryable() && !err.may_have_consumed_code());
    assert_no_secret_in(&err);
}
