//! Settings: embedded defaults, a TOML file, and `WXLOGIN_*` variables over both.
//! figment's `Jail` gives each test its own environment and working directory — of the whole
//! process, which is why these tests are a binary of their own, outside `tests/it/`.
// Jail closures must return figment::Error, which is large; that is figment's API, not ours.
#![allow(clippy::result_large_err)]

use std::{path::Path, time::Duration};

use figment::Jail;
use secrecy::ExposeSecret;
use wxlogin::settings::{DEFAULTS, Settings};

fn load(path: Option<&str>) -> Result<Settings, figment::Error> {
    Settings::load(path.map(Path::new)).map_err(|e| e.to_string().into())
}

#[test]
fn with_nothing_set_the_documented_defaults_apply() {
    Jail::expect_with(|_| {
        let s = load(None)?;
        assert_eq!(s.nats_url, "nats://127.0.0.1:4222");
        assert_eq!(s.nats_prefix, "wxlogin");
        assert_eq!(s.database_url, "sqlite://wxlogin.db?mode=rwc");
        assert_eq!(s.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(s.wechat_base_url, "https://api.weixin.qq.com");
        assert_eq!(s.app_quota.to_string(), "5000/60s");
        assert_eq!(s.code_ttl(), Duration::from_secs(300));
        assert!(s.resolve_apps().unwrap().is_empty());
        assert!(s.keyring().unwrap().is_none());
        Ok(())
    });
}

#[test]
fn environment_variables_override_the_toml_file() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "wxlogin.toml",
            r#"
            nats_prefix = "fromfile"
            code_ttl_secs = 120
            app_quota = "100/60s"
            [[apps]]
            appid = "wx0123456789abcdef"
            secret_file = "secret.txt"
            "#,
        )?;
        jail.create_file("secret.txt", "file-secret\n")?;
        jail.set_env("WXLOGIN_NATS_PREFIX", "fromenv");
        jail.set_env("WXLOGIN_APP_QUOTA", "10/2s");
        jail.set_env("WXLOGIN_LOG_FORMAT", "json");
        let s = load(Some("wxlogin.toml"))?;
        assert_eq!(s.nats_prefix, "fromenv");
        assert_eq!(s.code_ttl_secs, 120);
        assert_eq!(s.app_quota.calls, 10);
        let apps = s.resolve_apps().unwrap();
        assert_eq!(apps.len(), 1);
        assert_eq!(apps[0].secret.expose_secret(), "file-secret");
        Ok(())
    });
}

