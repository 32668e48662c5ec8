//! Injected faults: busy answers, 502 pages, garbage bodies, hung calls, latency and 45011
//! storms.

use std::time::{Duration, Instant};

use serde_json::Value;
use wxlogin_sim::{DEMO_APPID, DEMO_SECRET, Faults, SimConfig};

use super::start;

#[tokio::test]
async fn busy_answers_come_at_the_configured_ratio_and_do_not_consume_codes() {
    let sim = start(SimConfig::demo()).await;
    sim.ctl
        .set_faults(&Faults {
            busy_ratio: 0.3,
            ..Faults::default()
        })
        .await
        .unwrap();
    let code = sim.mint("alice").await;
    let n = 400;
    let mut busy = 0;
    for _ in 0..n {
        match sim.demo(&code).await.errcode() {
            -1 => busy += 1,
            0 | 40163 => {}
            other => panic!("unexpected errcode {other}"),
        }
    }
    // Binomial(400, 0.3): mean 120, sd ≈ 9.2; ±45 is about five standard deviations.
    assert!((75..=165).contains(&busy), "{busy} busy answers out of {n}");
    let stats = sim.ctl.stats().await.unwrap();
    assert_eq!(stats.by_errcode[&-1], busy);
    assert_eq!(
        stats.by_errcode[&0], 1,
        "the code was exchanged exactly once"
    );
}

#[tokio::test]
async fn an_injected_502_is_an_html_page() {
    let sim = start(SimConfig::demo()).await;
    sim.ctl
        .set_faults(&Faults {
            http_502_ratio: 1.0,
            ..Faults::default()
        })
        .await
        .unwrap();
    let r = sim.demo(&sim.mint("alice").await).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.content_type, "text/html");
    assert!(String::from_utf8_lossy(&r.body).contains("502 Bad Gateway"));
    assert_eq!(sim.ctl.stats().await.unwrap().http_502, 1);
}

#[tokio::test]
async fn a_garbage_body_comes_with_http_200_and_does_not_parse() {
    let sim = start(SimConfig::demo()).await;
    sim.ctl
        .set_faults(&Faults {
            garbage_ratio: 1.0,
            ..Faults::default()
        })
        .await
        .unwrap();
    for _ in 0..20 {
        let r = sim.demo("whatever").await;
        assert_eq!(r.status, 200);
        assert!(
            serde_json::from_slice::<Value>(&r.body).is_err(),
            "{:?}",
            r.body
        );
    }
    assert_eq!(sim.ctl.stats().await.unwrap().garbage, 20);
}

#[tokio::test]
async fn a_hung_call_times_out_at_the_client_and_shutdown_releases_it() {
    let sim = start(SimConfig::demo()).await;
    sim.ctl
        .set_faults(&Faults {
            hang_ratio: 1.0,
            ..Faults::default()
        })
        .await
        .unwrap();
    let code = sim.mint("alice").await;
    let r = (sim.http.get(sim.url()))
        .query(&[
            ("appid", DEMO_APPID),
            ("secret", DEMO_SECRET),
            ("js_code", &code),
        ])
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(r.unwrap_err().is_timeout());

    // A call still hanging must not keep the server from shutting down.
    let pending = tokio::spawn({
        let (http, url) = (sim.http.clone(), sim.url());
        async move { http.get(url).send().await }
    });
    // The spawned call reaches the server when it does: wait for it (bounded) before shutdown.
    let mut hangs = 0;
    for _ in 0..100 {
        hangs = sim.ctl.stats().await.unwrap().hangs;
        if hangs == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(hangs, 2);
    tokio::time::timeout(Duration::from_secs(10), sim.server.shutdown())
        .await
        .expect("shutdown does not wait for hung calls");
    let _ = pending.await;
}

#[tokio::test]
async fn injected_latency_delays_the_answer() {
    let sim = start(SimConfig::demo()).await;
    sim.ctl
        .set_faults(&Faults {
            latency_ms: 200,
            ..Faults::default()
        })
        .await
        .unwrap();
    let code = sim.mint("alice").await;
    let t0 = Instant::now();
    assert_eq!(sim.demo(&code).await.errcode(), 0);
    assert!(t0.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn a_45011_storm_answers_every_call_until_it_ends() {
    let sim = start(SimConfig::demo()).await;
    let code = sim.mint("alice").await;
    sim.ctl
        .set_faults(&Faults {
            storm_45011_secs: 1.5,
            ..Faults::default()
        })
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(sim.demo(&code).await.errcode(), 45011);
    }
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(sim.demo(&code).await.errcode(), 0);
}
