//! The ids a login carries through every stage, as types: a function that takes an [`AppId`],
//! a [`CodeKey`] and a [`LoginId`] cannot be called with two of them swapped. On the wire each
//! is the plain string it wraps (`#[serde(transparent)]`), so no event format changes. Each
//! reads as a `&str` (`Deref`) where text is all that is needed: a log field, a header.

use std::{borrow::Borrow, fmt, ops::Deref};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        // Hashes and compares as the text it wraps, so a set of ids can be asked for a `&str`.
        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_owned())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

string_id!(
    /// A mini program's appid (`wx` and 16 hex digits), as configured and as WeChat knows it.
    AppId
);
string_id!(
    /// One login attempt, made by the ingress when the request arrives (a UUIDv7): its result,
    /// its reply and its session all name it.
    LoginId
);
string_id!(
    /// The ledger key of a code: never the code itself (see [`CodeKey::of`]).
    CodeKey
);

impl LoginId {
    /// A new login id: time-ordered, so logs and streams sort by arrival.
    pub fn new() -> LoginId {
        LoginId(uuid::Uuid::now_v7().simple().to_string())
    }
}

impl LoginId {
    /// The id of a phone-number exchange: one per (session, phone code), so the same session
    /// submitting the same code again is the same request and gets the same answer, and any
    /// other session's is another request, which the code's result does not answer.
    pub fn for_phone(session: &LoginId, code_key: &CodeKey) -> LoginId {
        let mut h = Sha256::new();
        h.update(b"wxlogin-phone-request\0");
        h.update(session.as_bytes());
        h.update(b"\0");
        h.update(code_key.as_bytes());
        LoginId(hex::encode(&h.finalize()[..16]))
    }
}

impl Default for LoginId {
    fn default() -> Self {
        LoginId::new()
    }
}

impl CodeKey {
    /// Hex SHA-256 (first 20 bytes) of the appid and the code. Codes are 32 random characters,
    /// so the hash cannot be reversed by guessing, and the ledger never holds a code that could
    /// be exchanged.
    pub fn of(appid: &AppId, code: &str) -> CodeKey {
        let mut h = Sha256::new();
        h.update(b"wxlogin-code\0");
        h.update(appid.as_bytes());
        h.update(b"\0");
        h.update(code.as_bytes());
        CodeKey(hex::encode(&h.finalize()[..20]))
    }

    /// The key of a phone code (`getPhoneNumber`'s `detail.code`): like [`CodeKey::of`], in a
    /// namespace of its own, so a phone code and a login code never share a ledger entry.
    pub fn of_phone(appid: &AppId, code: &str) -> CodeKey {
        let mut h = Sha256::new();
        h.update(b"wxlogin-phone-code\0");
        h.update(appid.as_bytes());
        h.update(b"\0");
        h.update(code.as_bytes());
        CodeKey(hex::encode(&h.finalize()[..20]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_travel_as_the_plain_strings_they_wrap() {
        let appid = AppId::from("wx0123456789abcdef");
        assert_eq!(
            serde_json::to_string(&appid).unwrap(),
            "\"wx0123456789abcdef\""
        );
        let back: AppId = serde_json::from_str("\"wx0123456789abcdef\"").unwrap();
        assert_eq!(back, appid);
    }

    #[test]
    fn a_code_key_depends_on_the_app_and_the_code_and_reveals_neither() {
        let (a, b) = (
            AppId::from("wxaaaaaaaaaaaaaaaa"),
            AppId::from("wxbbbbbbbbbbbbbbbb"),
        );
        let code = "0123456789abcdefABCDEF0123456789";
        let key = CodeKey::of(&a, code);
        assert_eq!(key, CodeKey::of(&a, code));
        assert_ne!(key, CodeKey::of(&b, code));
        assert_ne!(key, CodeKey::of(&a, "0123456789abcdefABCDEF012345678x"));
        assert_eq!(key.len(), 40);
        assert!(!key.contains(code) && !key.contains(a.as_str()));
        assert_ne!(
            key,
            CodeKey::of_phone(&a, code),
            "phone codes have their own keys"
        );
    }

    #[test]
    fn a_phone_request_is_the_same_for_one_session_and_code_and_another_for_any_other() {
        let a = AppId::from("wxaaaaaaaaaaaaaaaa");
        let (s1, s2) = (LoginId::new(), LoginId::new());
        let (c1, c2) = (
            CodeKey::of_phone(&a, "code-one-1"),
            CodeKey::of_phone(&a, "code-two-2"),
        );
        assert_eq!(LoginId::for_phone(&s1, &c1), LoginId::for_phone(&s1, &c1));
        assert_ne!(LoginId::for_phone(&s1, &c1), LoginId::for_phone(&s2, &c1));
        assert_ne!(LoginId::for_phone(&s1, &c1), LoginId::for_phone(&s1, &c2));
        assert_eq!(LoginId::for_phone(&s1, &c1).len(), 32);
    }
}
