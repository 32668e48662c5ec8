//! The keys the settings name: the master key ring (sealing, tags) and the lookup key (keyed
//! hashes of phone numbers), read from the settings or the files they point to.

use secrecy::ExposeSecret;

use super::{Settings, SettingsError, read_secret_file};
use crate::crypto::{
    LookupKey,
    sealing::{Keyring, MasterKey},
};

fn parse(b64: &str, what: &str) -> Result<MasterKey, SettingsError> {
    MasterKey::from_base64(b64.trim())
        .map_err(|_| SettingsError::Invalid(format!("{what} must be 32 bytes, base64-encoded")))
}

impl Settings {
    /// The master key ring, or `None` when no key is configured.
    pub fn keyring(&self) -> Result<Option<Keyring>, SettingsError> {
        let primary = match (&self.master_key, &self.master_key_file) {
            (Some(k), _) => k.expose_secret().to_string(),
            (None, Some(path)) => read_secret_file(path)?,
            (None, None) => return Ok(None),
        };
        let parse = |b64: &str| parse(b64, "a master key");
        let primary = parse(&primary)?;
        let mut previous = Vec::new();
        if let Some(list) = &self.master_keys_previous {
            for k in list
                .expose_secret()
                .split(',')
                .filter(|k| !k.trim().is_empty())
            {
                previous.push(parse(k)?);
            }
        }
        Ok(Some(
            Keyring::new(primary, previous).writing(self.seal_format),
        ))
    }

    /// The key of phone-number hashes ([`LookupKey`]) when `lookup_key` (or its file) is set;
    /// `None`: the stages derive it from the primary master key of their ring
    /// ([`LookupKey::derived_from`]).
    pub fn lookup_key(&self) -> Result<Option<LookupKey>, SettingsError> {
        let own = match (&self.lookup_key, &self.lookup_key_file) {
            (Some(k), _) => Some(k.expose_secret().to_string()),
            (None, Some(path)) => Some(read_secret_file(path)?),
            (None, None) => None,
        };
        own.map(|b64| Ok(LookupKey::of(&parse(&b64, "lookup_key")?)))
            .transpose()
    }
}
