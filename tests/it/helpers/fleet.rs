//! A fleet of real `wxlogin` processes (ingress, N workers, upserter) against a test's own
//! nats-server, simulator and database: what fault tests kill, stop and restart.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use natsd::NatsServer;
use tokio::process::{Child, Command};
use wxlogin::{crypto::MasterKey, quota::Quota};
use wxlogin_bench::MiniProgram;
use wxlogin_sim::{self as sim, SimConfig, SimControl, SimServer};

use super::{APPID, SECRET};

pub struct FleetOptions {
    pub workers: usize,
    pub quota: Quota,
    pub login_wait: Duration,
    pub code_ttl_secs: u64,
    pub ack_wait_secs: u64,
    pub sim: SimConfig,
    /// `RUST_LOG` of every role.
    pub log_filter: String,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            workers: 3,
            quota: "1000/1s".parse().unwrap(),
            login_wait: Duration::from_secs(2),
            code_ttl_secs: 300,
            ack_wait_secs: 4,
            sim: super::test_sim_config(),
            log_filter: "warn".into(),
        }
    }
}

pub struct Fleet {
    /// Behind a lock so a test can stop and restart it while logins run.
    pub nats: tokio::sync::Mutex<NatsServer>,
    /// Kept for its lifetime: dropping it stops the simulator.
    _sim: SimServer,
    pub control: SimControl,
    pub api: String,
    pub http: reqwest::Client,
    pub db_url: String,
    pub env: Vec<(String, String)>,
    pub ingress: Child,
    pub workers: Vec<Child>,
    pub upserter: Child,
    pub dir: tempfile::TempDir,
}

impl Fleet {
    pub async fn start(opts: FleetOptions) -> Fleet {
        wxlogin::telemetry::init_with_default("warn");
        let dir = tempfile::tempdir().unwrap();
        let nats = NatsServer::start(&dir.path().join("nats"), None)
            .await
            .unwrap();
        let sim = sim::spawn(opts.sim).await.unwrap();
        let db_url = format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display());
        let port = super::free_port();
        let env: Vec<(String, String)> = [
            ("WXLOGIN_NATS_URL", nats.url().to_string()),
            (
                "WXLOGIN_NATS_PREFIX",
                format!("f{}", &uuid::Uuid::new_v4().simple().to_string()[..10]),
            ),
            ("WXLOGIN_DATABASE_URL", db_url.clone()),
            ("WXLOGIN_HTTP_ADDR", format!("127.0.0.1:{port}")),
            ("WXLOGIN_WECHAT_BASE_URL", sim.base_url()),
            ("WXLOGIN_WECHAT_TIMEOUT_MS", "1000".into()),
            ("WXLOGIN_APPS", format!("{APPID}={SECRET}")),
            ("WXLOGIN_APP_QUOTA", opts.quota.to_string()),
            (
                "WXLOGIN_LOGIN_WAIT_MS",
                opts.login_wait.as_millis().to_string(),
            ),
            ("WXLOGIN_CODE_TTL_SECS", opts.code_ttl_secs.to_string()),
            (
                "WXLOGIN_EXCHANGE_ACK_WAIT_SECS",
                opts.ack_wait_secs.to_string(),
            ),
            ("WXLOGIN_UPSERT_BATCH", "100".into()),
            ("WXLOGIN_MASTER_KEY", MasterKey::generate().to_base64()),
            ("RUST_LOG", opts.log_filter.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        // Migrate once up front, as an operator would, so the roles start on a ready schema.
        migrate(&env, dir.path()).await;
        let ingress = spawn_role(&env, dir.path(), "ingress", 0);
        let mut fleet = Fleet {
            api: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            control: sim.control(),
            ingress,
            workers: Vec::new(),
            upserter: spawn_role(&env, dir.path(), "upserter", 0),
            _sim: sim,
            nats: tokio::sync::Mutex::new(nats),
            db_url,
            env,
            dir,
        };
        for i in 0..opts.workers {
            fleet.add_worker(i);
        }
        fleet.wait_ready().await;
        fleet
    }

    pub fn add_worker(&mut self, i: usize) {
        let worker = self.spawn_worker(i);
        self.workers.push(worker);
    }

    /// Another worker process `i`, the caller's to hold (and to stop).
    pub fn spawn_worker(&self, i: usize) -> Child {
        self.spawn_worker_with(i, &[])
    }

    /// Another worker process `i` with settings of its own over the fleet's (a NATS URL through
    /// a proxy, a clock offset), the caller's to hold.
    pub fn spawn_worker_with(&self, i: usize, own: &[(&str, String)]) -> Child {
        let mut env = self.env.clone();
        env.extend(own.iter().map(|(k, v)| (k.to_string(), v.clone())));
        spawn_role(&env, self.dir.path(), "worker", i)
    }

    /// The NATS server's `host:port` (what a proxy in front of it forwards to).
    pub async fn nats_addr(&self) -> String {
        format!("127.0.0.1:{}", self.nats.lock().await.port())
    }

    async fn wait_ready(&self) {
        for _ in 0..300 {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.api)).send().await
                && r.status() == 200
            {
                // Give the workers a moment to bind their consumer.
                tokio::time::sleep(Duration::from_millis(500)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the fleet never became ready; logs in {}",
            self.dir.path().display()
        );
    }

    pub async fn mint(&self, user: &str) -> String {
        self.control.mint_code(APPID, user).await.expect("mint")
    }

    /// `POST /v1/login` with the code.
    pub async fn post_login(&self, code: &str) -> reqwest::Result<reqwest::Response> {
        self.http
            .post(format!("{}/v1/login", self.api))
            .json(&serde_json::json!({"appid": APPID, "code": code}))
            .send()
            .await
    }

    /// One login as a mini program does it: post, then follow 202 tickets for up to
    /// `patience`, through outages (the ticket stays good while NATS is away).
    pub async fn login(&self, code: &str, patience: Duration) -> Outcome {
        let started = std::time::Instant::now();
        let mut client = MiniProgram {
            through_outages: true,
            ..MiniProgram::new(self.http.clone(), self.api.clone(), APPID)
        };
        let first = client.post_login(code).await;
        // The patience counts from the post, as a user's does.
        client.patience = patience.saturating_sub(started.elapsed());
        let first = match first {
            Ok(a) if a.status == 200 || a.status == 202 => a,
            Ok(a) => return Outcome::NotAccepted(format!("{} {}", a.status, a.body["errcode"])),
            Err(_) => return Outcome::NotAccepted("connection".into()),
        };
        match client.follow(first).await {
            Ok(a) if a.status == 200 => Outcome::Succeeded,
            Ok(a) if a.status == 202 => Outcome::Lost,
            Ok(a) => Outcome::Failed(format!("{} {}", a.status, a.body["errcode"])),
            Err(e) => Outcome::Failed(e),
        }
    }

    /// Runs `n` logins with `concurrency` at a time; returns outcome counts.
    pub async fn load(
        self: &Arc<Self>,
        n: usize,
        concurrency: usize,
        patience: Duration,
    ) -> Report {
        let report = Arc::new(Mutex::new(Report::default()));
        let mut codes = Vec::new();
        for i in 0..n {
            codes.push(self.mint(&format!("user-{i}")).await);
        }
        let codes = Arc::new(Mutex::new(codes));
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (fleet, codes, report) = (self.clone(), codes.clone(), report.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let Some(code) = codes.lock().unwrap().pop() else {
                        break;
                    };
                    let outcome = fleet.login(&code, patience).await;
                    report.lock().unwrap().add(outcome);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        Arc::try_unwrap(report).unwrap().into_inner().unwrap()
    }

    /// The prefix of the fleet's streams, buckets and subjects.
    pub fn prefix(&self) -> &str {
        self.env
            .iter()
            .find(|(k, _)| k == "WXLOGIN_NATS_PREFIX")
            .map(|(_, v)| v.as_str())
            .expect("the fleet has a prefix")
    }

    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

/// A `wxlogin <role>` process with `env`, its stderr in `<dir>/<role>-<i>.log` (appended: a
/// restarted process keeps writing to the same file), killed on drop.
pub fn spawn_role(env: &[(String, String)], dir: &std::path::Path, role: &str, i: usize) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{role}-{i}.log")))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_wxlogin"))
        .arg(role)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn wxlogin")
}

