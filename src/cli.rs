//! The `wxlogin` command line. Each subcommand loads the settings, wires one role from
//! [`crate::roles`] and hands it a shutdown signal; nothing here holds logic of its own.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::{
    crypto::{Keyring, MasterKey},
    natsd::NatsServer,
    persistence, roles,
    settings::{App, Settings},
    sim,
    upserter::{self, ReplayFrom},
};

#[derive(Debug, Parser)]
#[command(
    name = "wxlogin",
    version,
    about = "WeChat Mini Program login at high volume"
)]
pub struct Cli {
    /// TOML settings file; WXLOGIN_* environment variables override it.
    #[arg(long, global = true, env = "WXLOGIN_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run ingress, worker and upserter in one process (the embedded default).
    Up(UpArgs),
    /// Run the HTTP API.
    Ingress,
    /// Run an exchange worker (run as many as you like).
    Worker,
    /// Run the user-upsert consumer.
    Upserter,
    /// Apply database migrations and exit.
    Migrate,
    /// Re-feed retained result events into the user table.
    Replay(ReplayArgs),
    /// Run the WeChat simulator.
    Sim(sim::SimArgs),
    /// Print a new random master key (base64) for WXLOGIN_MASTER_KEY.
    GenKey,
    /// Print the HTTP API as OpenAPI 3.1 JSON (what GET /openapi.json serves).
    Openapi,
    /// Drive logins against an ingress and report throughput, latency and memory.
    Bench(crate::bench::BenchArgs),
}

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Also start the WeChat simulator with a demo app, and use it instead of WeChat.
    #[arg(long)]
    pub sim: bool,
    /// Where the simulator listens with --sim.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub sim_addr: SocketAddr,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Start at this result-stream sequence (default: the beginning).
    #[arg(long, conflicts_with = "from_time")]
    pub from_seq: Option<u64>,
    /// Start at this time (RFC 3339, e.g. 2026-11-21T00:00:00Z).
    #[arg(long)]
    pub from_time: Option<chrono::DateTime<chrono::Utc>>,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Sim(args) = cli.command {
        return Ok(sim::run(args, roles::shutdown_signal()).await?);
    }
    if let Command::GenKey = cli.command {
        println!("{}", MasterKey::generate().to_base64());
        return Ok(());
    }
    if let Command::Openapi = cli.command {
        print!("{}", crate::ingress::openapi::json());
        return Ok(());
    }
    if let Command::Bench(args) = cli.command {
        crate::bench::run(args).await?;
        return Ok(());
    }
    let mut settings = Settings::load(cli.config.as_deref())?;
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        roles::shutdown_signal().await;
        on_signal.cancel();
    });
    match cli.command {
        Command::Up(args) => up(&mut settings, args, shutdown).await,
        Command::Ingress => {
            let listener = bind(settings.http_addr).await?;
            let (keyring, apps) = (required_keyring(&settings)?, settings.resolve_apps()?);
            Ok(roles::ingress(&settings, keyring, &apps, listener, shutdown).await?)
        }
        Command::Worker => {
            let (keyring, apps) = (required_keyring(&settings)?, settings.resolve_apps()?);
            serve_metrics(&settings, &shutdown).await?;
            Ok(roles::worker(&settings, keyring, &apps, shutdown).await?)
        }
        Command::Upserter => {
            serve_metrics(&settings, &shutdown).await?;
            Ok(roles::upserter(&settings, shutdown).await?)
        }
        Command::Migrate => {
            persistence::migrate(&settings.database_url).await?;
            tracing::info!(database = %persistence::describe_url(&settings.database_url), "migrations applied");
            Ok(())
        }
        Command::Replay(args) => replay(&settings, args).await,
        Command::Sim(_) | Command::GenKey | Command::Openapi | Command::Bench(_) => {
            unreachable!("handled above")
        }
    }
}

