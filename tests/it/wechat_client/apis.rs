//! The access-token APIs of the client against the simulator over real HTTP: stable_token,
//! the phone number, the session-key check and reset, and how each failure is classified;
//! no error ever carries the token, a code or the AppSecret.

use std::{collections::BTreeMap, time::Duration};

use wxlogin::wechat::{
    AccessToken, ApiError, ErrorClass, RetryReason, SessionKey, SessionKeyCheck, WechatClient,
};
use wxlogin_sim::{Endpoint, EndpointFaults, Faults};

use super::{APPID, BOUND_APPID, Harness, SECRET, client, harness, secret};

impl Harness {
    async fn token(&self) -> AccessToken {
        let fetched = (self.client.stable_token(APPID, &secret(), false).await).expect("token");
        fetched.token
    }

    async fn phone_code(&self, appid: &str, user: &str) -> String {
        self.control
            .mint_phone_code(appid, user)
            .await
            .unwrap()
            .code
    }

    /// Logs `user` in; their openid and session_key.
    async fn login(&self, user: &str) -> (String, SessionKey) {
        let session = self.exchange(&self.code(APPID, user).await).await.unwrap();
        (session.openid, session.session_key)
    }

    async fn endpoint_faults(&self, endpoint: Endpoint, faults: EndpointFaults) {
        self.faults(Faults {
            endpoints: BTreeMap::from([(endpoint, faults)]),
            ..Faults::default()
        })
        .await;
    }
}

/// Neither the token, nor a code, nor the AppSecret in what an error shows.
fn assert_clean(err: &ApiError, secrets: &[&str]) {
    let shown = format!("{err} {err:?}");
    for s in secrets.iter().chain([&SECRET]) {
        assert!(!shown.contains(s), "{s:?} leaked: {shown}");
    }
}

#[tokio::test]
async fn stable_token_answers_one_token_for_every_caller_with_its_remaining_lifetime() {
    let h = harness().await;
    let first = h
        .client
        .stable_token(APPID, &secret(), false)
        .await
        .unwrap();
    assert!(first.expires_in > Duration::from_secs(7190));
    let second = h
        .client
        .stable_token(APPID, &secret(), false)
        .await
        .unwrap();
    assert_eq!(second.token, first.token);
    let wrong = (h.client)
        .stable_token(APPID, &"wrong".to_owned().into(), false)
        .await
        .unwrap_err();
    assert_eq!(wrong.errcode(), 40125);
    assert_eq!(wrong.class(), ErrorClass::Misconfigured);
    let stats = h.control.stats().await.unwrap().apis;
    assert_eq!(stats.endpoints["stable_token"].by_app[APPID], 3);
    assert!(
        !stats.endpoints.contains_key("token"),
        "no plain token call"
    );
}

#[tokio::test]
async fn a_revoked_token_is_rejected_and_one_normal_refetch_brings_a_new_one() {
    let h = harness().await;
    let old = h.token().await;
    let (openid, key) = h.login("alice").await;
    h.control.revoke_tokens(APPID).await.unwrap();
    let err = h
        .client
        .check_session(&old, &openid, &key)
        .await
        .unwrap_err();
    assert_eq!(err, ApiError::TokenRejected { errcode: 40001 });
    assert!(!err.may_have_reached());
    assert_clean(&err, &[old.expose()]);
    let new = h.token().await;
    assert_ne!(new, old);
    assert_eq!(
        h.client.check_session(&new, &openid, &key).await,
        Ok(SessionKeyCheck::Current)
    );
    assert_eq!(h.control.stats().await.unwrap().apis.stable_token.issued, 2);
}

#[tokio::test]
async fn a_phone_number_comes_back_with_a_string_country_code_even_when_sent_as_a_number() {
    let h = harness().await;
    let token = h.token().await;
    let (openid, _) = h.login("alice").await;
    for numeric in [false, true] {
        h.control.set_country_code_numeric(numeric).await.unwrap();
        let minted = h.control.mint_phone_code(APPID, "alice").await.unwrap();
        let info = h
            .client
            .phone_number(&token, &minted.code, &openid)
            .await
            .unwrap();
        assert_eq!(info.country_code, "86", "numeric: {numeric}");
        assert_eq!(info.pure_phone_number, minted.pure_phone_number);
        assert_eq!(info.phone_number, minted.phone_number);
        assert_eq!(info.watermark_appid, APPID);
        assert!(info.watermark_timestamp > 1_700_000_000);
        assert!(!format!("{info:?}").contains(&minted.pure_phone_number));
    }
}

#[tokio::test]
async fn a_reused_code_another_apps_code_and_another_users_code_are_rejected() {
    let h = harness().await;
    let token = h.token().await;
    let (alice, _) = h.login("alice").await;
    let code = h.phone_code(APPID, "alice").await;
    h.client.phone_number(&token, &code, &alice).await.unwrap();
    let reused = h
        .client
        .phone_number(&token, &code, &alice)
        .await
        .unwrap_err();
    assert_eq!(reused, ApiError::Rejected { errcode: 40029 });
    assert!(reused.may_have_reached());
    assert_clean(&reused, &[token.expose(), &code]);
    let other_app = h.phone_code(BOUND_APPID, "alice").await;
    let err = h
        .client
        .phone_number(&token, &other_app, "")
        .await
        .unwrap_err();
    assert_eq!(err, ApiError::Rejected { errcode: 40013 });
    let (bob, _) = h.login("bob").await;
    let alices = h.phone_code(APPID, "alice").await;
    let err = h
        .client
        .phone_number(&token, &alices, &bob)
        .await
        .unwrap_err();
    assert_eq!(err, ApiError::Rejected { errcode: 40003 });
    assert_eq!(err.class(), ErrorClass::Rejected);
}

