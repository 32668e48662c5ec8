//! `wxlogin bench --spawn`: everything a figure needs on a fresh machine. A temporary
//! nats-server, the simulator in this process (no quota; latency as asked), and wxlogin as
//! child processes (so their memory is their own): `wxlogin up`, or an ingress, N exchange
//! workers and an upserter as separate processes. The database is a temporary SQLite file
//! unless a URL is given (e.g. a fresh PostgreSQL database).

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};

use natsd::NatsServer;
use wxlogin_sim::{self as sim, Faults, SimApp, SimConfig, SimServer};

/// What to start.
#[derive(Debug, Clone, Default)]
pub(crate) struct SpawnPlan {
    /// `None`: one `wxlogin up`; `Some(n)`: an ingress, n workers and an upserter.
    pub workers: Option<usize>,
    /// The simulator's answer latency.
    pub sim_latency: Duration,
    /// The database; `None`: a temporary SQLite file.
    pub database_url: Option<String>,
    /// Go's `GOGC` for the nats-server (`None`: Go's default, 100).
    pub nats_gogc: Option<String>,
    /// More settings for the spawned wxlogin processes (`WXLOGIN_…`, value).
    pub settings: Vec<(String, String)>,
}

/// The spawned parts; dropping them kills them.
pub(crate) struct Spawned {
    nats: NatsServer,
    sim: SimServer,
    /// (role, process), the ingress (or `up`) first.
    children: Vec<(String, Child)>,
    api: String,
    dir: tempfile::TempDir,
    appid: String,
    secret: String,
}

