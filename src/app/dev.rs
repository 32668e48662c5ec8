//! `wxlogin up`: every role in one process with embedded defaults, for a laptop. What only a
//! development run does lives here: a development master key kept in `.wxlogin/`, a private
//! nats-server when none usable answers, the simulator with a demo app (`--sim`) and the demo
//! commands it prints.

use std::path::Path;

use anyhow::bail;
use natsd::NatsServer;
use secrecy::SecretString;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use wxlogin_sim as sim;

use super::{UpArgs, bind, roles};
use crate::{
    crypto::{Keyring, MasterKey},
    settings::{App, Settings},
};

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
    Ok(Arc::new(
        Keyring::new(key, Vec::new()).writing(settings.seal_format),
    ))
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)?.write_all(text.as_bytes())
}

pub(super) async fn up(
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
                    appid: a.appid.to_string(),
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
            let ok = natsd::parse_version(&format!("v{version}"))
                .is_some_and(|v| v >= natsd::MIN_VERSION);
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
    let server = start_private_nats(Path::new(".wxlogin/nats")).await?;
    tracing::info!(url = %server.url(), store = %server.store_dir().display(), "started a private nats-server");
    settings.nats_url = server.url().to_string();
    Ok(Some(server))
}

/// The private nats-server of `wxlogin up`: open (no users: nothing but this machine can reach
/// it), so it listens on loopback only, on a free port, storing into `store`.
pub async fn start_private_nats(store: &Path) -> Result<NatsServer, natsd::NatsdError> {
    NatsServer::start(store, None).await
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
         ask /v1/me who the token is, decrypt the simulated wx.getUserInfo() data, exchange the\n\
         phone code of a simulated getPhoneNumber tap for the number, have WeChat check the\n\
         session_key, log out, and see /v1/me refuse the token (40001):\n\n{commands}"
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
            r#"PHONE_CODE=$(curl -s -X POST "$SIM/sim/phone" -H 'content-type: application/json' -d "{\"appid\":\"$APPID\",\"user\":\"alice\"}" | sed -E 's/.*"code":"([^"]+)".*/\1/')"#,
            r#"curl -s -X POST "$API/v1/phone" -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' -d "{\"code\":\"$PHONE_CODE\"}" -w '\n'"#,
            r#"curl -s "$API/v1/session-key" -H "Authorization: Bearer $TOKEN" -w '\n'"#,
            r#"curl -s -X POST "$API/v1/logout" -H "Authorization: Bearer $TOKEN" -o /dev/null -w '%{http_code}\n'"#,
            r#"curl -s "$API/v1/me" -H "Authorization: Bearer $TOKEN" -w '\n'"#,
        ]
        .map(String::from),
    );
    commands
}
