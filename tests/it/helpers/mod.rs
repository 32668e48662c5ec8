//! `spawn_app()`: every test gets its own nats-server (random port, temporary store, killed on
//! drop), its own database (a temporary SQLite file, or a fresh PostgreSQL database with a
//! unique name), its own WeChat simulator over real HTTP, and the three roles running in-process
//! against them. Nothing here depends on a server started by hand.

use std::{sync::Arc, time::Duration};

use natsd::NatsServer;
use sea_orm::{ConnectionTrait, Database};
use secrecy::SecretString;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wxlogin::{
    app::roles::{self, RoleError},
    crypto::{Keyring, MasterKey},
    quota::Quota,
    settings::{App, Settings},
};
use wxlogin_sim::{self as sim, SimApp, SimConfig, SimControl, SimServer};

mod app;
pub mod fleet;
pub mod proxy;
pub mod secured;
pub mod tls;
pub mod up;

pub const APPID: &str = "wx00000000000000a1";
pub const SECRET: &str = "test-secret-0123456789abcdef0000";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub db: Db,
    pub quota: Quota,
    pub login_wait: Duration,
    pub code_ttl: Duration,
    pub wechat_timeout: Duration,
    pub sim: SimConfig,
    /// The secret the workers use (differs from the simulator's to test misconfiguration).
    pub worker_secret: String,
    /// Applied to the roles' settings last (limits, a TLS front for WeChat, …).
    pub tweak: SettingsTweak,
    /// A secured nats-server (per-role users, TLS); each role connects as its own identity,
    /// the test's own connections (`TestApp::settings`) as the admin.
    pub secured: bool,
    /// The master key(s) of the deployment (default: a fresh one, [`test_keyring`]).
    pub keyring: Option<Arc<Keyring>>,
}

/// A change to the settings the roles get; `SettingsTweak::new(|s| s.client_quota = …)`.
#[derive(Clone, Default)]
pub struct SettingsTweak(Option<Arc<TweakFn>>);

type TweakFn = dyn Fn(&mut Settings) + Send + Sync;

impl SettingsTweak {
    pub fn new(f: impl Fn(&mut Settings) + Send + Sync + 'static) -> Self {
        SettingsTweak(Some(Arc::new(f)))
    }
}

impl std::fmt::Debug for SettingsTweak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "SettingsTweak(..)"
        } else {
            "SettingsTweak(none)"
        })
    }
}

impl Options {
    pub fn new(db: Db) -> Self {
        Options {
            db,
            quota: "1000/1s".parse().unwrap(),
            login_wait: Duration::from_secs(5),
            code_ttl: Duration::from_secs(300),
            wechat_timeout: Duration::from_secs(2),
            sim: test_sim_config(),
            worker_secret: SECRET.into(),
            tweak: SettingsTweak::default(),
            secured: false,
            keyring: None,
        }
    }
}

pub struct TestApp {
    pub api: String,
    pub http: reqwest::Client,
    pub sim: SimServer,
    pub control: SimControl,
    pub nats: NatsServer,
    pub settings: Settings,
    pub db_url: String,
    pub pg_admin: Option<(String, String)>,
    pub secured: Option<secured::Secured>,
    shutdown: CancellationToken,
    roles: Vec<JoinHandle<Result<(), RoleError>>>,
    _dir: tempfile::TempDir,
}

/// A loopback port that was free a moment ago (for processes that must be told their port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .expect("local address")
        .port()
}

/// The simulator every test uses: one app (APPID/SECRET), bound to an Open Platform account.
pub fn test_sim_config() -> SimConfig {
    SimConfig {
        apps: vec![SimApp {
            appid: APPID.into(),
            secret: SECRET.into(),
            unionid: true,
        }],
        ..SimConfig::default()
    }
}

pub fn test_keyring() -> Arc<Keyring> {
    Arc::new(Keyring::new(MasterKey::generate(), Vec::new()))
}

/// Makes `stream` refuse every new message (as a full disk or a lost quorum would) while reads
/// go on; returns its config, to hand back to `update_stream` when the outage ends. The stream
/// must hold a message already: a limit of 0 messages means "no limit".
pub async fn refuse_writes(
    js: &async_nats::jetstream::Context,
    stream: &str,
) -> async_nats::jetstream::stream::Config {
    let mut handle = js.get_stream(stream).await.expect("the stream exists");
    let info = handle.info().await.expect("stream info");
    let (normal, held) = (info.config.clone(), info.state.messages as i64);
    assert!(held > 0, "{stream} must hold a message to be capped");
    js.update_stream(async_nats::jetstream::stream::Config {
        max_messages: held,
        discard: async_nats::jetstream::stream::DiscardPolicy::New,
        ..normal.clone()
    })
    .await
    .expect("cap the stream");
    normal
}

