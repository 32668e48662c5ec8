//! Each invariant of the chaos run, shown a history that breaks it: a check that cannot fail
//! would let every run pass.

use std::collections::{HashMap, HashSet};

use wxlogin::contract::events::LoginOutcome;
use wxlogin_sim::{EntityStats, RepeatedCode, SimStats};

use super::{
    Inflicted,
    check::{self, Results},
    load::{Call, History, Kind, Login},
    schedule::{Fault, Role},
};
use crate::helpers::APPID;

const P: &str = "pfx";

fn success(openid: &str) -> LoginOutcome {
    LoginOutcome::Success {
        openid: openid.into(),
        unionid: None,
        session_key_sealed: "sealed".into(),
    }
}

fn login(code: &str, user: &str, kind: Kind, posted_at: i64, token: Option<&str>) -> Login {
    Login {
        code: code.into(),
        user: user.into(),
        kind,
        posted_at,
        first: if token.is_some() { 200 } else { 409 },
        last: if token.is_some() { 200 } else { 409 },
        errcode: None,
        token: token.map(str::to_string),
        answered_at: posted_at + 10,
    }
}

fn call(token: &str, logout: bool, at: i64, status: u16, openid: Option<&str>) -> Call {
    Call {
        token: token.into(),
        logout,
        sent_at: at,
        answered_at: at + 5,
        status,
        openid: openid.map(str::to_string),
    }
}

#[test]
fn a_token_answering_for_another_openid_and_a_token_for_a_late_post_are_violations() {
    let openids: HashMap<_, _> = [("alice".to_string(), "o-alice".to_string())].into();
    let results = Results::made(P, &[("c1", 1_000, success("o-alice"))]);
    let mut h = History::default();
    h.logins
        .push(login("c1", "alice", Kind::Fresh, 900, Some("t1")));
    h.calls.push(call("t1", false, 1_100, 200, Some("o-alice")));
    assert!(check::one_user_per_token(&h, &openids, &results, P).is_empty());
    h.calls.push(call("t1", false, 1_200, 200, Some("o-bob")));
    h.logins
        .push(login("c1", "alice", Kind::Reuse, 1_500, Some("t2")));
    assert_eq!(
        check::one_user_per_token(&h, &openids, &results, P).len(),
        2
    );
}

#[test]
fn a_token_alive_after_its_logout_or_refused_before_it_is_a_violation() {
    let mut h = History::default();
    h.logins
        .push(login("c1", "alice", Kind::Fresh, 0, Some("t1")));
    h.calls.push(call("t1", false, 100, 200, Some("o")));
    h.calls.push(call("t1", true, 200, 204, None));
    h.calls.push(call("t1", false, 300, 401, None));
    assert!(check::tokens_live_until_logout(&h).is_empty());
    h.calls.push(call("t1", false, 400, 200, Some("o")));
    assert_eq!(check::tokens_live_until_logout(&h).len(), 1);
    let mut refused = History::default();
    refused
        .logins
        .push(login("c2", "bob", Kind::Fresh, 0, Some("t2")));
    refused.calls.push(call("t2", false, 100, 401, None));
    assert_eq!(check::tokens_live_until_logout(&refused).len(), 1);
}

#[test]
fn a_code_sent_twice_is_a_violation_unless_a_crash_lies_between() {
    let repeated = [RepeatedCode {
        code: "c1".into(),
        user: "alice".into(),
        validated_at_ms: vec![1_000, 5_000],
    }];
    let results = Results::made(P, &[("c1", 1_010, success("o"))]);
    let (bad, _) = check::codes_sent_once(&repeated, &[], &results, P, 1);
    assert_eq!(bad.len(), 1);
    let crash = Inflicted {
        fault: Fault::Process {
            role: Role::Worker,
            index: 0,
            hard: true,
            down: std::time::Duration::from_secs(1),
        },
        kind: "worker kill -9".into(),
        started_at: 1_005,
        ended_at: 2_005,
    };
    let (bad, explained) =
        check::codes_sent_once(&repeated, std::slice::from_ref(&crash), &results, P, 1);
    assert!(bad.is_empty());
    assert_eq!(explained.len(), 1);
    // A crash does not explain a call after the code's TTL (no worker sends one that old)...
    let late = [RepeatedCode {
        validated_at_ms: vec![1_000, 30_000],
        ..repeated[0].clone()
    }];
    let (bad, _) = check::codes_sent_once(&late, &[crash], &results, P, 1);
    assert_eq!(bad.len(), 1);
    // ...and a call after the code's result aged out is no longer covered by the promise.
    let aged = [RepeatedCode {
        validated_at_ms: vec![1_000, 200_000],
        ..repeated[0].clone()
    }];
    let (bad, explained) = check::codes_sent_once(&aged, &[], &results, P, 1);
    assert!(bad.is_empty() && explained.len() == 1, "{bad:?}");
}

#[test]
fn an_accepted_login_with_no_result_or_two_is_a_violation() {
    let mut h = History::default();
    h.logins
        .push(login("c1", "alice", Kind::Fresh, 0, Some("t1")));
    h.logins
        .push(login("c2", "bob", Kind::Fresh, 0, Some("t2")));
    let one = Results::made(P, &[("c1", 10, success("a")), ("c2", 10, success("b"))]);
    assert!(check::one_result_per_login(&h, &one, P).is_empty());
    let two = Results::made(P, &[("c1", 10, success("a")), ("c1", 20, success("a"))]);
    assert_eq!(
        check::one_result_per_login(&h, &two, P).len(),
        2,
        "two, and none"
    );
}

#[test]
fn a_window_over_the_quota_or_a_45011_of_its_own_is_a_violation() {
    let mut stats = SimStats::default();
    stats.by_errcode.insert(45011, 3);
    stats.storm_45011 = 3;
    assert!(
        check::quota_held(&stats).is_empty(),
        "a storm's are injected"
    );
    stats.by_errcode.insert(45011, 4);
    stats.apps.insert(
        APPID.into(),
        EntityStats {
            max_in_window: 41,
            ..EntityStats::default()
        },
    );
    assert_eq!(check::quota_held(&stats).len(), 2);
}

#[test]
fn a_secret_anywhere_in_a_log_is_found() {
    let secrets: HashSet<String> = ["s3cr3t-code-0123".to_string()].into();
    let clean = [("a.log".to_string(), "nothing here".to_string())];
    assert!(check::no_secret_in(&clean, &secrets).is_empty());
    let leaky = [("b.log".to_string(), "code=s3cr3t-code-0123&x".to_string())];
    assert_eq!(
        check::no_secret_in(&leaky, &secrets),
        vec!["a secret in b.log"]
    );
}
