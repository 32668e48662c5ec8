//! Connecting a process to NATS as one [`Identity`]: its credentials (an nkey seed, a JWT
//! `.creds` file, or a user and a password file), TLS verified against the servers' private CA,
//! its own inbox prefix, a check that the server is recent enough, and then the topology: the
//! admin creates or updates it, every other identity only finds it.

use std::time::Duration;

use async_nats::jetstream;

use super::roles::RoleError;
use crate::{
    contract::{
        access::Identity,
        topology::{Handles, Topology},
    },
    settings::Settings,
};

fn config(e: impl std::fmt::Display) -> RoleError {
    RoleError::Config(e.to_string())
}

/// A seed or a password from its file (the settings' one reader of secret files).
fn read_secret(path: &std::path::Path) -> Result<String, RoleError> {
    crate::settings::read_secret_file(path).map_err(config)
}

/// The connection options `settings` give `identity`.
pub async fn options(
    settings: &Settings,
    topology: &Topology,
    identity: Identity,
) -> Result<async_nats::ConnectOptions, RoleError> {
    let mut options = if let Some(path) = &settings.nats_creds_file {
        async_nats::ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|e| {
                config(format!(
                    "cannot read nats_creds_file {}: {e}",
                    path.display()
                ))
            })?
    } else if let Some(path) = &settings.nats_nkey_file {
        let seed = read_secret(path)?;
        // Checked here so a wrong file is refused with its name, not as an opaque auth error.
        nkeys::KeyPair::from_seed(&seed).map_err(|_| {
            config(format!(
                "nats_nkey_file {} holds no nkey seed (`wxlogin nats auth` writes them)",
                path.display()
            ))
        })?;
        async_nats::ConnectOptions::with_nkey(seed)
    } else if let (Some(user), Some(path)) = (&settings.nats_user, &settings.nats_password_file) {
        let password = read_secret(path)?;
        async_nats::ConnectOptions::with_user_and_password(user.clone(), password)
    } else {
        async_nats::ConnectOptions::new()
    };
    if let Some(ca) = &settings.nats_tls_ca_file {
        // async-nats and reqwest bring two rustls providers; rustls then picks none by itself.
        // The first one installed wins, and both are sound: ignore a second installation.
        let _ = rustls::crypto::ring::default_provider().install_default();
        if !ca.is_file() {
            return Err(config(format!(
                "nats_tls_ca_file {} is missing",
                ca.display()
            )));
        }
        options = options.require_tls(true).add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&settings.nats_tls_cert_file, &settings.nats_tls_key_file) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(options
        .name(format!("wxlogin-{identity}"))
        .custom_inbox_prefix(topology.inbox_prefix(identity))
        .connection_timeout(Duration::from_secs(5)))
}

/// Connects as `identity`, checks the server is recent enough, and creates (admin) or finds
/// (every other identity) the streams and buckets; [`super::Pipeline::connect`] is its caller.
pub(super) async fn connect_nats(
    settings: &Settings,
    topology: &Topology,
    identity: Identity,
) -> Result<(async_nats::Client, jetstream::Context, Handles), RoleError> {
    let url = settings.nats_url.clone();
    // `nats://a:4222,nats://b:4222`: every server of a cluster, so any one can be down at start.
    let servers = url
        .split(',')
        .map(|s| s.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| RoleError::Nats {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    let client = options(settings, topology, identity)
        .await?
        .connect(servers)
        .await
        .map_err(|e| RoleError::Nats {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    let version = client.server_info().version;
    if natsd::parse_version(&format!("v{version}")).is_none_or(|v| v < natsd::MIN_VERSION) {
        return Err(RoleError::OldNats { url, version });
    }
    let js = jetstream::new(client.clone());
    // A JetStream cluster that is still electing its leader refuses stream changes for a few
    // seconds, and a role may start before `wxlogin migrate` has run: keep trying for a while.
    let mut attempt = 0;
    let handles = loop {
        let found = if identity.may_change_topology() {
            topology.ensure(&js).await
        } else {
            topology.bind(&js).await
        };
        match found {
            Ok(h) => break h,
            Err(e) if attempt < 30 => {
                attempt += 1;
                tracing::warn!(error = %e, attempt, "JetStream not ready; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    tracing::info!(%identity, nats = %url, server_version = %version, prefix = %settings.nats_prefix, "connected to NATS");
    Ok((client, js, handles))
}
