//! `wxlogin nats auth`: the server side of [`crate::contract::access`]. For a deployment's
//! prefix it writes one nkey seed per identity (kept when they exist, so running it again after
//! an upgrade changes permissions, not credentials) and the nats-server `authorization` block
//! that gives each identity's public key exactly its permissions. An operator never writes
//! permissions by hand; a server takes a new block with `nats-server --signal reload`, without
//! dropping a connection (adding `no_auth_user`, `--transition`, needs a restart instead).
//!
//! Plain nkey users in the server's configuration, not operator/JWT mode: one service owns one
//! account, so JWT mode's strength — accounts and users managed apart from the servers, by
//! several teams — buys nothing here, and would add an operator, an account resolver and `nsc`
//! to every deployment. Nkeys keep its main virtue: the server holds only public keys (the
//! block can be read by anyone), the seeds stay with the processes. A server in operator mode
//! works too: give each role a `.creds` file with the same permissions (`nats_creds_file`).

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;

use crate::contract::{
    access::{Identity, Permissions},
    topology::Topology,
};

#[derive(Debug, clap::Subcommand)]
pub enum NatsCommand {
    /// Write one nkey seed per role and the nats-server authorization block for this prefix.
    Auth(AuthArgs),
}

#[derive(Debug, clap::Args)]
pub struct AuthArgs {
    /// Where the seeds (`<role>.nk`, mode 0600) and `auth.conf` go; existing seeds are kept.
    #[arg(long)]
    pub out: PathBuf,
    /// Also let clients without credentials in, with today's open access: for moving a running
    /// open deployment to authenticated NATS without downtime (docs/security.md). Run again
    /// without it once every process has its seed.
    #[arg(long)]
    pub transition: bool,
}

/// The user that clients without credentials become while `--transition` is on.
pub const TRANSITION_USER: &str = "wxlogin-transition";

pub fn run(settings: &crate::settings::Settings, command: NatsCommand) -> anyhow::Result<()> {
    let NatsCommand::Auth(args) = command;
    let topology = Topology::from_settings(settings);
    let written = write(&args.out, &topology, args.transition)?;
    println!("wrote {}", written.auth_conf.display());
    for (identity, seed) in &written.seeds {
        println!("  {identity:<8} WXLOGIN_NATS_NKEY_FILE={}", seed.display());
    }
    println!(
        "include it in each nats-server's configuration (`include \"{}\"`), then `nats-server --signal reload`",
        written.auth_conf.display()
    );
    Ok(())
}

/// What [`write`] wrote.
pub struct Written {
    pub auth_conf: PathBuf,
    pub seeds: Vec<(Identity, PathBuf)>,
}

/// Writes (or keeps) the seeds under `dir` and the authorization block for `topology`.
pub fn write(dir: &Path, topology: &Topology, transition: bool) -> anyhow::Result<Written> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut users = Vec::new();
    let mut seeds = Vec::new();
    for identity in Identity::ALL {
        let path = dir.join(format!("{identity}.nk"));
        let key = if path.exists() {
            let seed = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            nkeys::KeyPair::from_seed(seed.trim())
                .with_context(|| format!("{} holds no nkey seed", path.display()))?
        } else {
            let key = nkeys::KeyPair::new_user();
            let seed = key.seed().context("a fresh key has a seed")?;
            write_private(&path, &seed)?;
            key
        };
        users.push((identity, key.public_key()));
        seeds.push((identity, path));
    }
    let transition_password = transition.then(|| {
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes).expect("the OS random generator is available");
        hex::encode(bytes)
    });
    let auth_conf = dir.join("auth.conf");
    let block = authorization(topology, &users, transition_password.as_deref());
    std::fs::write(&auth_conf, block)
        .with_context(|| format!("cannot write {}", auth_conf.display()))?;
    Ok(Written { auth_conf, seeds })
}

/// A seed readable by its owner only.
fn write_private(path: &Path, seed: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "{seed}").with_context(|| format!("cannot write {}", path.display()))
}

/// The `authorization { … }` block: one nkey user per identity with its permissions, and while
/// in transition an open user for clients that present no credentials.
pub fn authorization(
    topology: &Topology,
    users: &[(Identity, String)],
    transition_password: Option<&str>,
) -> String {
    let mut out = format!(
        "# Written by `wxlogin nats auth` for the prefix {:?}: do not edit, run it again.\n",
        topology.prefix
    );
    out.push_str("authorization {\n  users = [\n");
    for (identity, public_key) in users {
        let _ = writeln!(out, "    # {identity}");
        let _ = writeln!(
            out,
            "    {{ nkey: {public_key:?}, permissions: {} }}",
            render(&topology.permissions(*identity))
        );
    }
    if let Some(password) = transition_password {
        let open = Permissions {
            publish: vec![">".into()],
            subscribe: vec![">".into()],
        };
        let _ = writeln!(
            out,
            "    # clients without credentials, until every process has its seed\n    {{ user: {TRANSITION_USER:?}, password: {password:?}, permissions: {} }}",
            render(&open)
        );
    }
    out.push_str("  ]\n}\n");
    if transition_password.is_some() {
        let _ = writeln!(out, "no_auth_user: {TRANSITION_USER:?}");
    }
    out
}

fn render(p: &Permissions) -> String {
    let list = |subjects: &[String]| {
        subjects
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "{{ publish: {{ allow: [{}] }}, subscribe: {{ allow: [{}] }} }}",
        list(&p.publish),
        list(&p.subscribe)
    )
}
