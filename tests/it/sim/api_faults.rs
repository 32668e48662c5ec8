//! Faults and scripted answers of the access-token endpoints, selected per endpoint, and the
//! per-endpoint stats they show up in.

use std::collections::BTreeMap;

use serde_json::json;
use wxlogin_sim::{DEMO_APPID, Endpoint, EndpointFaults, Faults, ScriptedAnswer};

use super::{start, tokens::api_config};

#[tokio::test]
async fn an_endpoint_fault_hits_only_its_endpoint_and_spends_nothing() {
    let sim = start(api_config()).await;
    let token = sim.demo_token().await;
    let code = sim.phone_code("alice").await;
    let faults = |endpoint, f| Faults {
        endpoints: BTreeMap::from([(endpoint, f)]),
        ..Faults::default()
    };
    let ip_fault = EndpointFaults {
        errcode: Some(40164),
        ..EndpointFaults::default()
    };
    sim.ctl
        .set_faults(&faults(Endpoint::StableToken, ip_fault))
        .await
        .unwrap();
    let refused = sim.stable(false).await;
    assert_eq!(refused.errcode(), 40164);
    let errmsg = refused.json()["errmsg"].as_str().unwrap().to_owned();
    assert!(
        errmsg.starts_with("invalid ip 203.0.113.7 ipv6 ::ffff:203.0.113.7, not in whitelist"),
        "{errmsg}"
    );
    assert!(errmsg.contains("rid: "));
    assert_eq!(
        sim.phone_errcode(&token, &code).await,
        0,
        "other endpoints answer"
    );

    let busy = EndpointFaults {
        busy_ratio: 1.0,
        ..EndpointFaults::default()
    };
    sim.ctl
        .set_faults(&faults(Endpoint::PhoneNumber, busy))
        .await
        .unwrap();
    let code = sim.phone_code("bob").await;
    assert_eq!(sim.phone_errcode(&token, &code).await, -1);
    let bad_gateway = EndpointFaults {
        http_502_ratio: 1.0,
        ..EndpointFaults::default()
    };
    sim.ctl
        .set_faults(&faults(Endpoint::PhoneNumber, bad_gateway))
        .await
        .unwrap();
    let page = sim.phone(&token, json!({"code": code})).await;
    assert_eq!(
        (page.status, page.content_type.as_str()),
        (502, "text/html")
    );
    let custom = EndpointFaults {
        errcode: Some(89503),
        errmsg: Some("custom text".into()),
        ..EndpointFaults::default()
    };
    sim.ctl
        .set_faults(&faults(Endpoint::PhoneNumber, custom))
        .await
        .unwrap();
    let review = sim.phone(&token, json!({"code": code})).await;
    assert_eq!(review.errcode(), 89503);
    assert!(
        review.json()["errmsg"]
            .as_str()
            .unwrap()
            .starts_with("custom text, rid: ")
    );
    sim.ctl.set_faults(&Faults::default()).await.unwrap();
    assert_eq!(
        sim.phone_errcode(&token, &code).await,
        0,
        "the code was kept"
    );

    let stats = sim.ctl.stats().await.unwrap().apis.endpoints;
    assert_eq!(stats["stable_token"].by_errcode[&40164], 1);
    let phone = &stats["phone_number"];
    assert_eq!((phone.calls, phone.http_502), (5, 1));
    assert_eq!(phone.by_errcode.get(&-1), Some(&1));
    assert_eq!(phone.by_errcode.get(&89503), Some(&1));
    assert_eq!(phone.by_errcode.get(&0), Some(&2));
}

