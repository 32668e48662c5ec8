//! The production shape: a 3-node NATS JetStream cluster on loopback with replicated (R3)
//! streams and buckets. One node is killed in the middle of a load; no accepted login is lost.

use std::{sync::Arc, time::Duration};

use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use wxlogin::{
    app::roles,
    settings::{App, Settings},
};
use wxlogin_bench::MiniProgram;
use wxlogin_sim::{self as sim, SimApp, SimConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_loses_no_login_when_one_node_dies() {
    wxlogin::telemetry::init_with_default("error");
    let dir = tempfile::tempdir().unwrap();
    let nodes = natsd::start_cluster(dir.path(), 3, "wxlogin-test")
        .await
        .unwrap();
    let nats_url = natsd::urls(&nodes);
    let mut nodes: Vec<_> = nodes.into_iter().map(Some).collect();
    let sim = sim::spawn(SimConfig {
        apps: vec![SimApp {
            appid: crate::helpers::APPID.into(),
            secret: crate::helpers::SECRET.into(),
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
        nats_url: nats_url.clone(),
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
    let keyring = crate::helpers::test_keyring();
    let apps = vec![App {
        appid: crate::helpers::APPID.into(),
        secret: SecretString::from(crate::helpers::SECRET.to_string()),
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
                .mint_code(crate::helpers::APPID, &format!("c{i}"))
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
    let client = MiniProgram {
        patience: Duration::from_secs(90),
        through_outages: true,
        ..MiniProgram::new(http.clone(), api, crate::helpers::APPID)
    };
    let first = match client.post_login(code).await {
        Ok(a) if a.status == 200 || a.status == 202 => a,
        Ok(a) if a.status == 503 => return ("refused".into(), a.errcode().unwrap_or(0)),
        Ok(a) => return (a.status.to_string(), a.errcode().unwrap_or(0)),
        Err(_) => return ("refused".into(), 0),
    };
    match client.follow(first).await {
        Ok(a) => (a.status.to_string(), a.errcode().unwrap_or(0)),
        Err(_) => ("refused".into(), 0),
    }
}

/// A direct get may stand for the leader's read only where nothing but the leader can answer it:
/// on a lone server. On a cluster even one-replica streams and buckets keep the API read (they
/// can be scaled up or moved while the processes run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guarantee_reads_are_direct_gets_on_a_lone_server_and_leader_reads_on_a_cluster() {
    use wxlogin::contract::{leader::direct_is_leader, topology::Topology};
    let topology = |replicas| {
        Topology::from_settings(&Settings {
            nats_replicas: replicas,
            ..Settings::default()
        })
    };
    let lone = natsd::NatsServer::start_temporary().await.unwrap();
    let js = async_nats::jetstream::new(async_nats::connect(lone.url()).await.unwrap());
    topology(1).ensure(&js).await.unwrap();
    let on_lone = topology(1).bind(&js).await.unwrap();
    eprintln!(
        "CLUSTER-DEBUG lone: {:?}",
        on_lone.results.cached_info().cluster
    );
    assert!(direct_is_leader(on_lone.results.cached_info()));
    assert!(direct_is_leader(on_lone.sessions.stream.cached_info()));
    assert!(direct_is_leader(on_lone.ledger.stream.cached_info()));

    let dir = tempfile::tempdir().unwrap();
    let nodes = natsd::start_cluster(dir.path(), 3, "wxlogin-leader")
        .await
        .unwrap();
    let js = async_nats::jetstream::new(async_nats::connect(nodes[0].url()).await.unwrap());
    for replicas in [1, 3] {
        let t = topology(replicas);
        // (A new cluster answers JetStream requests once it has elected its meta leader.)
        let mut tries = 0;
        while let Err(e) = t.ensure(&js).await {
            tries += 1;
            assert!(tries < 30, "the cluster never took the topology: {e}");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let bound = t.bind(&js).await.unwrap();
        eprintln!(
            "CLUSTER-DEBUG {replicas}: {:?}",
            bound.results.cached_info().cluster
        );
        for (what, info) in [
            ("results", bound.results.cached_info()),
            ("sessions", bound.sessions.stream.cached_info()),
            ("ledger", bound.ledger.stream.cached_info()),
        ] {
            assert!(
                !direct_is_leader(info),
                "{what} with {replicas} replica(s) on a cluster must be read from its leader"
            );
        }
    }
}
