//! The fleet a chaos run attacks: several real `wxlogin` processes of each role, nats-server
//! (one behind a delaying proxy, or a 3-node cluster), the database (a SQLite file, or a fresh
//! PostgreSQL database behind a proxy that can cut it off), and the simulator; and how each
//! fault of the schedule is done to them.

use std::{path::Path, time::Duration};

use natsd::NatsServer;
use tokio::process::Child;
use wxlogin::{crypto::MasterKey, quota::Quota};
use wxlogin_sim::{self as sim, Faults, SimControl, SimServer};

use super::schedule::{Fault, Role, Shape, SimFault};
use crate::helpers::{APPID, SECRET, fleet::spawn_role, free_port, proxy::DelayProxy};

/// The lifetimes of the run: short, so that expiries happen inside it.
pub const CODE_TTL_SECS: u64 = 10;
pub const ACK_WAIT_SECS: u64 = 4;
/// The floor the settings allow: code TTL + ack wait + 60 s.
pub const RESULTS_MAX_AGE_SECS: u64 = CODE_TTL_SECS + ACK_WAIT_SECS + 60;
pub const SESSION_TTL_SECS: u64 = RESULTS_MAX_AGE_SECS + 16;
pub const QUOTA: &str = "40/1s";

/// One process of a role, and how to start it again.
pub struct Proc {
    pub role: Role,
    pub index: usize,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Proc {
    fn start(&mut self, dir: &Path) {
        self.child = Some(spawn_role(&self.env, dir, self.role.name(), self.index));
    }

    /// `kill -9`, or SIGTERM and a wait for the process to finish its drain.
    async fn stop(&mut self, hard: bool) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if hard {
            let _ = child.kill().await;
        } else {
            crate::helpers::fleet::terminate(&mut child).await;
        }
    }
}

pub enum Nats {
    /// One server; every role reaches it through the proxy (the slowed-NATS fault).
    Single {
        server: Box<NatsServer>,
        proxy: DelayProxy,
    },
    Cluster(Vec<NatsServer>),
}

pub struct World {
    pub shape: Shape,
    pub nats: Nats,
    /// Kept for its lifetime: dropping it stops the simulator.
    _sim: SimServer,
    pub control: SimControl,
    /// The proxy in front of the PostgreSQL database, if the run uses one.
    db_proxy: Option<DelayProxy>,
    pub db_url: String,
    /// The URL of a NATS server as the test's own connections use it (no proxy).
    pub nats_direct: String,
    pub env: Vec<(String, String)>,
    pub ingresses: Vec<String>,
    pub procs: Vec<Proc>,
    pub dir: tempfile::TempDir,
}

