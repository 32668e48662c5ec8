//! What the `{prefix}_tokens` bucket holds per appid: the fleet's one access_token, sealed, with
//! its expiry and the history an operator needs (`wxlogin token status`), and the rules read
//! off it (is it usable, is it due for a refresh, may a forced refresh be spent now).

use serde::{Deserialize, Serialize};

use crate::{contract::AppId, crypto::Keyring};

pub const TOKEN_RECORD_V1: u32 = 1;

/// WeChat's day, for the forced-refresh budget: Beijing time (UTC+8).
const WECHAT_DAY_OFFSET_MS: i64 = 8 * 3_600_000;
const DAY_MS: i64 = 86_400_000;
/// `force_refresh` is allowed at most 20 times a day, 30 s apart (WeChat's own limits).
pub const FORCE_PER_DAY: u32 = 20;
pub const FORCE_SPACING_MS: i64 = 30_000;

/// One appid's shared token and its history. The token itself is sealed (AAD: the appid), so
/// the bucket's readers learn nothing without the master key.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenRecord {
    pub v: u32,
    /// `None` before the first fetch, and after the token failed (compare-and-invalidate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sealed: Option<String>,
    /// When WeChat said it expires, by the fetching worker's clock (bounded by the skew check).
    #[serde(default)]
    pub expires_at_ms: i64,
    /// The lifetime WeChat gave it at fetch time (`expires_in`).
    #[serde(default)]
    pub lifetime_ms: i64,
    #[serde(default)]
    pub fetched_at_ms: i64,
    /// Successful fetches, ever.
    #[serde(default)]
    pub fetches: u64,
    /// Fetches that failed since the last good one.
    #[serde(default)]
    pub failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_errcode: Option<i64>,
    /// No fetch before this, by anyone: set after a failed fetch (briefly after a transient
    /// one, for [`super::REFUSED_BACKOFF`] after a refusal): never a retry loop.
    #[serde(default)]
    pub retry_after_ms: i64,
    /// The last failure was a refusal an operator must fix (not a transient one).
    #[serde(default)]
    pub refused: bool,
    /// A keyed digest of the token that failed last ([`digest`]): a fetch answering that same
    /// token again calls for a forced refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_digest: Option<String>,
    #[serde(default)]
    pub invalidated_at_ms: i64,
    #[serde(default)]
    pub forced: ForceBudget,
}

/// The forced refreshes spent on WeChat's current day.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ForceBudget {
    /// WeChat's day number (days since the epoch, Beijing time).
    pub day: i64,
    pub count: u32,
    pub last_ms: i64,
}

impl ForceBudget {
    pub fn wechat_day(now_ms: i64) -> i64 {
        (now_ms + WECHAT_DAY_OFFSET_MS).div_euclid(DAY_MS)
    }

    /// Forced refreshes used today (0 on a new day).
    pub fn used(&self, now_ms: i64) -> u32 {
        if self.day == Self::wechat_day(now_ms) {
            self.count
        } else {
            0
        }
    }

    /// Whether one more may be spent now: under the daily count and 30 s after the last.
    pub fn allows(&self, now_ms: i64) -> bool {
        self.used(now_ms) < FORCE_PER_DAY && now_ms - self.last_ms >= FORCE_SPACING_MS
    }

    pub fn spend(&mut self, now_ms: i64) {
        *self = ForceBudget {
            day: Self::wechat_day(now_ms),
            count: self.used(now_ms) + 1,
            last_ms: now_ms,
        };
    }
}

/// The associated data of an appid's sealed token: a token sealed for one app cannot be moved
/// to another's key.
pub fn aad(appid: &AppId) -> Vec<u8> {
    format!("wxlogin-access-token-v1\n{appid}").into_bytes()
}

fn digest_aad(appid: &AppId, token: &str) -> Vec<u8> {
    let mut data = aad(appid);
    data.push(b'\n');
    data.extend_from_slice(token.as_bytes());
    data
}

/// A keyed tag of a token: tells a later token from this one without keeping it in the clear.
pub fn digest(keyring: &Keyring, appid: &AppId, token: &str) -> String {
    keyring.tag(&digest_aad(appid, token))
}

/// Whether `digest` is [`digest`] of `token`.
pub fn is_digest_of(keyring: &Keyring, appid: &AppId, token: &str, digest: &str) -> bool {
    keyring
        .verify_tag(digest, &digest_aad(appid, token))
        .is_ok()
}

impl TokenRecord {
    /// Whether the token may be handed out at `now_ms` (present and not expired).
    pub fn usable(&self, now_ms: i64) -> bool {
        self.token_sealed.is_some() && now_ms < self.expires_at_ms
    }

    /// Whether the owner should fetch ahead of expiry: within `ahead_ms` of it (at most half
    /// the lifetime, so a short-lived token is not fetched on every use).
    pub fn due(&self, now_ms: i64, ahead_ms: i64) -> bool {
        let ahead = ahead_ms.min(self.lifetime_ms / 2);
        now_ms >= self.expires_at_ms - ahead
    }
}