#[test]
fn apps_and_master_key_come_from_variables() {
    Jail::expect_with(|jail| {
        jail.set_env(
            "WXLOGIN_APPS",
            "wx0123456789abcdef=s1,wx00000000000000a1=s2",
        );
        jail.set_env(
            "WXLOGIN_MASTER_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        );
        let s = load(None)?;
        let apps = s.resolve_apps().unwrap();
        assert_eq!(apps.len(), 2);
        assert_eq!(apps[1].appid, "wx00000000000000a1");
        assert_eq!(apps[1].secret.expose_secret(), "s2");
        assert!(
            !format!("{apps:?}").contains("s1"),
            "Debug must not show secrets"
        );
        assert!(s.keyring().unwrap().is_some());
        Ok(())
    });
}

#[test]
fn bad_values_are_refused_with_a_clear_message() {
    Jail::expect_with(|jail| {
        jail.set_env("WXLOGIN_APP_QUOTA", "lots");
        let err = load(None).unwrap_err().to_string();
        assert!(err.contains("N/<seconds>s"), "{err}");
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.set_env("WXLOGIN_APPS", "not-an-appid=secret");
        let err = load(None)?.resolve_apps().unwrap_err().to_string();
        assert!(err.contains("not a WeChat appid"), "{err}");
        assert!(!err.contains("secret\""), "{err}");
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.set_env("WXLOGIN_MASTER_KEY", "dG9vIHNob3J0");
        assert!(load(None)?.keyring().is_err());
        jail.set_env("WXLOGIN_NATS_PREFIX", "has.dots");
        assert!(load(None).is_err());
        Ok(())
    });
    // Results are the ledger's final records: they must outlive every redelivery of a code.
    Jail::expect_with(|jail| {
        jail.set_env("WXLOGIN_RESULTS_MAX_AGE_SECS", "60");
        let err = load(None).unwrap_err().to_string();
        assert!(
            err.contains("results_max_age_secs") && err.contains("390"),
            "{err}"
        );
        jail.set_env("WXLOGIN_RESULTS_MAX_AGE_SECS", "0");
        assert_eq!(
            load(None)?.results_max_age_secs,
            0,
            "0 keeps results forever"
        );
        Ok(())
    });
    // A 202's ticket must not outlive the session it creates (nor that session's logout).
    Jail::expect_with(|jail| {
        jail.set_env("WXLOGIN_SESSION_TTL_SECS", "390");
        let err = load(None).unwrap_err().to_string();
        assert!(
            err.contains("session_ttl_secs") && err.contains("390"),
            "{err}"
        );
        jail.set_env("WXLOGIN_SESSION_TTL_SECS", "391");
        assert_eq!(load(None)?.session_ttl_secs, 391);
        Ok(())
    });
}

#[test]
fn the_hostile_input_limits_come_from_the_environment_or_the_toml_file() {
    Jail::expect_with(|_| {
        let s = load(None)?;
        assert_eq!(s.client_quota, None, "no per-client quota unless asked");
        assert!(s.trusted_proxies.is_empty());
        assert_eq!(s.max_inflight_logins, 1_000);
        assert_eq!((s.body_timeout_ms, s.request_timeout_ms), (10_000, 20_000));
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.set_env("WXLOGIN_CLIENT_QUOTA", "30/60s");
        jail.set_env("WXLOGIN_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.7");
        jail.set_env("WXLOGIN_MAX_INFLIGHT_LOGINS", "64");
        let s = load(None)?;
        assert_eq!(s.client_quota.unwrap().to_string(), "30/60s");
        assert!(s.trusted_proxies.contains("10.1.2.3".parse().unwrap()));
        assert!(s.trusted_proxies.contains("192.0.2.7".parse().unwrap()));
        assert!(!s.trusted_proxies.contains("192.0.2.8".parse().unwrap()));
        assert_eq!(s.max_inflight_logins, 64);
        jail.set_env("WXLOGIN_CLIENT_QUOTA", "off");
        assert_eq!(load(None)?.client_quota, None);
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.create_file(
            "wxlogin.toml",
            "client_quota = \"5/1s\"\ntrusted_proxies = [\"::1\", \"172.16.0.0/12\"]\n",
        )?;
        let s = load(Some("wxlogin.toml"))?;
        assert_eq!(s.client_quota.unwrap().calls, 5);
        assert!(s.trusted_proxies.contains("172.20.0.1".parse().unwrap()));
        assert!(s.trusted_proxies.contains("::1".parse().unwrap()));
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.set_env("WXLOGIN_TRUSTED_PROXIES", "10.0.0.0/99");
        assert!(load(None).unwrap_err().to_string().contains("CIDR"));
        Ok(())
    });
}

#[test]
fn a_request_timeout_must_leave_room_for_the_body_the_publish_and_the_wait_for_the_reply() {
    Jail::expect_with(|jail| {
        // The defaults: 10 s of body, 3 s of publish, 5 s of waiting for the reply.
        jail.set_env("WXLOGIN_REQUEST_TIMEOUT_MS", "18000");
        let err = load(None).unwrap_err().to_string();
        assert!(
            err.contains("request_timeout_ms (18000)") && err.contains("10000 + 3000 + 5000"),
            "{err}"
        );
        jail.set_env("WXLOGIN_REQUEST_TIMEOUT_MS", "18001");
        assert_eq!(load(None)?.request_timeout_ms, 18_001);
        // Shorter parts need less.
        jail.set_env("WXLOGIN_BODY_TIMEOUT_MS", "2000");
        jail.set_env("WXLOGIN_LOGIN_WAIT_MS", "1000");
        jail.set_env("WXLOGIN_REQUEST_TIMEOUT_MS", "6000");
        let err = load(None).unwrap_err().to_string();
        assert!(err.contains("2000 + 3000 + 1000 = 6000"), "{err}");
        jail.set_env("WXLOGIN_REQUEST_TIMEOUT_MS", "6001");
        assert_eq!(load(None)?.request_timeout_ms, 6_001);
        Ok(())
    });
}

/// The README's settings table and the embedded defaults (`src/settings/defaults.toml`) name
/// the same settings with the same defaults: the table is a copy, this test keeps it one.
#[test]
fn the_readme_settings_table_gives_every_setting_with_its_embedded_default() {
    use figment::{
        Figment,
        providers::{Format, Toml},
        value::Value,
    };
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = readme
        .split("| variable | default | meaning |")
        .nth(1)
        .expect("the README has a settings table");
    let rows: Vec<(String, String)> = table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (
                cells[1].trim_matches('`').to_owned(),
                cells[2].trim_matches('`').to_owned(),
            )
        })
        .collect();
    assert!(rows.len() > 20, "{rows:?}");
    // Every key of the defaults file, set or commented out (no default), up to `[[apps]]`.
    let keys: Vec<String> = DEFAULTS
        .lines()
        .take_while(|l| !l.contains("[[apps]]"))
        .filter_map(|l| {
            let l = l.trim_start_matches('#').trim_start();
            let (key, _) = l.split_once(" = ")?;
            key.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_')
                .then(|| key.to_owned())
        })
        .collect();
    let defaults = Figment::from(Toml::string(DEFAULTS));
    let text = |v: &Value| match v {
        Value::String(_, s) => Some(s.clone()),
        Value::Num(_, n) => n.to_i128().map(|n| n.to_string()),
        Value::Array(_, a) if a.is_empty() => None,
        other => panic!("no README form for {other:?}"),
    };
    for key in &keys {
        let var = format!("WXLOGIN_{}", key.to_uppercase());
        assert!(
            table.contains(&var),
            "{var} ({key} in defaults.toml) is not in the README's table"
        );
    }
    for (var, readme_default) in &rows {
        let key = var.strip_prefix("WXLOGIN_").unwrap().to_lowercase();
        if key == "apps" {
            continue; // a list, shown in the file's comments
        }
        assert!(
            keys.contains(&key),
            "the README lists {var}, which defaults.toml does not have"
        );
        let ours = defaults.find_value(&key).ok().as_ref().and_then(text);
        let theirs = match readme_default.as_str() {
            "—" | "off" => None,
            d => Some(d.to_owned()),
        };
        assert_eq!(theirs, ours, "{var}: README default vs defaults.toml");
    }
}

