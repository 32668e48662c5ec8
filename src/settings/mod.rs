//! Typed settings: the embedded defaults ([`DEFAULTS`], `src/settings/defaults.toml`, every key
//! with a comment), then an optional TOML file (`--config`), then `WXLOGIN_*` environment
//! variables, each layer overriding the one before. The defaults have this one home: `Default`
//! reads the same file, and a test checks the README's table against it.

mod keys;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use figment::{
    Figment,
    providers::{Env, Format, Toml},
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::contract::AppId;
use crate::crypto::sealing::SealFormat;
use crate::ingress::client_ip::TrustedProxies;
use crate::quota::Quota;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("invalid settings: {0}")]
    Invalid(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One mini program we log users in for.
#[derive(Clone)]
pub struct App {
    pub appid: AppId,
    pub secret: SecretString,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("appid", &self.appid)
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct AppEntry {
    pub appid: String,
    #[serde(default)]
    pub secret: Option<SecretString>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
}

/// `apps` is a list in TOML and `appid=secret,…` in `WXLOGIN_APPS`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum AppsSetting {
    List(Vec<AppEntry>),
    Inline(SecretString),
}

impl Default for AppsSetting {
    fn default() -> Self {
        AppsSetting::List(Vec::new())
    }
}

/// The most result events one upsert transaction takes (its statements bind 11 values a row).
pub const MAX_UPSERT_BATCH: usize = 2_000;

/// How long the ingress waits for JetStream to acknowledge a login's code. A part of every
/// login's time, so `request_timeout_ms` must leave room for it (see `validate`).
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(3);

/// The embedded defaults, as a commented TOML file.
pub const DEFAULTS: &str = include_str!("defaults.toml");

/// Every key has its default in [`DEFAULTS`]; the optional ones (`Option`) have none.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub nats_url: String,
    pub nats_prefix: String,
    pub nats_replicas: usize,
    /// This process's NATS identity: an nkey seed file, a JWT `.creds` file, or a user and a
    /// password file (at most one); none: an open server.
    pub nats_nkey_file: Option<PathBuf>,
    pub nats_creds_file: Option<PathBuf>,
    pub nats_user: Option<String>,
    pub nats_password_file: Option<PathBuf>,
    /// The NATS servers' private CA; setting it makes TLS required.
    pub nats_tls_ca_file: Option<PathBuf>,
    pub nats_tls_cert_file: Option<PathBuf>,
    pub nats_tls_key_file: Option<PathBuf>,
    pub database_url: String,
    pub http_addr: SocketAddr,
    pub wechat_base_url: String,
    pub wechat_ca_file: Option<PathBuf>,
    pub wechat_timeout_ms: u64,
    #[serde(default)]
    pub apps: AppsSetting,
    pub app_quota: Quota,
    /// getuserphonenumber calls per appid, for the whole fleet (WeChat limits it apart).
    pub phone_quota: Quota,
    /// How long before its expiry the fleet's access_token is fetched again.
    pub token_refresh_ahead_secs: u64,
    pub code_ttl_secs: u64,
    pub login_wait_ms: u64,
    pub session_ttl_secs: u64,
    pub master_key: Option<SecretString>,
    pub master_key_file: Option<PathBuf>,
    /// Previous master keys (base64, comma-separated) still accepted for reading.
    pub master_keys_previous: Option<SecretString>,
    /// The key of phone-number hashes (never rotated); unset: derived from the master key.
    pub lookup_key: Option<SecretString>,
    pub lookup_key_file: Option<PathBuf>,
    /// What new seals and records are written as (and whether first-format codes, session
    /// records and results are still trusted): see [`SealFormat`].
    pub seal_format: SealFormat,
    /// First-format (unsealed) session records at or below this revision of the sessions
    /// bucket are believed: the bucket's last sequence, recorded once when `seal_format`
    /// becomes `v2` (`0`: none; today's sessions are then logged out).
    pub session_legacy_max_revision: u64,
    pub exchange_ack_wait_secs: u64,
    /// How long the results stream keeps a result (0: forever). Replays reach back this far.
    pub results_max_age_secs: u64,
    pub worker_concurrency: usize,
    /// On shutdown: how long calls already sent may take to finish and record.
    pub worker_drain_secs: u64,
    pub upsert_batch: usize,
    pub max_body_bytes: usize,
    pub body_timeout_ms: u64,
    pub request_timeout_ms: u64,
    /// Login attempts allowed per client address; `None` (unset, or "off"): no limit.
    #[serde(default, deserialize_with = "optional_quota")]
    pub client_quota: Option<Quota>,
    pub trusted_proxies: TrustedProxies,
    pub max_inflight_logins: usize,
    /// Where a worker or upserter process serves `/metrics` (the ingress uses its own port).
    pub metrics_addr: Option<SocketAddr>,
    /// Tests only: the process's clock runs this far off the system's (a machine whose clock
    /// is wrong), to show what a worker does about it. 0 in every real deployment.
    pub test_clock_offset_ms: i64,
}

