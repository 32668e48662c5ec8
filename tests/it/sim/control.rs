//! The control API: exact stats, resets, scripted answers, bad control input, and a
//! configuration refused at spawn.

use wxlogin_sim::{self as sim, DEMO_APPID, Faults, ScriptedAnswer, SimApp, SimConfig};

use super::start;

#[tokio::test]
async fn stats_count_calls_answers_and_repeated_codes_exactly() {
    let sim = start(SimConfig::demo()).await;
    let once = sim.mint("alice").await;
    let twice = sim.mint("alice").await;
    let _never = sim.mint("bob").await;
    sim.demo(&once).await;
    sim.demo(&twice).await;
    sim.demo(&twice).await;
    sim.demo(&twice).await;
    sim.demo("unknown-code").await;

    let s = sim.ctl.stats().await.unwrap();
    assert_eq!(s.calls, 5);
    assert_eq!(s.by_errcode.get(&0), Some(&2));
    assert_eq!(s.by_errcode.get(&40163), Some(&2));
    assert_eq!(s.by_errcode.get(&40029), Some(&1));
    assert_eq!(s.codes_minted, 3);
    assert_eq!(s.codes_presented_more_than_once, 1);
    assert_eq!(s.codes_exchanged_more_than_once, 1);
    assert_eq!(s.calls_per_code.get(&1), Some(&1));
    assert_eq!(s.calls_per_code.get(&3), Some(&1));
    assert_eq!(s.calls_per_code.len(), 2);
    assert_eq!(s.apps[DEMO_APPID].calls, 5);
    assert_eq!(s.users["alice"].calls, 4);
    assert_eq!(s.users["alice"].by_errcode.get(&40163), Some(&2));
    assert_eq!(s.users["alice"].window_secs, 60.0);
    assert_eq!(s.storm_45011, 0);

    // Which codes those were, and when each validation happened.
    let repeated = sim.ctl.repeated_codes().await.unwrap();
    assert_eq!(repeated.len(), 1, "{repeated:?}");
    assert_eq!(
        (repeated[0].code.as_str(), repeated[0].user.as_str()),
        (twice.as_str(), "alice")
    );
    let at = &repeated[0].validated_at_ms;
    assert_eq!(at.len(), 3);
    assert!(at.windows(2).all(|w| w[0] <= w[1]), "{at:?}");
    sim.ctl.reset().await.unwrap();
    assert!(
        sim.ctl.repeated_codes().await.unwrap().is_empty(),
        "a reset starts over"
    );
}

#[tokio::test]
async fn a_storms_45011_answers_are_counted_apart_from_the_quotas() {
    let sim = start(SimConfig::demo()).await;
    sim.ctl
        .set_faults(&Faults {
            storm_45011_secs: 60.0,
            ..Faults::default()
        })
        .await
        .unwrap();
    let code = sim.mint("alice").await;
    assert_eq!(sim.demo(&code).await.errcode(), 45011);
    assert_eq!(sim.demo(&code).await.errcode(), 45011);
    let s = sim.ctl.stats().await.unwrap();
    assert_eq!((s.by_errcode.get(&45011), s.storm_45011), (Some(&2), 2));
    assert!(
        sim.ctl.repeated_codes().await.unwrap().is_empty(),
        "a storm validates no code"
    );
}

#[tokio::test]
async fn reset_clears_stats_faults_and_scripts_and_all_also_forgets_codes() {
    let sim = start(SimConfig::demo()).await;
    let used = sim.mint("alice").await;
    let fresh = sim.mint("alice").await;
    sim.demo(&used).await;
    sim.ctl
        .set_faults(&Faults {
            busy_ratio: 1.0,
            ..Faults::default()
        })
        .await
        .unwrap();
    sim.ctl
        .script(vec![ScriptedAnswer::wechat("{}")])
        .await
        .unwrap();

    sim.ctl.reset().await.unwrap();
    assert_eq!(sim.ctl.stats().await.unwrap().calls, 0);
    assert_eq!(sim.ctl.faults().await.unwrap(), Faults::default());
    assert_eq!(
        sim.demo(&used).await.errcode(),
        40163,
        "codes survive a plain reset"
    );
    let s = sim.ctl.stats().await.unwrap();
    assert_eq!(s.codes_exchanged_more_than_once, 1);
    assert_eq!(
        s.calls_per_code.get(&1),
        Some(&1),
        "per-code counts restart at the reset"
    );

    sim.ctl.reset_all().await.unwrap();
    assert_eq!(
        sim.demo(&fresh).await.errcode(),
        40029,
        "reset all forgets codes"
    );
}

#[tokio::test]
async fn scripted_answers_are_sent_raw_in_order_then_the_logic_resumes() {
    let sim = start(SimConfig::demo()).await;
    let code = sim.mint("alice").await;
    let odd = ScriptedAnswer {
        status: 503,
        content_type: "application/json".into(),
        body: r#"{"errcode":40164,"errmsg":"invalid ip"}"#.into(),
    };
    sim.ctl
        .script(vec![
            odd.clone(),
            ScriptedAnswer::wechat(r#"{"errcode":-1}"#),
        ])
        .await
        .unwrap();
    let first = sim.demo(&code).await;
    assert_eq!(
        (first.status, first.content_type.as_str()),
        (503, "application/json")
    );
    assert_eq!(first.body, odd.body.as_bytes());
    assert_eq!(sim.demo(&code).await.errcode(), -1);
    assert_eq!(
        sim.demo(&code).await.errcode(),
        0,
        "scripts never consume codes"
    );
    assert_eq!(sim.ctl.stats().await.unwrap().scripted, 2);
}

#[tokio::test]
async fn bad_control_input_is_a_json_error() {
    let sim = start(SimConfig::demo()).await;
    let (status, body) = sim.control_post("/sim/login", "not json").await;
    assert_eq!(status, 400);
    assert!(body["error"].is_string());
    let (status, _) = sim
        .control_post("/sim/login", r#"{"appid":"wxnope","user":"alice"}"#)
        .await;
    assert_eq!(status, 404);
    let (status, _) = sim
        .control_post(
            "/sim/login",
            format!(r#"{{"appid":"{DEMO_APPID}","user":""}}"#),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = sim.control_post("/sim/faults", r#"{"busy_ratio":7}"#).await;
    assert_eq!(status, 400);
    let (status, _) = sim.control_post("/sim/quotas", r#"{"app":"lots"}"#).await;
    assert_eq!(status, 400);
    let (status, _) = sim
        .control_post("/sim/script", r#"{"answers":[{"status":42}]}"#)
        .await;
    assert_eq!(status, 400);
    let (status, body) = sim.control_post("/sim/script", vec![b' '; 1 << 20]).await;
    assert_eq!(status, 413);
    assert!(body["error"].is_string());
}

#[tokio::test]
async fn an_invalid_configuration_is_refused_at_spawn() {
    let mut config = SimConfig::demo();
    config.apps.push(SimApp::demo());
    assert!(sim::spawn(config).await.is_err(), "duplicate appid");
    let config = SimConfig {
        faults: Faults {
            garbage_ratio: -0.1,
            ..Faults::default()
        },
        ..SimConfig::demo()
    };
    assert!(sim::spawn(config).await.is_err());
}
