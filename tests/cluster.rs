//! The production shape: a 3-node NATS JetStream cluster on loopback with replicated (R3)
//! streams and buckets. One node is killed in the middle of a load; no accepted login is lost.

mod common;

use std::{sync::Arc, time::Duration};

use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use wxlogin::{
    natsd::NatsServer,
    roles,
    settings::{App, Settings},
    sim::{self, SimApp, SimConfig},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_loses_no_login_when_one_node_dies() {
    wxlogin::telemetry::init_with_default("error");
    let dir = tempfile::tempdir().unwrap();
    let client_ports: Vec<u16> = (0..3).map(|_| common::free_port()).collect();
    let cluster_ports: Vec<u16> = (0..3).map(|_| common::free_port()).collect();
    let routes = cluster_ports
        .iter()
        .map(|p| format!("nats://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes = Vec::new();
    for i in 0..3 {
        let args: Vec<String> = [
            "--server_name",
            &format!("n{i}"),
            "--cluster_name",
            "wxlogin-test",
            "--cluster",
            &format!("nats://127.0.0.1:{}", cluster_ports[i]),
            "--routes",
            &routes,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let node = NatsServer::start_with_args(
            &dir.path().join(format!("n{i}")),
            Some(client_ports[i]),
            &args,
        )
        .await
        .unwrap();
        nodes.push(Some(node));
    }
    let sim = sim::spawn(SimConfig {
        apps: vec![SimApp {
            appid: common::APPID.into(),
            secret: common::SECRET.into(),
            unionid: true,
        }],
        faults: sim::Faults {
            latency_ms: 150,
            ..Default::default()
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let settings = Settings {
        nats_url: client_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(","),
        nats_prefix: "cluster".into(),
        nats_replicas: 3,
        database_url: format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display()),
        wechat_base_url: sim.base_url(),
        wechat_timeout_ms: 1000,
        app_quota: "2000/1s".parse().unwrap(),
        login_wait_ms: 2000,
        exchange_ack_wait_secs: 5,
        ..Settings::default()
    };
    let keyring = common::test_keyring();
    let apps = vec![App {
        appid: common::APPID.into(),
        secret: SecretString::from(common::SECRET.to_string()),
    }];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let roles = {
        let (s, k, a, sd) = (
            settings.clone(),
            keyring.clone(),
            apps.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move { roles::all_in_one(&s, k, &a, listener, sd).await })
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let mut ready = false;
    for _ in 0..600 {
        if let Ok(r) = http.get(format!("{api}/readyz")).send().await
            && r.status() == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !ready && roles.is_finished() {
        panic!("the roles stopped: {:?}", roles.await);
    }
    assert!(ready, "the pipeline never became ready on the cluster");
    println!("cluster pipeline ready after {:?}", started.elapsed());

    let control = sim.control();
    let mut codes = Vec::new();
    for i in 0..360 {
        codes.push(
            control
                .mint_code(common::APPID, &format!("c{i}"))
                .await
                .unwrap(),
        );
    }
    let codes = Arc::new(std::sync::Mutex::new(codes));
    let results = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (codes, results, http, api) =
            (codes.clone(), results.clone(), http.clone(), api.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(code) = codes.lock().unwrap().pop() else {
                    break;
                };
                let outcome = login(&http, &api, &code).await;
                results.lock().unwrap().push(outcome);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let before_kill = results.lock().unwrap().len();
    nodes[0].take().unwrap().stop().await; // kill -9 one of three nodes
    let killed_at = std::time::Instant::now();
    for t in tasks {
        t.await.unwrap();
    }
    let results = results.lock().unwrap().clone();
    let accepted = results.iter().filter(|r| r.0 != "refused").count();
    let ok = results.iter().filter(|r| r.0 == "200").count();
    let lost = results.iter().filter(|r| r.0 == "202").count();
    let stats = control.stats().await.unwrap();
    println!(
        "[cluster node killed] accepted={accepted} succeeded={ok} lost={lost} refused={} other={:?} upstream_calls={} calls_per_code={:?} finished_after_kill={:?}",
        results.iter().filter(|r| r.0 == "refused").count(),
        results
            .iter()
            .filter(|r| !["200", "202", "refused"].contains(&r.0.as_str()))
            .collect::<Vec<_>>(),
        stats.calls,
        stats.calls_per_code,
        killed_at.elapsed()
    );
    assert!(
        before_kill < 300,
        "the node must die while logins are running ({before_kill} done)"
    );
    assert_eq!(lost, 0, "accepted logins were lost");
    assert!(
        ok >= accepted.saturating_sub(12),
        "too many failures: {results:?}"
    );
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), roles).await;
}

/// Returns ("200" | "202" (never answered) | "refused" | other status, errcode).
async fn login(http: &reqwest::Client, api: &str, code: &str) -> (String, i64) {
    let r = match http
        .post(format!("{api}/v1/login"))
        .json(&serde_json::json!({"appid": common::APPID, "code": code}))
        .send()
        .await
    {
        Ok(r) => r,
        Err(_) => return ("refused".into(), 0),
    };
    let mut status = r.status().as_u16();
    let mut body: serde_json::Value = r.json().await.unwrap_or_default();
    if status != 200 && status != 202 {
        return (
            if status == 503 {
                "refused".into()
            } else {
                status.to_string()
            },
            body["errcode"].as_i64().unwrap_or(0),
        );
    }
    let started = std::time::Instant::now();
    while status == 202 && started.elapsed() < Duration::from_secs(90) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let ticket = body["ticket"].as_str().unwrap_or_default().to_string();
        let Ok(r) = http.get(format!("{api}/v1/login/{ticket}")).send().await else {
            continue;
        };
        let s = r.status().as_u16();
        let b: serde_json::Value = r.json().await.unwrap_or_default();
        if s == 503
            && b["errmsg"]
                .as_str()
                .is_some_and(|m| m.contains("unavailable"))
        {
            continue;
        }
        status = s;
        if s != 202 {
            body = b;
        }
    }
    (status.to_string(), body["errcode"].as_i64().unwrap_or(0))
}
