//! `wxlogin sim` on the command line: [`SimArgs`] (flags over an optional TOML file) and
//! [`run`], which binds, says where it listens and how to get a code, and serves.

use std::{future::Future, path::PathBuf, time::Duration};

use figment::{Figment, providers::Format as _, providers::Toml};

use super::{DEMO_APPID, DEMO_SECRET, SimApp, SimConfig, serve};
use crate::quota::Quota;

/// Flags of `wxlogin sim`. Flags override the `--config` file; without any app, the demo app.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9090")]
    pub addr: String,
    /// An app the simulator knows (repeatable); `:unionid` binds it to an Open Platform account.
    #[arg(long = "app", value_name = "APPID=SECRET[:unionid]")]
    pub apps: Vec<SimApp>,
    /// A TOML file with a SimConfig (apps, code_ttl_secs, app_quota, user_quota, faults, ...).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Lifetime of a minted code, in seconds (WeChat: 300).
    #[arg(long, value_name = "SECS")]
    pub code_ttl_secs: Option<f64>,
    /// Per-appid frequency limit, e.g. `100/60s` (45011 beyond).
    #[arg(long, value_name = "N/Ts")]
    pub app_quota: Option<Quota>,
    /// Per-user frequency limit, e.g. `10/60s` (45011 beyond).
    #[arg(long, value_name = "N/Ts")]
    pub user_quota: Option<Quota>,
    /// Share of calls answered -1 (system busy).
    #[arg(long, value_name = "RATIO")]
    pub busy_ratio: Option<f64>,
    /// Latency added to every exchange answer.
    #[arg(long, value_name = "MS")]
    pub latency_ms: Option<u64>,
    /// Share of calls answered by an HTML 502 page.
    #[arg(long, value_name = "RATIO")]
    pub http_502_ratio: Option<f64>,
    /// Share of calls answered with a garbage body (HTTP 200).
    #[arg(long, value_name = "RATIO")]
    pub garbage_ratio: Option<f64>,
    /// Share of calls never answered.
    #[arg(long, value_name = "RATIO")]
    pub hang_ratio: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("simulator configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("simulator server: {0}")]
    Io(#[from] std::io::Error),
}

impl SimArgs {
    /// The configuration these flags describe: file, then flags, then the demo app if no app.
    pub fn to_config(&self) -> Result<SimConfig, SimError> {
        let mut config = match &self.config {
            Some(path) => {
                // Read it ourselves: figment's `Toml::file` would treat a missing file as empty.
                let text = std::fs::read_to_string(path).map_err(|e| {
                    SimError::Config(format!("cannot read {}: {e}", path.display()))
                })?;
                Figment::from(Toml::string(&text))
                    .extract::<SimConfig>()
                    .map_err(|e| SimError::Config(format!("{}: {e}", path.display())))?
            }
            None => SimConfig::default(),
        };
        for app in &self.apps {
            config.apps.retain(|a| a.appid != app.appid);
            config.apps.push(app.clone());
        }
        if config.apps.is_empty() {
            config.apps.push(SimApp::demo());
        }
        if let Some(secs) = self.code_ttl_secs {
            config.code_ttl = Duration::try_from_secs_f64(secs).map_err(|_| {
                SimError::Config("--code-ttl-secs must be a positive number".into())
            })?;
        }
        config.app_quota = self.app_quota.or(config.app_quota);
        config.user_quota = self.user_quota.or(config.user_quota);
        let f = &mut config.faults;
        f.busy_ratio = self.busy_ratio.unwrap_or(f.busy_ratio);
        f.latency_ms = self.latency_ms.unwrap_or(f.latency_ms);
        f.http_502_ratio = self.http_502_ratio.unwrap_or(f.http_502_ratio);
        f.garbage_ratio = self.garbage_ratio.unwrap_or(f.garbage_ratio);
        f.hang_ratio = self.hang_ratio.unwrap_or(f.hang_ratio);
        config.validate().map_err(SimError::Config)?;
        Ok(config)
    }
}

/// What `wxlogin sim` runs: serves until `shutdown` completes.
pub async fn run(
    args: SimArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SimError> {
    let config = args.to_config()?;
    let listener = tokio::net::TcpListener::bind(&args.addr)
        .await
        .map_err(|source| SimError::Bind {
            addr: args.addr.clone(),
            source,
        })?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "WeChat simulator listening: code2Session at http://{addr}/sns/jscode2session");
    for app in &config.apps {
        // Only the demo secret is public; real-looking secrets stay out of logs.
        let secret = if app.appid == DEMO_APPID && app.secret == DEMO_SECRET {
            DEMO_SECRET
        } else {
            "<hidden>"
        };
        tracing::info!(appid = %app.appid, secret, unionid = app.unionid, "simulated app");
    }
    let appid = &config.apps[0].appid;
    tracing::info!(
        "mint a code (the simulated wx.login): curl -s -X POST http://{addr}/sim/login -d '{{\"appid\":\"{appid}\",\"user\":\"alice\"}}'"
    );
    serve(config, listener, shutdown).await?;
    tracing::info!("WeChat simulator stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    #[test]
    fn without_flags_the_demo_app_is_served_on_port_9090() {
        let cli = Cli::parse_from(["sim"]);
        assert_eq!(cli.sim.addr, "127.0.0.1:9090");
        let config = cli.sim.to_config().unwrap();
        assert_eq!(config.apps, vec![SimApp::demo()]);
        assert_eq!(config.code_ttl, Duration::from_secs(300));
    }

    #[test]
    fn flags_override_the_config_file() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(
            &mut file,
            br#"
code_ttl_secs = 120
app_quota = "100/60s"
[[apps]]
appid = "wxfile"
secret = "filesecret"
unionid = true
[faults]
busy_ratio = 0.25
latency_ms = 5
"#,
        )
        .unwrap();
        let path = file.path().to_str().unwrap();
        let cli = Cli::parse_from([
            "sim",
            "--config",
            path,
            "--app",
            "wxflag=flagsecret",
            "--busy-ratio",
            "0.5",
            "--user-quota",
            "3/1s",
        ]);
        let c = cli.sim.to_config().unwrap();
        assert_eq!(c.apps.len(), 2);
        assert!(c.apps[0].unionid);
        assert_eq!(c.code_ttl, Duration::from_secs(120));
        assert_eq!(c.app_quota, Some("100/60s".parse().unwrap()));
        assert_eq!(c.user_quota, Some("3/1s".parse().unwrap()));
        assert_eq!(c.faults.busy_ratio, 0.5);
        assert_eq!(c.faults.latency_ms, 5);
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        let cli = Cli::parse_from(["sim", "--config", "/nonexistent/sim.toml"]);
        assert!(matches!(cli.sim.to_config(), Err(SimError::Config(_))));
    }

    #[test]
    fn an_out_of_range_ratio_is_an_error() {
        let cli = Cli::parse_from(["sim", "--hang-ratio", "2"]);
        assert!(matches!(cli.sim.to_config(), Err(SimError::Config(_))));
    }
}
