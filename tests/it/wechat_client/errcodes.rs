//! Every errcode class: rejected codes, rate limited and busy, misconfigured, and unexpected.

use std::time::Duration;

use secrecy::SecretString;
use wxlogin::wechat::{ErrorClass, ExchangeError, RetryReason};
use wxlogin_sim::{Faults, Quota};

use super::{APPID, BOUND_APPID, harness, secret};

// ---------- rejected ----------

#[tokio::test]
async fn a_made_up_code_is_rejected_with_40029() {
    let h = harness().await;
    let err = h
        .exchange("051nI5Pa1XJkDs0773Pa1OWYOa1nI5PF")
        .await
        .unwrap_err();
    assert_eq!(err, ExchangeError::Rejected { errcode: 40029 });
    assert_eq!(err.class(), ErrorClass::Rejected);
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_used_code_is_rejected_with_40163() {
    let h = harness().await;
    let code = h.code(APPID, "alice").await;
    h.exchange(&code).await.unwrap();
    let err = h.exchange(&code).await.unwrap_err();
    assert_eq!(err, ExchangeError::Rejected { errcode: 40163 });
    assert_eq!(err.errcode(), 40163);
}

#[tokio::test]
async fn a_code_minted_for_another_app_is_rejected_with_40029() {
    let h = harness().await;
    let code = h.code(BOUND_APPID, "alice").await;
    assert_eq!(
        h.exchange(&code).await.unwrap_err(),
        ExchangeError::Rejected { errcode: 40029 }
    );
}

#[tokio::test]
async fn a_high_risk_user_is_rejected_with_40226() {
    let h = harness().await;
    h.exchange(&h.code(APPID, "mallory").await).await.unwrap();
    h.control
        .set_high_risk(APPID, "mallory", true)
        .await
        .unwrap();
    let err = h
        .exchange(&h.code(APPID, "mallory").await)
        .await
        .unwrap_err();
    assert_eq!(err, ExchangeError::Rejected { errcode: 40226 });
}

// ---------- rate limited and busy ----------

#[tokio::test]
async fn the_user_frequency_limit_is_reported_as_rate_limited() {
    let h = harness().await;
    let quota: Quota = "1/60s".parse().unwrap();
    h.control.set_quotas(None, Some(quota)).await.unwrap();
    h.exchange(&h.code(APPID, "alice").await).await.unwrap();
    let err = h.exchange(&h.code(APPID, "alice").await).await.unwrap_err();
    assert_eq!(err, ExchangeError::RateLimited);
    assert_eq!(err.errcode(), 45011);
    assert_eq!(err.class(), ErrorClass::RateLimited);
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_45011_storm_does_not_consume_the_code() {
    let h = harness().await;
    let code = h.code(APPID, "alice").await;
    h.faults(Faults {
        storm_45011_secs: 1.0,
        ..Faults::default()
    })
    .await;
    let err = h.exchange(&code).await.unwrap_err();
    assert_eq!(err, ExchangeError::RateLimited);
    assert!(!err.may_have_consumed_code());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    h.exchange(&code)
        .await
        .expect("the same code works after the storm");
}

#[tokio::test]
async fn a_busy_wechat_is_retryable_and_the_same_code_works_afterwards() {
    let h = harness().await;
    let code = h.code(APPID, "alice").await;
    h.faults(Faults {
        busy_ratio: 1.0,
        ..Faults::default()
    })
    .await;
    let err = h.exchange(&code).await.unwrap_err();
    assert_eq!(
        err,
        ExchangeError::Retryable {
            reason: RetryReason::Busy
        }
    );
    assert_eq!(err.errcode(), -1);
    assert!(err.is_retryable() && !err.may_have_consumed_code());
    h.faults(Faults::default()).await;
    h.exchange(&code)
        .await
        .expect("-1 does not consume the code");
}

// ---------- misconfigured and unexpected ----------

#[tokio::test]
async fn an_unknown_appid_is_misconfigured_with_40013() {
    let h = harness().await;
    let err = h
        .client
        .code2session("wx9999999999999999", &secret(), "code")
        .await
        .unwrap_err();
    assert_eq!(err, ExchangeError::Misconfigured { errcode: 40013 });
    assert_eq!(err.class(), ErrorClass::Misconfigured);
}

#[tokio::test]
async fn a_wrong_secret_is_misconfigured_with_40125() {
    let h = harness().await;
    let code = h.code(APPID, "alice").await;
    let wrong = SecretString::from("not-the-secret");
    let err = h
        .client
        .code2session(APPID, &wrong, &code)
        .await
        .unwrap_err();
    assert_eq!(err, ExchangeError::Misconfigured { errcode: 40125 });
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn empty_arguments_are_answered_locally_with_wechats_errcodes() {
    let h = harness().await;
    let empty = SecretString::from("");
    let cases = [
        (
            "",
            secret(),
            "code",
            ExchangeError::Misconfigured { errcode: 41002 },
        ),
        (
            APPID,
            empty,
            "code",
            ExchangeError::Misconfigured { errcode: 41004 },
        ),
        (
            APPID,
            secret(),
            "",
            ExchangeError::Rejected { errcode: 41008 },
        ),
    ];
    for (appid, secret, code, expected) in cases {
        assert_eq!(
            h.client
                .code2session(appid, &secret, code)
                .await
                .unwrap_err(),
            expected
        );
    }
    assert_eq!(
        h.control.stats().await.unwrap().calls,
        0,
        "no quota was spent"
    );
}

#[tokio::test]
async fn request_errcodes_the_client_cannot_provoke_land_in_their_class() {
    let h = harness().await;
    let misconfigured = |errcode| ExchangeError::Misconfigured { errcode };
    let cases = [
        (41002, misconfigured(41002)),
        (41004, misconfigured(41004)),
        (40164, misconfigured(40164)),
        (40243, misconfigured(40243)),
        (41008, ExchangeError::Rejected { errcode: 41008 }),
    ];
    for (errcode, expected) in cases {
        let body = format!(r#"{{"errcode":{errcode},"errmsg":"x, rid: 1"}}"#);
        assert_eq!(h.answer(&body).await.unwrap_err(), expected);
    }
}

#[tokio::test]
async fn an_unknown_errcode_is_unexpected_and_kept_as_a_number() {
    let h = harness().await;
    let err = h
        .answer(r#"{"errcode":61234,"errmsg":"new thing, rid: 1"}"#)
        .await
        .unwrap_err();
    assert_eq!(err, ExchangeError::Unexpected { errcode: 61234 });
    assert_eq!(err.errcode(), 61234);
    assert_eq!(err.class(), ErrorClass::Unexpected);
    assert!(!err.is_retryable());
}