#[tokio::test]
async fn a_script_for_an_endpoint_answers_that_endpoints_next_calls_only() {
    let sim = start(api_config()).await;
    let answer = ScriptedAnswer::wechat(r#"{"errcode":40243,"errmsg":"frozen"}"#);
    sim.ctl
        .script_endpoint(Endpoint::StableToken, vec![answer])
        .await
        .unwrap();
    let code = sim.mint("alice").await;
    assert_eq!(
        sim.demo(&code).await.errcode(),
        0,
        "code2Session is not scripted"
    );
    assert_eq!(sim.stable(false).await.errcode(), 40243);
    assert_eq!(sim.stable(false).await.errcode(), 0, "one answer, one call");
    let stats = sim.ctl.stats().await.unwrap();
    assert_eq!(stats.apis.endpoints["stable_token"].scripted, 1);
    assert_eq!(stats.scripted, 0);
    let (status, body) = sim
        .control_post("/sim/faults", r#"{"endpoints":{"nowhere":{}}}"#)
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = sim
        .control_post(
            "/sim/faults",
            r#"{"endpoints":{"phone_number":{"busy_ratio":2}}}"#,
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn stats_count_calls_per_endpoint_and_appid_and_reset_clears_them() {
    let sim = start(api_config()).await;
    sim.plain().await;
    sim.stable(false).await;
    sim.stable(true).await;
    let token = sim.demo_token().await;
    assert_eq!(sim.use_token(&token).await, 40097);
    let stats = sim.ctl.stats().await.unwrap().apis;
    assert_eq!(stats.endpoints["token"].calls, 1);
    assert_eq!(stats.endpoints["stable_token"].by_app[DEMO_APPID], 3);
    assert_eq!(
        (stats.stable_token.normal, stats.stable_token.forced),
        (2, 1)
    );
    assert_eq!(stats.endpoints["check_session"].by_app[DEMO_APPID], 1);
    assert!(!stats.endpoints.contains_key("reset_session_key"));
    sim.ctl.reset().await.unwrap();
    assert_eq!(sim.ctl.stats().await.unwrap().apis, Default::default());
    assert_eq!(
        sim.use_token(&token).await,
        40097,
        "a plain reset keeps tokens"
    );
    sim.ctl.reset_all().await.unwrap();
    assert_eq!(sim.use_token(&token).await, 40001, "reset_all forgets them");
}

#[tokio::test]
async fn hostile_bodies_and_queries_get_wechats_errcodes_and_spend_nothing() {
    let sim = start(api_config()).await;
    let token = sim.demo_token().await;
    let code = sim.phone_code("alice").await;
    let phone_url = sim.at("/wxa/business/getuserphonenumber");
    let bodies: [&[u8]; 6] = [
        b"",
        b"\xff\xfe",
        b"null",
        b"[]",
        b"{\"code\":",
        b"{\"code\":7}",
    ];
    for body in bodies {
        let req = sim.http.post(&phone_url).query(&[("access_token", &token)]);
        let reply = sim.send(req.body(body.to_vec())).await;
        assert_eq!(reply.status, 200);
        assert!([47001, 40029].contains(&reply.errcode()), "{body:?}");
    }
    let huge = sim.http.post(&phone_url).query(&[("access_token", &token)]);
    assert_eq!(sim.send(huge.body(vec![b' '; 100_000])).await.status, 413);
    let odd_query = format!("{phone_url}?access_token=%zz&&=&access_token");
    let reply = sim
        .send(sim.http.post(odd_query).json(&json!({"code": code})))
        .await;
    assert_eq!(
        reply.errcode(),
        41001,
        "a query that does not parse carries nothing"
    );
    let long_token = "T".repeat(10_000);
    assert_eq!(sim.phone_errcode(&long_token, &code).await, 40014);
    let ctl_bodies = [
        r#"{"appid":"wx0123456789abcdef"}"#,
        r#"{"appid":1,"user":"a"}"#,
        "nope",
    ];
    for body in ctl_bodies {
        let (status, answer) = sim.control_post("/sim/phone", body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer["error"].is_string());
    }
    let (status, _) = sim
        .control_post("/sim/tokens/revoke", r#"{"appid":"wxnobody"}"#)
        .await;
    assert_eq!(status, 404);
    let (status, _) = sim
        .control_post("/sim/clock", r#"{"advance_secs":-1}"#)
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        sim.phone_errcode(&token, &code).await,
        0,
        "the code survived all of it"
    );
}