/// `wxlogin migrate` with `env` (the database and NATS), run to its end; panics if it fails.
pub async fn migrate(env: &[(String, String)], dir: &std::path::Path) {
    let migrated = spawn_role(env, dir, "migrate", 0).wait().await.unwrap();
    assert!(
        migrated.success(),
        "wxlogin migrate failed; see {}",
        dir.display()
    );
}

/// Sends SIGTERM and waits for the process to exit; returns whether it exited cleanly.
pub async fn terminate(child: &mut Child) -> bool {
    let pid = child.id().expect("running");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    match tokio::time::timeout(Duration::from_secs(60), child.wait()).await {
        Ok(Ok(status)) => status.success(),
        _ => false,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed(String),
    /// The ingress refused it (never accepted): not a loss.
    NotAccepted(String),
    /// Accepted (202) but never answered: a loss.
    Lost,
}

#[derive(Debug, Default)]
pub struct Report {
    pub succeeded: usize,
    pub failed: BTreeMap<String, usize>,
    pub not_accepted: BTreeMap<String, usize>,
    pub lost: usize,
}

impl Report {
    fn add(&mut self, o: Outcome) {
        match o {
            Outcome::Succeeded => self.succeeded += 1,
            Outcome::Failed(why) => *self.failed.entry(why).or_default() += 1,
            Outcome::NotAccepted(why) => *self.not_accepted.entry(why).or_default() += 1,
            Outcome::Lost => self.lost += 1,
        }
    }

    pub fn accepted(&self) -> usize {
        self.succeeded + self.failed.values().sum::<usize>() + self.lost
    }

    /// Prints the figures so the fault battery reads like a report.
    pub fn print(&self, name: &str, stats: &wxlogin_sim::SimStats, extra: &str) {
        println!(
            "[{name}] accepted={} succeeded={} failed={:?} not_accepted={:?} lost={} upstream_calls={} calls_per_code={:?} {extra}",
            self.accepted(),
            self.succeeded,
            self.failed,
            self.not_accepted,
            self.lost,
            stats.calls,
            stats.calls_per_code,
        );
    }
}