#[tokio::test]
async fn the_session_key_check_follows_a_reset_and_a_new_login() {
    let h = harness().await;
    let token = h.token().await;
    let (openid, old) = h.login("alice").await;
    assert_eq!(
        h.client.check_session(&token, &openid, &old).await,
        Ok(SessionKeyCheck::Current)
    );
    let new = h
        .client
        .reset_session_key(&token, &openid, &old)
        .await
        .unwrap();
    assert_ne!(new.expose(), old.expose());
    assert_eq!(
        h.client.check_session(&token, &openid, &old).await,
        Ok(SessionKeyCheck::Stale)
    );
    assert_eq!(
        h.client.check_session(&token, &openid, &new).await,
        Ok(SessionKeyCheck::Current)
    );
    let stale = h
        .client
        .reset_session_key(&token, &openid, &old)
        .await
        .unwrap_err();
    assert_eq!(stale, ApiError::Rejected { errcode: 87009 });
    assert_clean(&stale, &[token.expose(), old.expose(), new.expose()]);
    let (_, newest) = h.login("alice").await;
    assert_eq!(
        h.client.check_session(&token, &openid, &new).await,
        Ok(SessionKeyCheck::Stale)
    );
    assert_eq!(
        h.client.check_session(&token, &openid, &newest).await,
        Ok(SessionKeyCheck::Current)
    );
}

#[tokio::test]
async fn an_ip_outside_the_allow_list_names_the_ip_wechat_saw() {
    let h = harness().await;
    let fault = EndpointFaults {
        errcode: Some(40164),
        ..EndpointFaults::default()
    };
    h.endpoint_faults(Endpoint::StableToken, fault).await;
    let err = h
        .client
        .stable_token(APPID, &secret(), false)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ApiError::Operator {
            errcode: 40164,
            seen_ip: Some("203.0.113.7".parse().unwrap())
        }
    );
    assert_eq!(err.class(), ErrorClass::Misconfigured);
    assert_clean(&err, &[]);
    for errcode in [89503, 45009, 40243] {
        let fault = EndpointFaults {
            errcode: Some(errcode),
            ..EndpointFaults::default()
        };
        h.endpoint_faults(Endpoint::StableToken, fault).await;
        let err = h
            .client
            .stable_token(APPID, &secret(), true)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ApiError::Operator { seen_ip: None, .. }),
            "{err:?}"
        );
        assert_eq!(err.errcode(), errcode);
    }
}

#[tokio::test]
async fn busy_gateway_garbage_and_rate_limits_are_retryable_and_say_whether_the_call_reached() {
    let h = harness().await;
    let token = h.token().await;
    let code = h.phone_code(APPID, "alice").await;
    let cases = [
        (
            EndpointFaults {
                busy_ratio: 1.0,
                ..EndpointFaults::default()
            },
            ApiError::Retryable {
                reason: RetryReason::Busy,
            },
            false,
        ),
        (
            EndpointFaults {
                http_502_ratio: 1.0,
                ..EndpointFaults::default()
            },
            ApiError::Retryable {
                reason: RetryReason::HttpStatus(502),
            },
            true,
        ),
        (
            EndpointFaults {
                garbage_ratio: 1.0,
                ..EndpointFaults::default()
            },
            ApiError::Retryable {
                reason: RetryReason::BadBody,
            },
            true,
        ),
        (
            EndpointFaults {
                errcode: Some(45011),
                ..EndpointFaults::default()
            },
            ApiError::RateLimited,
            false,
        ),
    ];
    for (fault, expected, reached) in cases {
        h.endpoint_faults(Endpoint::PhoneNumber, fault).await;
        let err = h.client.phone_number(&token, &code, "").await.unwrap_err();
        assert_eq!(err, expected);
        assert_eq!(err.may_have_reached(), reached, "{err:?}");
        assert_clean(&err, &[token.expose(), &code]);
    }
    h.faults(Faults::default()).await;
    assert!(
        h.client.phone_number(&token, &code, "").await.is_ok(),
        "the code survived"
    );
}

#[tokio::test]
async fn a_hung_call_times_out_and_a_refused_connection_cannot_have_reached() {
    let h = harness().await;
    let token = h.token().await;
    let quick = client(&h.base_url, Duration::from_millis(300));
    let hang = EndpointFaults {
        hang_ratio: 1.0,
        ..EndpointFaults::default()
    };
    h.endpoint_faults(Endpoint::CheckSession, hang).await;
    let key = SessionKey::new("a2V5a2V5a2V5a2V5a2V5aw==".into());
    let err = quick.check_session(&token, "o1", &key).await.unwrap_err();
    assert_eq!(
        err,
        ApiError::Retryable {
            reason: RetryReason::Timeout
        }
    );
    assert!(err.may_have_reached());
    let closed = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let dead_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let dead: WechatClient = client(&dead_url, Duration::from_secs(2));
    let err = dead
        .stable_token(APPID, &secret(), false)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ApiError::Retryable {
            reason: RetryReason::Connect
        }
    );
    assert!(!err.may_have_reached());
    assert_clean(&err, &[]);
}