impl Spawned {
    pub(crate) async fn start(appid: &str, plan: &SpawnPlan) -> anyhow::Result<Spawned> {
        let dir = tempfile::tempdir().context("cannot make a temporary directory")?;
        let env: Vec<(&str, &str)> = plan
            .nats_gogc
            .iter()
            .map(|g| ("GOGC", g.as_str()))
            .collect();
        // Monitoring on a random port: the bench reads the server's own message counters.
        let monitoring = ["-m".to_owned(), "-1".to_owned()];
        let nats = NatsServer::start_temporary_with(&env, &monitoring)
            .await
            .context("cannot start nats-server")?;
        let app = SimApp {
            appid: appid.to_owned(),
            ..SimApp::demo()
        };
        let secret = app.secret.clone();
        let sim = sim::spawn(SimConfig {
            apps: vec![app],
            faults: Faults {
                latency_ms: plan.sim_latency.as_millis() as u64,
                ..Faults::default()
            },
            ..SimConfig::default()
        })
        .await
        .context("cannot start the simulator")?;
        let http_addr = free_loopback_addr()?;
        let db = match &plan.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("bench.db").display()
            ),
        };
        let mut env: Vec<(&str, String)> = vec![
            ("WXLOGIN_NATS_URL", nats.url().to_owned()),
            ("WXLOGIN_DATABASE_URL", db),
            ("WXLOGIN_HTTP_ADDR", http_addr.to_string()),
            ("WXLOGIN_WECHAT_BASE_URL", sim.base_url()),
            ("WXLOGIN_APPS", format!("{appid}={secret}")),
            // The quota is not what is measured: far above any rate this machine reaches.
            ("WXLOGIN_APP_QUOTA", "1000000000/60s".into()),
            ("WXLOGIN_MASTER_KEY", master_key().await?),
            (
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            ),
        ];
        env.extend(plan.settings.iter().map(|(k, v)| (k.as_str(), v.clone())));
        let mut spawned = Spawned {
            nats,
            sim,
            children: Vec::new(),
            api: format!("http://{http_addr}"),
            dir,
            appid: appid.to_owned(),
            secret,
        };
        let roles: Vec<String> = match plan.workers {
            None => vec!["up".into()],
            Some(n) => {
                // Separate roles do not migrate: do it once, as an operator would.
                let status = spawned.command("migrate", &env)?.status().await?;
                if !status.success() {
                    bail!("wxlogin migrate failed ({status}):\n{}", spawned.log_tail());
                }
                let mut roles = vec!["ingress".to_owned(), "upserter".to_owned()];
                roles.extend((0..n).map(|i| format!("worker-{i}")));
                roles
            }
        };
        for role in roles {
            let child = spawned
                .command(&role, &env)?
                .spawn()
                .with_context(|| format!("cannot start `wxlogin {role}`"))?;
            spawned.children.push((role, child));
        }
        if let Err(e) = spawned.wait_ready().await {
            let tail = spawned.log_tail();
            spawned.stop().await;
            return Err(e.context(format!("the spawned wxlogin logged:\n{tail}")));
        }
        Ok(spawned)
    }

    /// `wxlogin <role>` with only our settings (a WXLOGIN_* of the caller's shell must not
    /// redirect the run), logging to `<role>.log` in the temporary directory.
    fn command(&self, role: &str, env: &[(&str, String)]) -> anyhow::Result<Command> {
        let log = std::fs::File::create(self.dir.path().join(format!("{role}.log")))?;
        let mut cmd = Command::new(wxlogin_exe()?);
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            if name.starts_with("WXLOGIN_") && name != "WXLOGIN_NATS_SERVER_BIN" {
                cmd.env_remove(name);
            }
        }
        // `worker-3` runs `wxlogin worker`.
        cmd.arg(role.split('-').next().unwrap_or(role))
            .current_dir(self.dir.path())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        Ok(cmd)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            for (role, child) in &mut self.children {
                if let Some(status) = child.try_wait()? {
                    bail!("wxlogin {role} exited at start ({status})");
                }
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
                bail!("wxlogin was not ready within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) fn api_url(&self) -> String {
        self.api.clone()
    }

    pub(crate) fn sim_url(&self) -> String {
        self.sim.base_url()
    }

    pub(crate) fn nats_url(&self) -> &str {
        self.nats.url()
    }

    /// The spawned processes: (role, pid), nats-server last.
    pub(crate) fn pids(&self) -> Vec<(String, u32)> {
        let mut pids: Vec<(String, u32)> = self
            .children
            .iter()
            .map(|(role, c)| (role.clone(), c.id().unwrap_or(0)))
            .collect();
        pids.extend(self.nats.pid().map(|pid| ("nats-server".to_owned(), pid)));
        pids
    }

    /// The last lines each spawned process logged (wxlogin logs no secrets).
    pub(crate) fn log_tail(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let path: PathBuf = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                out.push_str(&format!("== {}\n", path.display()));
                out.push_str(&lines[lines.len().saturating_sub(20)..].join("\n"));
                out.push('\n');
            }
        }
        out
    }

    /// nats-server's monitoring endpoint.
    pub(crate) fn nats_monitor(&self) -> Option<String> {
        self.nats.monitoring_url()
    }

    /// Stops the wxlogin processes (the reference runs next, on an otherwise idle machine);
    /// nats-server and the simulator stay.
    pub(crate) async fn stop_wxlogin(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill().await;
        }
        self.children.clear();
    }

    /// Starts the simplest NATS pipeline ([`crate::reference`]) against the same nats-server
    /// and simulator; its URL and pid once it answers.
    pub(crate) async fn start_reference(&mut self) -> anyhow::Result<(String, u32)> {
        let addr = free_loopback_addr()?;
        let log = std::fs::File::create(self.dir.path().join("reference.log"))?;
        let child = Command::new(wxlogin_exe()?)
            .arg("bench-reference")
            .args(["--nats", self.nats.url()])
            .args(["--wechat", &self.sim.base_url()])
            .args(["--appid", &self.appid])
            .args(["--http", &addr.to_string()])
            .env(crate::reference::SECRET_ENV, &self.secret)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start `wxlogin bench-reference`")?;
        let pid = child.id().unwrap_or(0);
        self.children.push(("reference".into(), child));
        let api = format!("http://{addr}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = http
                .get(format!("{api}/v1/me"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok();
            if up {
                return Ok((api, pid));
            }
            if Instant::now() > deadline {
                bail!(
                    "the reference pipeline did not answer within 30 s:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) async fn stop(mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill().await;
        }
        self.sim.shutdown().await;
        self.nats.stop().await;
    }
}

/// A loopback address nothing listens on right now (the child binds it a moment later).
fn free_loopback_addr() -> anyhow::Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// The bench runs inside `wxlogin bench`, so the processes it spawns are this very binary.
fn wxlogin_exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("cannot find the wxlogin binary")
}

/// A fresh master key for the spawned processes, from `wxlogin gen-key`: the key format has
/// its home in wxlogin, not here.
async fn master_key() -> anyhow::Result<String> {
    let out = Command::new(wxlogin_exe()?)
        .arg("gen-key")
        .stdin(Stdio::null())
        .output()
        .await
        .context("cannot run wxlogin gen-key")?;
    if !out.status.success() {
        bail!(
            "wxlogin gen-key failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}