/// The shipped systemd unit gives a role `TimeoutStopSec` to stop before it is killed: a
/// worker's default drain must end well within it, or every rolling restart under load would
/// end in a SIGKILL (stale claims, the crash window).
#[test]
fn a_workers_default_drain_ends_within_the_shipped_units_stop_timeout() {
    let unit = include_str!("../workers/systemd/wxlogin@.service");
    let stop: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .expect("the unit sets TimeoutStopSec")
        .trim()
        .parse()
        .unwrap();
    let drain = Settings::default().worker_drain_secs;
    assert!(
        drain > 0 && drain + 10 <= stop,
        "drain {drain} s, stop timeout {stop} s"
    );
}

#[test]
fn an_upsert_batch_larger_than_one_statement_can_bind_is_refused() {
    let max = wxlogin::settings::MAX_UPSERT_BATCH;
    Jail::expect_with(|jail| {
        jail.set_env("WXLOGIN_UPSERT_BATCH", max.to_string());
        assert_eq!(load(None)?.upsert_batch, max);
        jail.set_env("WXLOGIN_UPSERT_BATCH", (max + 1).to_string());
        let err = load(None).unwrap_err().to_string();
        assert!(err.contains("upsert_batch"), "{err}");
        jail.set_env("WXLOGIN_WORKER_DRAIN_SECS", "0");
        jail.set_env("WXLOGIN_UPSERT_BATCH", "500");
        let err = load(None).unwrap_err().to_string();
        assert!(err.contains("worker_drain_secs"), "{err}");
        Ok(())
    });
}

#[test]
fn the_seal_format_defaults_to_v2_reaches_the_keyring_and_refuses_unknown_names() {
    use wxlogin::crypto::SealFormat;
    Jail::expect_with(|jail| {
        jail.set_env(
            "WXLOGIN_MASTER_KEY",
            wxlogin::crypto::MasterKey::generate().to_base64(),
        );
        let s = load(None)?;
        assert_eq!(s.seal_format, SealFormat::V2);
        assert_eq!(s.keyring().unwrap().unwrap().writes(), SealFormat::V2);
        jail.set_env("WXLOGIN_SEAL_FORMAT", "v1");
        let s = load(None)?;
        assert_eq!(s.keyring().unwrap().unwrap().writes(), SealFormat::V1);
        jail.set_env("WXLOGIN_SEAL_FORMAT", "v3");
        assert!(load(None).is_err());
        Ok(())
    });
}

/// A process has one NATS identity, and a password never crosses the network in the clear nor
/// sits in the (logged) URL.
#[test]
fn a_nats_identity_is_one_of_seed_creds_or_user_and_a_password_needs_tls() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("WXLOGIN_NATS_NKEY_FILE", "/run/secrets/worker.nk");
        assert!(load(None).is_ok());
        jail.set_env("WXLOGIN_NATS_CREDS_FILE", "/run/secrets/worker.creds");
        let err = load(None).unwrap_err().to_string();
        assert!(err.contains("at most one NATS identity"), "{err}");
        jail.clear_env();
        jail.set_env("WXLOGIN_NATS_USER", "wxlogin-worker");
        let err = load(None).unwrap_err().to_string();
        assert!(err.contains("go together"), "{err}");
        jail.set_env("WXLOGIN_NATS_PASSWORD_FILE", "/run/secrets/pw");
        let err = load(None).unwrap_err().to_string();
        assert!(err.contains("needs TLS"), "{err}");
        jail.set_env("WXLOGIN_NATS_TLS_CA_FILE", "/etc/wxlogin/nats-ca.pem");
        assert!(load(None).is_ok());
        jail.set_env("WXLOGIN_NATS_TLS_CERT_FILE", "/etc/wxlogin/client.pem");
        let err = load(None).unwrap_err().to_string();
        assert!(err.contains("nats_tls_key_file"), "{err}");
        // The URL is logged: credentials never travel in it.
        jail.clear_env();
        jail.set_env("WXLOGIN_NATS_URL", "nats://wxlogin:hunter2@nats-1:4222");
        let err = load(None).unwrap_err().to_string();
        assert!(
            err.contains("must not carry credentials") && !err.contains("hunter2"),
            "{err}"
        );
        Ok(())
    });
}
