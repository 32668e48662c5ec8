//! Phone codes: minted by `POST /sim/phone` (the simulated `getPhoneNumber` button), bound to
//! an app and a user, single use, with a lifetime; and the number each one reveals.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

/// A user's number as WeChat answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Number {
    /// `+<country><pure>` for a foreign number or one given with its `+`; else the pure number.
    pub(crate) phone_number: String,
    pub(crate) pure_phone_number: String,
    pub(crate) country_code: String,
}

impl Number {
    /// From `/sim/phone`'s `phone` (pure digits, or `+<country><pure>`) and `country`
    /// (digits, default 86); without a phone, a number derived from the user's name.
    pub(crate) fn parse(
        phone: Option<&str>,
        country: Option<&str>,
        user: &str,
    ) -> Result<Self, String> {
        let country = country.unwrap_or("86");
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(country) || country.len() > 4 {
            return Err("country must be 1..=4 digits".into());
        }
        let Some(phone) = phone else {
            let hash = user
                .bytes()
                .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
            let pure = format!("138{:08}", hash % 100_000_000);
            return Ok(Number::of(country, &pure, false));
        };
        let (pure, plus) = match phone.strip_prefix('+') {
            Some(rest) => (
                rest.strip_prefix(country)
                    .ok_or("a phone with `+` must start with +<country>")?,
                true,
            ),
            None => (phone, false),
        };
        if !digits(pure) {
            return Err("phone must be digits, optionally after +<country>".into());
        }
        Ok(Number::of(country, pure, plus))
    }

    fn of(country: &str, pure: &str, plus: bool) -> Self {
        let phone_number = if plus || country != "86" {
            format!("+{country}{pure}")
        } else {
            pure.to_owned()
        };
        Number {
            phone_number,
            pure_phone_number: pure.to_owned(),
            country_code: country.to_owned(),
        }
    }
}

#[derive(Debug)]
struct PhoneCode {
    app: usize,
    user: String,
    number: Number,
    expires_at: Instant,
    used: bool,
}

/// Why an exchange failed, in the order it is checked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PhoneRefusal {
    /// 40029: unknown, expired or already used (`reused` for the last).
    Invalid { reused: bool },
    /// 40013: a code of another app than the token's.
    OtherApp,
    /// 40003: an openid was given and it is not the code's user's.
    OtherUser,
}

#[derive(Debug, Default)]
pub(crate) struct Phones {
    codes: HashMap<String, PhoneCode>,
    minted: u64,
}

impl Phones {
    pub(crate) fn mint(
        &mut self,
        app: usize,
        user: &str,
        number: Number,
        now: Instant,
        ttl: Duration,
    ) -> String {
        self.minted += 1;
        if self.minted.is_multiple_of(1024) {
            // Forget codes long expired, so that a long run does not grow without bound.
            self.codes.retain(|_, c| c.expires_at + ttl > now);
        }
        let code = hex_code();
        let record = PhoneCode {
            app,
            user: user.to_owned(),
            number,
            expires_at: now + ttl,
            used: false,
        };
        self.codes.insert(code.clone(), record);
        code
    }

    /// Exchanges `code` for the token's `app`; `openid_of` gives a user's openid in that app.
    /// A refused call spends nothing, except that a used code stays used.
    pub(crate) fn exchange(
        &mut self,
        app: usize,
        code: &str,
        openid: Option<&str>,
        openid_of: impl Fn(&str) -> String,
        now: Instant,
    ) -> Result<Number, PhoneRefusal> {
        let c = self
            .codes
            .get_mut(code)
            .ok_or(PhoneRefusal::Invalid { reused: false })?;
        if c.used {
            return Err(PhoneRefusal::Invalid { reused: true });
        }
        if c.app != app {
            return Err(PhoneRefusal::OtherApp);
        }
        if now >= c.expires_at {
            return Err(PhoneRefusal::Invalid { reused: false });
        }
        if openid.is_some_and(|o| o != openid_of(&c.user)) {
            return Err(PhoneRefusal::OtherUser);
        }
        c.used = true;
        Ok(c.number.clone())
    }
}

/// A phone code: 64 hex chars, as seen in the wild.
fn hex_code() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_carry_the_prefix_only_when_foreign_or_given_with_it() {
        let cn = Number::parse(Some("13800000000"), None, "u").unwrap();
        assert_eq!(
            (cn.phone_number.as_str(), cn.country_code.as_str()),
            ("13800000000", "86")
        );
        let plus = Number::parse(Some("+8613800000000"), None, "u").unwrap();
        assert_eq!(plus.phone_number, "+8613800000000");
        assert_eq!(plus.pure_phone_number, "13800000000");
        let us = Number::parse(Some("2025550123"), Some("1"), "u").unwrap();
        assert_eq!(us.phone_number, "+12025550123");
        assert!(Number::parse(Some("+4412345"), None, "u").is_err());
        assert!(Number::parse(Some("12ab"), None, "u").is_err());
        assert!(Number::parse(None, Some("86x"), "u").is_err());
        let derived = Number::parse(None, None, "alice").unwrap();
        assert_eq!(derived, Number::parse(None, None, "alice").unwrap());
        assert_eq!(derived.pure_phone_number.len(), 11);
    }
}