/// A worker or upserter has no HTTP port of its own: `/metrics` on `metrics_addr` if set.
async fn serve_metrics(settings: &Settings, shutdown: &CancellationToken) -> anyhow::Result<()> {
    let Some(addr) = settings.metrics_addr else {
        return Ok(());
    };
    let listener = bind(addr).await?;
    tokio::spawn(crate::meter::serve(listener, shutdown.clone()));
    Ok(())
}

async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

fn required_keyring(settings: &Settings) -> anyhow::Result<Arc<Keyring>> {
    match settings.keyring()? {
        Some(k) => Ok(Arc::new(k)),
        None => bail!(
            "WXLOGIN_MASTER_KEY (or master_key_file) is required; make one with `wxlogin gen-key`"
        ),
    }
}

/// `up` without a master key uses a development key kept in `.wxlogin/`, and says so loudly.
fn dev_keyring(settings: &Settings) -> anyhow::Result<Arc<Keyring>> {
    if let Some(k) = settings.keyring()? {
        return Ok(Arc::new(k));
    }
    let path = Path::new(".wxlogin/dev-master-key");
    let key = match std::fs::read_to_string(path) {
        Ok(text) => MasterKey::from_base64(text.trim())?,
        Err(_) => {
            let key = MasterKey::generate();
            std::fs::create_dir_all(".wxlogin")?;
            write_private(path, &key.to_base64())?;
            key
        }
    };
    tracing::warn!(
        key_id = %key.key_id(),
        file = %path.display(),
        "NO WXLOGIN_MASTER_KEY GIVEN: using a DEVELOPMENT master key. Never run production like this; set WXLOGIN_MASTER_KEY (make one with `wxlogin gen-key`)."
    );
    Ok(Arc::new(Keyring::new(key, Vec::new())))
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)?.write_all(text.as_bytes())
}

async fn up(
    settings: &mut Settings,
    args: UpArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let keyring = dev_keyring(settings)?;
    let mut apps = settings.resolve_apps()?;
    let mut _sim = None;
    if args.sim {
        if apps.is_empty() {
            apps.push(App {
                appid: sim::DEMO_APPID.into(),
                secret: SecretString::from(sim::DEMO_SECRET.to_string()),
            });
        }
        let config = sim::SimConfig {
            apps: apps
                .iter()
                .map(|a| sim::SimApp {
                    appid: a.appid.clone(),
                    secret: secrecy::ExposeSecret::expose_secret(&a.secret).to_string(),
                    unionid: true,
                })
                .collect(),
            ..sim::SimConfig::default()
        };
        let listener = bind(args.sim_addr).await?;
        settings.wechat_base_url = format!("http://{}", listener.local_addr()?);
        let stop = shutdown.clone();
        _sim = Some(tokio::spawn(sim::serve(config, listener, async move {
            stop.cancelled().await
        })));
        tracing::info!(url = %settings.wechat_base_url, "WeChat simulator started (demo app {})", apps[0].appid);
    }
    if apps.is_empty() {
        bail!(
            "no apps configured: set WXLOGIN_APPS=appid=secret, or run `wxlogin up --sim` for a demo"
        );
    }
    let _nats = ensure_nats(settings).await?;
    let listener = bind(settings.http_addr).await?;
    if args.sim {
        print_next_steps(settings, &apps[0].appid);
    }
    Ok(roles::all_in_one(settings, keyring, &apps, listener, shutdown).await?)
}

/// When the default NATS address is not set explicitly and nothing usable answers there,
/// start a private nats-server with its data under `.wxlogin/nats`.
async fn ensure_nats(settings: &mut Settings) -> anyhow::Result<Option<NatsServer>> {
    let explicit = std::env::var_os("WXLOGIN_NATS_URL").is_some()
        || settings.nats_url != Settings::default().nats_url;
    if explicit {
        return Ok(None);
    }
    let usable = match tokio::time::timeout(
        std::time::Duration::from_secs(2),
        async_nats::connect(settings.nats_url.as_str()),
    )
    .await
    {
        Ok(Ok(client)) => {
            let version = client.server_info().version;
            let ok = crate::natsd::parse_version(&format!("v{version}"))
                .is_some_and(|v| v >= crate::natsd::MIN_VERSION);
            if !ok {
                tracing::warn!(%version, "the nats-server on {} is too old for wxlogin; starting a private one", settings.nats_url);
            }
            ok
        }
        _ => false,
    };
    if usable {
        return Ok(None);
    }
    let server = NatsServer::start(Path::new(".wxlogin/nats"), None).await?;
    tracing::info!(url = %server.url(), store = %server.store_dir().display(), "started a private nats-server");
    settings.nats_url = server.url().to_string();
    Ok(Some(server))
}