/// A quota, or nothing when unset, empty or `off`.
fn optional_quota<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Quota>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.trim().is_empty() || s.trim().eq_ignore_ascii_case("off") => Ok(None),
        Some(s) => s.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// The largest test clock offset, either way: a day.
const MAX_TEST_CLOCK_OFFSET_MS: i64 = 86_400_000;

impl Default for Settings {
    /// The embedded defaults alone.
    fn default() -> Self {
        Figment::from(Toml::string(DEFAULTS))
            .extract()
            .expect("the embedded defaults are complete and valid (tested)")
    }
}

impl Settings {
    /// Defaults, then the TOML file if given, then `WXLOGIN_*` variables.
    pub fn load(config_file: Option<&Path>) -> Result<Settings, SettingsError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = config_file {
            if !path.exists() {
                return Err(SettingsError::Invalid(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        // Only our own names: WXLOGIN_LOG_FORMAT and test variables are not settings.
        let env = Env::prefixed("WXLOGIN_")
            .filter(|k| !k.as_str().starts_with("log_") && !k.as_str().starts_with("test_"));
        let settings: Settings = figment
            .merge(env)
            .extract()
            .map_err(|e| SettingsError::Invalid(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        let bad = |m: String| Err(SettingsError::Invalid(m));
        if self.nats_prefix.is_empty()
            || !self
                .nats_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return bad("nats_prefix may hold only letters, digits, '_' and '-'".into());
        }
        let identities = [
            self.nats_nkey_file.is_some(),
            self.nats_creds_file.is_some(),
            self.nats_user.is_some() || self.nats_password_file.is_some(),
        ];
        if identities.iter().filter(|&&set| set).count() > 1 {
            return bad(
                "set at most one NATS identity: nats_nkey_file, nats_creds_file, or nats_user with nats_password_file"
                    .into(),
            );
        }
        if self.nats_user.is_some() != self.nats_password_file.is_some() {
            return bad("nats_user and nats_password_file go together".into());
        }
        // The URL is logged and named in errors: credentials come from files, never from it.
        if self.nats_url.contains('@') {
            return bad(
                "nats_url must not carry credentials (user:password@): use nats_user with nats_password_file, or nats_nkey_file".into(),
            );
        }
        // NATS sends a password in the clear unless the connection is TLS (an nkey or a JWT
        // answers a challenge instead).
        if self.nats_user.is_some()
            && self.nats_tls_ca_file.is_none()
            && !self
                .nats_url
                .split(',')
                .all(|u| u.trim().starts_with("tls://"))
        {
            return bad(
                "nats_user with a password needs TLS: set nats_tls_ca_file, or tls:// URLs".into(),
            );
        }
        if self.nats_tls_cert_file.is_some() != self.nats_tls_key_file.is_some() {
            return bad("nats_tls_cert_file and nats_tls_key_file go together".into());
        }
        if self.code_ttl_secs == 0 || self.session_ttl_secs == 0 || self.exchange_ack_wait_secs < 3
        {
            return bad(
                "code_ttl_secs and session_ttl_secs must be positive, exchange_ack_wait_secs at least 3"
                    .into(),
            );
        }
        // A code's result is its ledger's final record: it must outlive every redelivery of
        // the code (see `Topology::ledger_max_age`).
        let floor = self.code_ttl_secs + self.exchange_ack_wait_secs + 60;
        if self.results_max_age_secs != 0 && self.results_max_age_secs < floor {
            return bad(format!(
                "results_max_age_secs must be 0 (forever) or at least code_ttl_secs + exchange_ack_wait_secs + 60 = {floor}"
            ));
        }
        // A 202's ticket can create its session for as long as the ledger keeps the code
        // (the same floor); a session that expired earlier, or its logout's tombstone, would
        // have left the store by then and the ticket could bring the session back.
        if self.session_ttl_secs <= floor {
            return bad(format!(
                "session_ttl_secs must exceed a ticket's life, code_ttl_secs + exchange_ack_wait_secs + 60 = {floor}"
            ));
        }
        if self.worker_concurrency == 0 || self.upsert_batch == 0 || self.worker_drain_secs == 0 {
            return bad(
                "worker_concurrency, upsert_batch and worker_drain_secs must be positive".into(),
            );
        }
        // One statement binds a value per column of every row: SQLite allows 32,766.
        if self.upsert_batch > MAX_UPSERT_BATCH {
            return bad(format!(
                "upsert_batch ({}) must be at most {MAX_UPSERT_BATCH} (one statement per batch)",
                self.upsert_batch
            ));
        }
        // (A day either way is more than any test needs, and keeps the arithmetic far from
        // overflowing.)
        if self.test_clock_offset_ms.abs() > MAX_TEST_CLOCK_OFFSET_MS {
            return bad(format!(
                "test_clock_offset_ms must be within ±{MAX_TEST_CLOCK_OFFSET_MS} (and 0 outside tests)"
            ));
        }
        if self.body_timeout_ms == 0 || self.max_inflight_logins == 0 {
            return bad("body_timeout_ms and max_inflight_logins must be positive".into());
        }
        // A login reads its body (up to body_timeout_ms), publishes its code (up to
        // PUBLISH_TIMEOUT), then waits up to login_wait_ms for the reply before answering 202;
        // a request timeout within their sum cuts a slow login off with 408 instead of a ticket.
        let publish_ms = PUBLISH_TIMEOUT.as_millis() as u64;
        let login_ms = self
            .body_timeout_ms
            .saturating_add(publish_ms)
            .saturating_add(self.login_wait_ms);
        if self.request_timeout_ms <= login_ms {
            return bad(format!(
                "request_timeout_ms ({}) must exceed body_timeout_ms + the code's publish timeout + login_wait_ms = {} + {publish_ms} + {} = {login_ms}",
                self.request_timeout_ms, self.body_timeout_ms, self.login_wait_ms
            ));
        }
        Ok(())
    }

    pub fn code_ttl(&self) -> Duration {
        Duration::from_secs(self.code_ttl_secs)
    }

    pub fn worker_drain(&self) -> Duration {
        Duration::from_secs(self.worker_drain_secs)
    }

    pub fn login_wait(&self) -> Duration {
        Duration::from_millis(self.login_wait_ms)
    }

    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.session_ttl_secs)
    }

    /// The configured apps with their secrets (read from files where the TOML says so).
    pub fn resolve_apps(&self) -> Result<Vec<App>, SettingsError> {
        let mut apps = Vec::new();
        match &self.apps {
            AppsSetting::Inline(text) => {
                for pair in text
                    .expose_secret()
                    .split(',')
                    .filter(|p| !p.trim().is_empty())
                {
                    let (appid, secret) = pair.split_once('=').ok_or_else(|| {
                        SettingsError::Invalid(
                            "WXLOGIN_APPS must look like appid=secret,appid2=secret2".into(),
                        )
                    })?;
                    apps.push(App {
                        appid: appid.trim().into(),
                        secret: SecretString::from(secret.trim().to_string()),
                    });
                }
            }
            AppsSetting::List(entries) => {
                for entry in entries {
                    let secret = match (&entry.secret, &entry.secret_file) {
                        (Some(s), None) => s.clone(),
                        (None, Some(path)) => SecretString::from(read_secret_file(path)?),
                        _ => {
                            return Err(SettingsError::Invalid(format!(
                                "app {} needs exactly one of secret or secret_file",
                                entry.appid
                            )));
                        }
                    };
                    apps.push(App {
                        appid: entry.appid.as_str().into(),
                        secret,
                    });
                }
            }
        }
        for app in &apps {
            if !crate::ingress::validate::is_plausible_appid(&app.appid) {
                return Err(SettingsError::Invalid(format!(
                    "appid {:?} is not a WeChat appid (wx + 16 hex digits)",
                    app.appid
                )));
            }
            if app.secret.expose_secret().is_empty() {
                return Err(SettingsError::Invalid(format!(
                    "app {} has an empty secret",
                    app.appid
                )));
            }
        }
        Ok(apps)
    }
}

/// A secret from a file (a key, a seed, a password), trimmed; errors name the file, never its
/// content.
pub(crate) fn read_secret_file(path: &Path) -> Result<String, SettingsError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| SettingsError::Read {
            path: path.to_path_buf(),
            source,
        })
}
