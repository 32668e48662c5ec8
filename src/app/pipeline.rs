//! The one wiring point: [`Pipeline::connect`] builds, once per process, what every role shares
//! (the NATS connection, the topology it ensured, the settings), and each stage is made from it
//! by one method. Every role, `wxlogin up` and the replay go through here (and so every test
//! that runs roles), so a new dependency of a stage (a token owner, say) is added in one place;
//! tests of a single step may build its parts by hand ([`crate::exchange::ExchangerParts`]).

use crate::clock::Clock;
use std::{collections::HashSet, sync::Arc};

use async_nats::jetstream;

use super::roles::RoleError;
use crate::{
    contract::{
        access::Identity,
        ledger::Ledger,
        topology::{Handles, Topology},
    },
    crypto::{Keyring, LookupKey},
    exchange::{AccessTokens, Budget, Exchanger, ExchangerParts},
    ingress::{Ingress, IngressParts, guard::Limits},
    sessions::SessionStore,
    settings::{App, Settings},
    wechat::{ClientOptions, WechatClient},
};

/// What the stages of one process share, connected from the settings.
#[derive(Clone)]
pub struct Pipeline {
    pub settings: Settings,
    pub topology: Topology,
    pub nats: async_nats::Client,
    pub js: jetstream::Context,
    /// The streams and buckets [`Topology::ensure`] made or found.
    pub handles: Handles,
    /// The time every stage of the process goes by.
    pub clock: Clock,
}

impl Pipeline {
    /// Connects to NATS as `identity` (the settings' credentials), checks the server is recent
    /// enough, and creates (admin) or finds (the roles) the streams and buckets, retrying while
    /// a cluster elects its leaders.
    pub async fn connect(settings: &Settings, identity: Identity) -> Result<Pipeline, RoleError> {
        let topology = Topology::from_settings(settings);
        let (nats, js, handles) =
            super::connect::connect_nats(settings, &topology, identity).await?;
        Ok(Pipeline {
            settings: settings.clone(),
            topology,
            nats,
            js,
            handles,
            clock: Clock::off_by_ms(settings.test_clock_offset_ms),
        })
    }

    /// The code ledger (claims and results), as both the ingress and the workers read it.
    pub fn ledger(&self) -> Ledger {
        Ledger::new(
            self.handles.ledger.clone(),
            self.handles.results.clone(),
            self.js.clone(),
            &self.topology,
            self.clock,
        )
    }

    pub fn sessions(&self, keyring: Arc<Keyring>) -> SessionStore {
        SessionStore::new(
            self.handles.sessions.clone(),
            self.clock,
            keyring,
            self.settings.session_legacy_max_revision,
        )
    }

    /// Stage 1: the ingress for `apps`. `database`: what `/readyz` reports (it never gates).
    pub fn ingress(
        &self,
        keyring: Arc<Keyring>,
        apps: &[App],
        database: Option<Arc<crate::upsert::db::Probe>>,
    ) -> Arc<Ingress> {
        Ingress::new(IngressParts {
            nats: self.nats.clone(),
            js: self.js.clone(),
            topology: self.topology.clone(),
            appids: apps.iter().map(|a| a.appid.clone()).collect::<HashSet<_>>(),
            sessions: self.sessions(keyring.clone()),
            keyring,
            ledger: self.ledger(),
            database,
            login_wait: self.settings.login_wait(),
            limits: Limits::from_settings(&self.settings),
            clock: self.clock,
        })
    }

    /// Stage 2: an exchange worker for `apps`, calling WeChat as the settings say.
    pub fn exchanger(&self, keyring: Arc<Keyring>, apps: &[App]) -> Result<Exchanger, RoleError> {
        let wechat = self.wechat_client()?;
        let lookup = match self.settings.lookup_key() {
            Ok(Some(key)) => key,
            // Mid-rotation, workers with different primaries would hash one number two ways.
            Ok(None) if self.settings.master_keys_previous.is_some() => {
                return Err(RoleError::Config(
                    "master_keys_previous is set (a master-key rotation) but lookup_key is not: \
                     the phone-number hashes would change with the primary key; set lookup_key \
                     (docs/security.md, \"Phone numbers\")"
                        .into(),
                ));
            }
            Ok(None) => LookupKey::derived_from(keyring.primary()),
            Err(e) => return Err(RoleError::Config(e.to_string())),
        };
        Ok(Exchanger::new(ExchangerParts {
            tokens: Arc::new(self.access_tokens(wechat.clone(), keyring.clone(), apps)),
            wechat,
            apps,
            quota: self.settings.app_quota,
            phone_quota: self.settings.phone_quota,
            lookup,
            keyring,
            ledger: self.ledger(),
            budget: Budget::new(self.handles.quota.clone(), self.clock),
            js: self.js.clone(),
            nats: self.nats.clone(),
            topology: self.topology.clone(),
        }))
    }

    /// The fleet's access tokens for `apps`, as a worker shares them.
    pub fn access_tokens(
        &self,
        wechat: WechatClient,
        keyring: Arc<Keyring>,
        apps: &[App],
    ) -> AccessTokens {
        AccessTokens::new(
            self.handles.tokens.clone(),
            wechat,
            apps.iter()
                .map(|a| (a.appid.clone(), a.secret.clone()))
                .collect(),
            keyring,
            self.clock,
            std::time::Duration::from_secs(self.settings.token_refresh_ahead_secs),
        )
    }

    fn wechat_client(&self) -> Result<WechatClient, RoleError> {
        let settings = &self.settings;
        let extra_root_ca_pem = match &settings.wechat_ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                RoleError::Config(format!(
                    "cannot read wechat_ca_file {}: {e}",
                    path.display()
                ))
            })?),
            None => None,
        };
        WechatClient::new(ClientOptions {
            base_url: settings.wechat_base_url.clone(),
            extra_root_ca_pem,
            request_timeout: std::time::Duration::from_millis(settings.wechat_timeout_ms),
            ..ClientOptions::default()
        })
        .map_err(|e| RoleError::Runtime(e.to_string()))
    }
}