fn print_next_steps(settings: &Settings, appid: &str) {
    let api = format!("http://{}", settings.http_addr);
    let sim = &settings.wechat_base_url;
    let commands = demo_commands(&api, sim, appid)
        .iter()
        .map(|c| format!("  {c}\n"))
        .collect::<String>();
    eprintln!(
        "\nwxlogin is up: API {api}, WeChat simulator {sim}\n\n\
         Try it (paste into another terminal): get a code from the simulated wx.login(), log in,\n\
         ask /v1/me who the token is, decrypt the simulated wx.getUserInfo() data, log out, and\n\
         see /v1/me refuse the token (40001):\n\n{commands}"
    );
}

/// The demo sequence `wxlogin up --sim` prints (and the README's quick start shows): shell
/// commands that work when pasted into bash or zsh, needing only curl and sed.
pub fn demo_commands(api: &str, sim: &str, appid: &str) -> Vec<String> {
    let mut commands = vec![format!("API={api} SIM={sim} APPID={appid}")];
    commands.extend(
        [
            r#"CODE=$(curl -s -X POST "$SIM/sim/login" -H 'content-type: application/json' -d "{\"appid\":\"$APPID\",\"user\":\"alice\"}" | sed -E 's/.*"code":"([^"]+)".*/\1/')"#,
            r#"TOKEN=$(curl -s -X POST "$API/v1/login" -H 'content-type: application/json' -d "{\"code\":\"$CODE\"}" | sed -E 's/.*"token":"([^"]+)".*/\1/'); echo "$TOKEN""#,
            r#"curl -s "$API/v1/me" -H "Authorization: Bearer $TOKEN" -w '\n'"#,
            r#"curl -s -X POST "$SIM/sim/userinfo" -H 'content-type: application/json' -d "{\"appid\":\"$APPID\",\"user\":\"alice\"}" | curl -s -X POST "$API/v1/decrypt" -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' -d @- -w '\n'"#,
            r#"curl -s -X POST "$API/v1/logout" -H "Authorization: Bearer $TOKEN" -o /dev/null -w '%{http_code}\n'"#,
            r#"curl -s "$API/v1/me" -H "Authorization: Bearer $TOKEN" -w '\n'"#,
        ]
        .map(String::from),
    );
    commands
}

async fn replay(settings: &Settings, args: ReplayArgs) -> anyhow::Result<()> {
    let (_client, js, _handles) = roles::connect_nats(settings, "replay").await?;
    let db = persistence::connect(&settings.database_url).await?;
    let from = match (args.from_seq, args.from_time) {
        (Some(s), _) => ReplayFrom::Sequence(s),
        (None, Some(t)) => ReplayFrom::Time(t),
        (None, None) => ReplayFrom::Start,
    };
    let started = std::time::Instant::now();
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} seq  {per_sec}  eta {eta}  {msg}",
        )
        .expect("valid template"),
    );
    let stats = upserter::replay(
        &js,
        &roles::topology(settings),
        &db,
        from,
        settings.upsert_batch,
        |s, last| {
            bar.set_length(last);
            bar.set_position(s.last_seq);
            bar.set_message(format!("{} events, {} logins applied", s.events, s.logins));
        },
    )
    .await?;
    bar.finish();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "replayed {} events ({} logins, {} failures, {} unreadable) in {secs:.1} s: {:.0} events/s",
        stats.events,
        stats.logins,
        stats.failures,
        stats.malformed,
        stats.events as f64 / secs.max(1e-3)
    );
    Ok(())
}
