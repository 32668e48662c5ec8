//! `wxlogin bench --spawn`: everything a figure needs on a fresh machine. A temporary
//! nats-server, the simulator in this process (0 ms latency, no quota), and `wxlogin up` as a
//! child process (so its memory is its own) on a temporary SQLite file.

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};

use crate::{
    crypto::MasterKey,
    natsd::NatsServer,
    sim::{self, SimApp, SimConfig, SimServer},
};

/// The spawned parts; dropping them kills them.
pub struct Spawned {
    nats: NatsServer,
    sim: SimServer,
    child: Child,
    api: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Spawned {
    pub async fn start(appid: &str) -> anyhow::Result<Spawned> {
        let dir = tempfile::tempdir().context("cannot make a temporary directory")?;
        let nats = NatsServer::start_temporary()
            .await
            .context("cannot start nats-server")?;
        let app = SimApp {
            appid: appid.to_owned(),
            ..SimApp::demo()
        };
        let secret = app.secret.clone();
        let sim = sim::spawn(SimConfig {
            apps: vec![app],
            ..SimConfig::default()
        })
        .await
        .context("cannot start the simulator")?;
        let http_addr = free_loopback_addr()?;
        let log = dir.path().join("wxlogin-up.log");
        let log_file = std::fs::File::create(&log)?;
        let exe = std::env::current_exe().context("cannot find the wxlogin binary")?;
        let mut cmd = Command::new(exe);
        // Only our settings: a WXLOGIN_* of the caller's shell must not redirect the run.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            if name.starts_with("WXLOGIN_") && name != "WXLOGIN_NATS_SERVER_BIN" {
                cmd.env_remove(name);
            }
        }
        let db = dir.path().join("bench.db");
        cmd.arg("up")
            .current_dir(dir.path())
            .env("WXLOGIN_NATS_URL", nats.url())
            .env(
                "WXLOGIN_DATABASE_URL",
                format!("sqlite://{}?mode=rwc", db.display()),
            )
            .env("WXLOGIN_HTTP_ADDR", http_addr.to_string())
            .env("WXLOGIN_WECHAT_BASE_URL", sim.base_url())
            .env("WXLOGIN_APPS", format!("{appid}={secret}"))
            // The quota is not what is measured: far above any rate this machine reaches.
            .env("WXLOGIN_APP_QUOTA", "1000000000/60s")
            .env("WXLOGIN_MASTER_KEY", MasterKey::generate().to_base64())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true);
        let child = cmd.spawn().context("cannot start `wxlogin up`")?;
        let mut spawned = Spawned {
            nats,
            sim,
            child,
            api: format!("http://{http_addr}"),
            log,
            _dir: dir,
        };
        if let Err(e) = spawned.wait_ready().await {
            let tail = spawned.log_tail();
            spawned.stop().await;
            return Err(e.context(format!("wxlogin up's log ends with:\n{tail}")));
        }
        Ok(spawned)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("wxlogin up exited at start ({status})");
            }
            let ready = http
                .get(format!("{}/readyz", self.api))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("wxlogin up was not ready within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn api_url(&self) -> String {
        self.api.clone()
    }

    pub fn sim_url(&self) -> String {
        self.sim.base_url()
    }

    pub fn nats_url(&self) -> &str {
        self.nats.url()
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// The last lines `wxlogin up` logged (it logs no secrets).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        self.sim.shutdown().await;
        self.nats.stop().await;
    }
}

/// A loopback address nothing listens on right now (the child binds it a moment later).
fn free_loopback_addr() -> anyhow::Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}
