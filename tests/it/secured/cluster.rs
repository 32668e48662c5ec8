//! The secured 3-node cluster `nats/cluster/` ships, started from its own configuration files
//! (only this test's paths, ports and routes put in): per-role users from `wxlogin nats
//! auth`, TLS for clients and verified TLS on the routes, R3 streams. Each role logs users in
//! as its own user, through the loss of one node, with no refusal in any node's log.

use std::time::Duration;

use natsd::NatsServer;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use wxlogin::{
    app::{nats_auth, roles},
    contract::{access::Identity, topology::Topology},
    settings::{App, Settings},
};
use wxlogin_bench::MiniProgram;

use crate::helpers::{APPID, SECRET, free_port, test_keyring, test_sim_config, tls::pki};

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/nats/cluster");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_secured_cluster_logs_users_in_with_each_role_as_its_own_user() {
    wxlogin::telemetry::init_with_default("error");
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    let prefix = "secured";
    let named = Settings {
        nats_prefix: prefix.into(),
        ..Settings::default()
    };
    // The operator's steps: the authorization block, the CA and the nodes' certificates.
    nats_auth::write(&etc, &Topology::from_settings(&named), false).unwrap();
    let pki = pki();
    std::fs::write(etc.join("ca.pem"), &pki.ca_pem).unwrap();
    let (client_ports, route_ports): (Vec<u16>, Vec<u16>) =
        (0..3).map(|_| (free_port(), free_port())).unzip();
    let routes = route_ports
        .iter()
        .map(|p| format!("nats-route://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes = Vec::new();
    for i in 1..=3 {
        std::fs::write(etc.join(format!("node-{i}.pem")), &pki.server_cert_pem).unwrap();
        std::fs::write(etc.join(format!("node-{i}-key.pem")), &pki.server_key_pem).unwrap();
        let shipped = std::fs::read_to_string(format!("{SHIPPED}/node-{i}.conf")).unwrap();
        let store = dir.path().join(format!("store-{i}"));
        let conf = shipped
            .replace("/etc/wxlogin-nats", &etc.display().to_string())
            // The supervisor gives the store on the command line (`-sd`), which may not repeat it.
            .replace("  store_dir: \"/var/lib/wxlogin-nats\"\n", "");
        let conf_path = etc.join(format!("node-{i}.conf"));
        std::fs::write(&conf_path, conf).unwrap();
        let args: Vec<String> = [
            "-c".to_string(),
            conf_path.display().to_string(),
            "--cluster".into(),
            format!("nats://127.0.0.1:{}", route_ports[i - 1]),
            "--routes".into(),
            routes.clone(),
            "-l".into(),
            etc.join(format!("node-{i}.log")).display().to_string(),
        ]
        .into();
        let node = NatsServer::start_with_args(&store, Some(client_ports[i - 1]), &args)
            .await
            .unwrap();
        nodes.push(Some(node));
    }
    let sim = wxlogin_sim::spawn(test_sim_config()).await.unwrap();
    let base = Settings {
        nats_url: client_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(","),
        nats_replicas: 3,
        nats_tls_ca_file: Some(etc.join("ca.pem")),
        database_url: format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display()),
        wechat_base_url: sim.base_url(),
        app_quota: "1000/1s".parse().unwrap(),
        exchange_ack_wait_secs: 5,
        ..named
    };
    let as_role = |identity: Identity| Settings {
        nats_nkey_file: Some(etc.join(format!("{identity}.nk"))),
        ..base.clone()
    };
    // `wxlogin migrate`, while the cluster elects its leaders (connect retries for a while).
    roles::migrate_nats(&as_role(Identity::Admin))
        .await
        .unwrap();
    let (keyring, shutdown) = (test_keyring(), CancellationToken::new());
    let apps = vec![App {
        appid: APPID.into(),
        secret: SecretString::from(SECRET.to_string()),
    }];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    let running = vec![
        tokio::spawn({
            let (s, k, a, sd) = (
                as_role(Identity::Ingress),
                keyring.clone(),
                apps.clone(),
                shutdown.clone(),
            );
            async move { roles::ingress(&s, k, &a, listener, sd).await }
        }),
        tokio::spawn({
            let (s, k, a, sd) = (
                as_role(Identity::Worker),
                keyring.clone(),
                apps.clone(),
                shutdown.clone(),
            );
            async move { roles::worker(&s, k, &a, sd).await }
        }),
        tokio::spawn({
            let (s, sd) = (as_role(Identity::Upserter), shutdown.clone());
            async move { roles::upserter(&s, sd).await }
        }),
    ];
    let http = reqwest::Client::new();
    let client = MiniProgram {
        patience: Duration::from_secs(60),
        through_outages: true,
        ..MiniProgram::new(http.clone(), &api, APPID)
    };
    let control = sim.control();
    let mut statuses = Vec::new();
    for i in 0..30 {
        if i == 15 {
            nodes[0].take().unwrap().stop().await; // one node of three dies
        }
        // While the cluster moves its leaders off the dead node, logins answer `503 -1`: the
        // mini program calls wx.login again, with a new code.
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        let status = loop {
            let code = control.mint_code(APPID, &format!("u{i}")).await.unwrap();
            let status = match client.post_login(&code).await {
                Ok(first) => client.follow(first).await.map(|a| a.status).unwrap_or(0),
                Err(_) => 0,
            };
            if status == 200 || std::time::Instant::now() > deadline {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        statuses.push(status);
    }
    assert!(
        statuses.iter().all(|&s| s == 200),
        "logins on the secured cluster: {statuses:?}"
    );
    for i in 1..=3 {
        let log = std::fs::read_to_string(etc.join(format!("node-{i}.log"))).unwrap_or_default();
        let refused: Vec<&str> = log.lines().filter(|l| l.contains("Violation")).collect();
        assert!(
            refused.is_empty(),
            "node {i} refused:\n{}",
            refused.join("\n")
        );
        assert!(log.contains("TLS"), "node {i} runs TLS");
    }
    shutdown.cancel();
    for r in running {
        let _ = tokio::time::timeout(Duration::from_secs(20), r).await;
    }
}
