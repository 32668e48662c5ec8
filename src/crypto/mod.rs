//! Cryptography wxlogin owns:
//! - [`wxbiz`]: WXBizDataCrypt, WeChat's AES-128-CBC encryption of user data under the
//!   `session_key`, and the `rawData` signature; strict, with the official demo's error codes.
//! - [`sealing`]: sealing of our own secrets (session keys at rest, secrets in transit) and
//!   authentication tags, under a rotatable master key: XChaCha20-Poly1305 (`v2`), AES-256-GCM
//!   (`v1`, still opened), and a key id in every sealed text.
//! - [`lookup`]: keyed hashes (HMAC-SHA256) of values kept sealed, for indexes and lookups.

pub mod lookup;
pub mod sealing;
pub mod wxbiz;

pub use lookup::LookupKey;
pub use sealing::{Keyring, MasterKey, SealError, SealFormat};
pub use wxbiz::WxBizError;