impl World {
    pub async fn start(shape: Shape, seed: u64) -> World {
        wxlogin::telemetry::init_with_default("warn");
        let dir = tempfile::tempdir().unwrap();
        let quota: Quota = QUOTA.parse().unwrap();
        let (nats, roles_url, nats_direct) = start_nats(dir.path(), shape.nats_nodes).await;
        let sim = sim::spawn(sim::SimConfig {
            code_ttl: Duration::from_secs(CODE_TTL_SECS),
            // WeChat's own limit is the fleet's: a window over it answers 45011 and shows in
            // `max_in_window`.
            app_quota: Some(QUOTA.parse().unwrap()),
            ..crate::helpers::test_sim_config()
        })
        .await
        .unwrap();
        let (db_url, db_proxy, roles_db) = if shape.postgres {
            let (url, _, _) = crate::helpers::fresh_postgres().await;
            let mut parsed = url::Url::parse(&url).unwrap();
            let target = format!(
                "{}:{}",
                parsed.host_str().unwrap(),
                parsed.port().unwrap_or(5432)
            );
            let proxy = DelayProxy::start(&target, Duration::ZERO).await;
            parsed.set_port(Some(proxy.port())).unwrap();
            (url, Some(proxy), parsed.to_string())
        } else {
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display());
            (url.clone(), None, url)
        };
        let prefix = format!("c{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let env: Vec<(String, String)> = [
            ("WXLOGIN_NATS_URL", roles_url),
            ("WXLOGIN_NATS_PREFIX", prefix),
            (
                "WXLOGIN_NATS_REPLICAS",
                if shape.nats_nodes == 3 { "3" } else { "1" }.into(),
            ),
            ("WXLOGIN_DATABASE_URL", roles_db),
            ("WXLOGIN_WECHAT_BASE_URL", sim.base_url()),
            ("WXLOGIN_WECHAT_TIMEOUT_MS", "1000".into()),
            ("WXLOGIN_APPS", format!("{APPID}={SECRET}")),
            ("WXLOGIN_APP_QUOTA", quota.to_string()),
            ("WXLOGIN_LOGIN_WAIT_MS", "1500".into()),
            ("WXLOGIN_CODE_TTL_SECS", CODE_TTL_SECS.to_string()),
            ("WXLOGIN_EXCHANGE_ACK_WAIT_SECS", ACK_WAIT_SECS.to_string()),
            (
                "WXLOGIN_RESULTS_MAX_AGE_SECS",
                RESULTS_MAX_AGE_SECS.to_string(),
            ),
            ("WXLOGIN_SESSION_TTL_SECS", SESSION_TTL_SECS.to_string()),
            ("WXLOGIN_WORKER_DRAIN_SECS", "5".into()),
            ("WXLOGIN_UPSERT_BATCH", "50".into()),
            ("WXLOGIN_MASTER_KEY", MasterKey::generate().to_base64()),
            ("RUST_LOG", "warn".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        // (`migrate` itself waits for a cluster to elect its JetStream leader.)
        crate::helpers::fleet::migrate(&env, dir.path()).await;
        let mut world = World {
            shape,
            nats,
            control: sim.control(),
            _sim: sim,
            db_proxy,
            db_url,
            nats_direct,
            env,
            ingresses: Vec::new(),
            procs: Vec::new(),
            dir,
        };
        world.spawn_procs(&super::schedule::clock_offsets(seed, shape.workers));
        world.wait_ready().await;
        world
    }

    fn spawn_procs(&mut self, clock_offsets_ms: &[i64]) {
        let roles = [
            (Role::Upserter, self.shape.upserters),
            (Role::Worker, self.shape.workers),
            (Role::Ingress, self.shape.ingresses),
        ];
        for (role, n) in roles {
            for index in 0..n {
                let mut env = self.env.clone();
                if role == Role::Ingress {
                    let port = free_port();
                    env.push(("WXLOGIN_HTTP_ADDR".into(), format!("127.0.0.1:{port}")));
                    self.ingresses.push(format!("http://127.0.0.1:{port}"));
                }
                if let (Role::Worker, Some(offset)) = (role, clock_offsets_ms.get(index)) {
                    env.push(("WXLOGIN_TEST_CLOCK_OFFSET_MS".into(), offset.to_string()));
                }
                let mut proc = Proc {
                    role,
                    index,
                    env,
                    child: None,
                };
                proc.start(self.dir.path());
                self.procs.push(proc);
            }
        }
    }

    async fn wait_ready(&self) {
        let http = reqwest::Client::new();
        for api in &self.ingresses {
            let ready = async {
                loop {
                    if let Ok(r) = http.get(format!("{api}/readyz")).send().await
                        && r.status() == 200
                    {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            tokio::time::timeout(Duration::from_secs(60), ready)
                .await
                .unwrap_or_else(|_| panic!("{api} never became ready; logs in {:?}", self.dir));
        }
        // The workers bind their consumer a moment after the ingresses answer.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    pub fn prefix(&self) -> &str {
        let found = self.env.iter().find(|(k, _)| k == "WXLOGIN_NATS_PREFIX");
        &found.expect("a prefix").1
    }

    /// Does `fault` to the fleet, waits while it lasts, and undoes it.
    pub async fn inflict(&mut self, fault: &Fault) {
        match fault {
            Fault::Process {
                role,
                index,
                hard,
                down,
            } => {
                let dir = self.dir.path().to_path_buf();
                let proc = (self.procs.iter_mut())
                    .find(|p| p.role == *role && p.index == *index)
                    .expect("the process exists");
                proc.stop(*hard).await;
                tokio::time::sleep(*down).await;
                proc.start(&dir);
            }
            Fault::Nats { node, hard, down } => {
                let server = match &mut self.nats {
                    Nats::Single { server, .. } => &mut **server,
                    Nats::Cluster(nodes) => &mut nodes[*node],
                };
                let restarted = if *hard {
                    server.restart(*down).await
                } else {
                    server.restart_after_shutdown(*down).await
                };
                restarted.expect("nats-server starts again");
            }
            Fault::Database { down } => {
                self.db_proxy.as_ref().expect("a database proxy").cut(*down);
                tokio::time::sleep(*down).await;
            }
            Fault::SlowNats { delay, lasting } => {
                let Nats::Single { proxy, .. } = &self.nats else {
                    panic!("NATS is slowed through the single server's proxy");
                };
                proxy.set_delay(*delay);
                tokio::time::sleep(*lasting).await;
                proxy.set_delay(Duration::ZERO);
            }
            Fault::Sim { fault, lasting } => {
                let faults = sim_faults(*fault, *lasting);
                self.control.set_faults(&faults).await.unwrap();
                tokio::time::sleep(*lasting).await;
                self.control.set_faults(&Faults::default()).await.unwrap();
            }
        }
    }

    /// Every process still running is stopped with SIGTERM (what the checks read is settled).
    pub async fn stop_all(&mut self) {
        for proc in self.procs.iter_mut().rev() {
            proc.stop(false).await;
        }
    }

    /// Every log the wxlogin processes wrote, for the secrets check (nats-server's go nowhere).
    pub fn logs(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut dirs = vec![self.dir.path().to_path_buf()];
        while let Some(d) = dirs.pop() {
            for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "log") {
                    let text = std::fs::read(&path).unwrap_or_default();
                    let name = path.display().to_string();
                    out.push((name, String::from_utf8_lossy(&text).into_owned()));
                }
            }
        }
        out
    }
}

fn sim_faults(f: SimFault, lasting: Duration) -> Faults {
    let none = Faults::default();
    match f {
        SimFault::Busy(r) => Faults {
            busy_ratio: r,
            ..none
        },
        SimFault::Http502(r) => Faults {
            http_502_ratio: r,
            ..none
        },
        SimFault::Garbage(r) => Faults {
            garbage_ratio: r,
            ..none
        },
        SimFault::Hang(r) => Faults {
            hang_ratio: r,
            ..none
        },
        SimFault::Latency(ms) => Faults {
            latency_ms: ms,
            ..none
        },
        SimFault::Storm => Faults {
            storm_45011_secs: lasting.as_secs_f64(),
            ..none
        },
    }
}

/// The servers, the URL the roles get, and a direct URL for the test's own connections.
async fn start_nats(dir: &Path, nodes: usize) -> (Nats, String, String) {
    if nodes == 1 {
        let server = NatsServer::start(&dir.join("nats"), None).await.unwrap();
        let proxy =
            DelayProxy::start(&format!("127.0.0.1:{}", server.port()), Duration::ZERO).await;
        let (roles, direct) = (proxy.nats_url(), server.url().to_string());
        let server = Box::new(server);
        return (Nats::Single { server, proxy }, roles, direct);
    }
    let servers = natsd::start_cluster(dir, nodes, "wxlogin-chaos")
        .await
        .unwrap();
    let urls = natsd::urls(&servers);
    (Nats::Cluster(servers), urls.clone(), urls)
}