/// The admin URL of a PostgreSQL server to create test databases on.
fn pg_admin_url() -> String {
    std::env::var("WXLOGIN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh database with a unique name; returns (its URL, the admin URL, its name).
pub async fn fresh_postgres() -> (String, String, String) {
    let admin = pg_admin_url();
    let conn = Database::connect(admin.as_str()).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL tests need a server: run them through scripts/test.sh (it starts one), \
             or set WXLOGIN_TEST_POSTGRES_URL to an admin URL ({admin}: {e})"
        )
    });
    let name = format!("wxlogin_test_{}", uuid::Uuid::new_v4().simple());
    conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    conn.close().await.ok();
    let mut url = url::Url::parse(&admin).expect("admin URL parses");
    url.set_path(&name);
    (url.to_string(), admin, name)
}

pub async fn spawn_app(opts: Options) -> TestApp {
    wxlogin::telemetry::init_with_default("warn");
    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let (nats, secured) = if opts.secured {
        let named = Settings {
            nats_prefix: prefix.clone(),
            ..Settings::default()
        };
        let topology = wxlogin::contract::topology::Topology::from_settings(&named);
        let (nats, secured) = secured::Secured::start(&topology).await;
        (nats, Some(secured))
    } else {
        let nats = NatsServer::start_temporary()
            .await
            .expect("start nats-server");
        (nats, None)
    };
    let sim = sim::spawn(opts.sim.clone()).await.expect("start simulator");
    let (db_url, pg_admin) = match opts.db {
        Db::Sqlite => (
            format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("wxlogin.db").display()
            ),
            None,
        ),
        Db::Postgres => {
            let (url, admin, name) = fresh_postgres().await;
            (url, Some((admin, name)))
        }
    };
    let mut settings = Settings {
        nats_url: nats.url().to_string(),
        nats_prefix: prefix,
        database_url: db_url.clone(),
        wechat_base_url: sim.base_url(),
        wechat_timeout_ms: opts.wechat_timeout.as_millis() as u64,
        app_quota: opts.quota,
        code_ttl_secs: opts.code_ttl.as_secs().max(1),
        login_wait_ms: opts.login_wait.as_millis() as u64,
        // In the settings, as a deployment has it: the upserter (signing) and the operator's
        // commands read it from there; the roles get the ring made of it.
        master_key: Some(SecretString::from(MasterKey::generate().to_base64())),
        ..Settings::default()
    };
    if let Some(tweak) = &opts.tweak.0 {
        tweak(&mut settings);
    }
    let as_role = |identity| match &secured {
        Some(s) => s.settings_for(&settings, identity),
        None => settings.clone(),
    };
    use wxlogin::contract::access::Identity;
    let (ingress_settings, worker_settings, upserter_settings) = (
        as_role(Identity::Ingress),
        as_role(Identity::Worker),
        as_role(Identity::Upserter),
    );
    settings = as_role(Identity::Admin);
    // The settings' master key (what the upserter signs with and the operator's commands read),
    // or the test's own ring for the roles (a fixture's recording key, say).
    let keyring = match &opts.keyring {
        Some(own) => Arc::new((**own).clone().writing(settings.seal_format)),
        None => Arc::new(
            settings
                .keyring()
                .expect("the test's master key")
                .expect("a master key is set"),
        ),
    };
    let apps = vec![App {
        appid: APPID.into(),
        secret: SecretString::from(opts.worker_secret.clone()),
    }];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    wxlogin::upsert::db::migrate(&db_url)
        .await
        .expect("migrate");
    // As `wxlogin migrate` does before the roles start: their NATS users may not create.
    roles::migrate_nats(&settings).await.expect("migrate NATS");
    let shutdown = CancellationToken::new();
    let mut handles = Vec::new();
    {
        let (s, k, a, sd) = (
            ingress_settings,
            keyring.clone(),
            apps.clone(),
            shutdown.clone(),
        );
        handles.push(tokio::spawn(async move {
            roles::ingress(&s, k, &a, listener, sd).await
        }));
    }
    {
        let (s, k, a, sd) = (
            worker_settings,
            keyring.clone(),
            apps.clone(),
            shutdown.clone(),
        );
        handles.push(tokio::spawn(
            async move { roles::worker(&s, k, &a, sd).await },
        ));
    }
    {
        let (s, sd) = (upserter_settings, shutdown.clone());
        handles.push(tokio::spawn(async move { roles::upserter(&s, sd).await }));
    }
    let app = TestApp {
        api,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        control: sim.control(),
        sim,
        nats,
        settings,
        db_url,
        pg_admin,
        secured,
        shutdown,
        roles: handles,
        _dir: dir,
    };
    app.wait_ready().await;
    app
}
