//! [`Up`]: `wxlogin up` as a child process of the test's own, for what is global to a process
//! and so must not be shared with the tests running beside it in this binary (the metrics
//! recorder: the metrics and status-page tests read exact figures).

use std::time::Duration;

use natsd::NatsServer;
use serde_json::json;
use wxlogin::crypto::MasterKey;
use wxlogin_bench::MiniProgram;
use wxlogin_sim::{SimControl, SimServer};

use super::{APPID, SECRET, free_port, test_sim_config};

/// `wxlogin up` as a child process, with its own nats-server, simulator and SQLite file.
pub struct Up {
    pub api: String,
    pub http: reqwest::Client,
    pub control: SimControl,
    _child: tokio::process::Child,
    _sim: SimServer,
    _nats: NatsServer,
    _dir: tempfile::TempDir,
}

impl Up {
    /// Starts it with `quota` as the app's quota and waits until it is ready.
    pub async fn start(quota: &str) -> Up {
        Up::start_with_database(quota, None).await
    }

    /// The same on `database` (default: a SQLite file of its own). Ready means the ingress
    /// answers, whatever the database does.
    pub async fn start_with_database(quota: &str, database: Option<String>) -> Up {
        let dir = tempfile::tempdir().unwrap();
        let nats = NatsServer::start_temporary().await.unwrap();
        let sim = wxlogin_sim::spawn(test_sim_config()).await.unwrap();
        let api = format!("127.0.0.1:{}", free_port());
        let db = database
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display()));
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wxlogin"))
            .arg("up")
            .current_dir(dir.path())
            .env("WXLOGIN_NATS_URL", nats.url())
            .env("WXLOGIN_DATABASE_URL", db)
            .env("WXLOGIN_HTTP_ADDR", &api)
            .env("WXLOGIN_WECHAT_BASE_URL", sim.base_url())
            .env("WXLOGIN_APPS", format!("{APPID}={SECRET}"))
            .env("WXLOGIN_APP_QUOTA", quota)
            .env("WXLOGIN_MASTER_KEY", MasterKey::generate().to_base64())
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let up = Up {
            api: format!("http://{api}"),
            http: reqwest::Client::new(),
            control: sim.control(),
            _child: child,
            _sim: sim,
            _nats: nats,
            _dir: dir,
        };
        for _ in 0..300 {
            if let Ok(r) = up.get("/readyz").await
                && r.status() == 200
            {
                return up;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("wxlogin up never became ready");
    }

    pub async fn get(&self, path: &str) -> reqwest::Result<reqwest::Response> {
        self.http.get(format!("{}{path}", self.api)).send().await
    }

    pub async fn post_login(&self, code: &str) -> reqwest::Response {
        let body = json!({"appid": APPID, "code": code});
        let url = format!("{}/v1/login", self.api);
        self.http.post(url).json(&body).send().await.unwrap()
    }

    /// The mini program of this app's users.
    pub fn miniprogram(&self) -> MiniProgram {
        MiniProgram::new(self.http.clone(), self.api.clone(), APPID)
    }
}
