//! A secured nats-server, as production runs it: the authorization block and the per-role
//! seeds that `wxlogin nats auth` writes, TLS for clients from a private CA, a log file the
//! tests read the server's refusals from. [`Secured::settings_for`] gives a role's settings
//! (its seed and the CA), [`Secured::client`] a raw client of one identity.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use natsd::NatsServer;
use tokio::sync::mpsc;
use wxlogin::{
    app::nats_auth,
    contract::{access::Identity, topology::Topology},
    settings::Settings,
};

pub struct Secured {
    dir: tempfile::TempDir,
    pub ca: PathBuf,
    log: PathBuf,
}

impl Secured {
    /// Starts a server for `topology`'s prefix with per-role users and TLS.
    pub async fn start(topology: &Topology) -> (NatsServer, Secured) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = |name: &str| dir.path().join(name);
        nats_auth::write(&path("auth"), topology, false).expect("nats auth");
        let pki = super::tls::pki();
        std::fs::write(path("ca.pem"), &pki.ca_pem).unwrap();
        std::fs::write(path("server.pem"), &pki.server_cert_pem).unwrap();
        std::fs::write(path("server-key.pem"), &pki.server_key_pem).unwrap();
        let conf = format!(
            "include \"auth/auth.conf\"\ntls {{\n  cert_file: {:?}\n  key_file: {:?}\n  timeout: 5\n}}\n",
            path("server.pem"),
            path("server-key.pem"),
        );
        std::fs::write(path("server.conf"), conf).unwrap();
        let log = path("nats.log");
        let args: Vec<String> = vec![
            "-c".into(),
            path("server.conf").display().to_string(),
            "-l".into(),
            log.display().to_string(),
        ];
        let server = NatsServer::start_with_args(&path("store"), None, &args)
            .await
            .expect("start the secured nats-server");
        let ca = path("ca.pem");
        (server, Secured { dir, ca, log })
    }

    /// The seed file of `identity`.
    pub fn seed(&self, identity: Identity) -> PathBuf {
        self.dir.path().join("auth").join(format!("{identity}.nk"))
    }

    /// `base` as a process of `identity` would have it: its seed, the CA.
    pub fn settings_for(&self, base: &Settings, identity: Identity) -> Settings {
        Settings {
            nats_nkey_file: Some(self.seed(identity)),
            nats_tls_ca_file: Some(self.ca.clone()),
            ..base.clone()
        }
    }

    /// A client connected as `identity`, and the errors the server sends it (its refusals).
    pub async fn client(
        &self,
        base: &Settings,
        identity: Identity,
    ) -> (async_nats::Client, mpsc::UnboundedReceiver<String>) {
        let settings = self.settings_for(base, identity);
        let (tx, rx) = mpsc::unbounded_channel();
        let options = wxlogin::app::connect::options(
            &settings,
            &Topology::from_settings(&settings),
            identity,
        )
        .await
        .expect("options")
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    let _ = tx.send(e.to_string());
                }
            }
        });
        let client = options
            .connect(settings.nats_url.as_str())
            .await
            .expect("connect");
        (client, rx)
    }

    /// Every permission the server refused, as its log says.
    pub fn violations(&self) -> Vec<String> {
        read_log(&self.log)
            .lines()
            // nats-server 2.14 logs `Publish Violation` / `Subscription Violation`.
            .filter(|l| l.contains("Violation"))
            .map(str::to_owned)
            .collect()
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The next refusal the server sent `errors`' client, within a few seconds.
pub async fn next_refusal(errors: &mut mpsc::UnboundedReceiver<String>) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(5), errors.recv())
        .await
        .ok()
        .flatten()
}
