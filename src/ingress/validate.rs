//! What a WeChat appid and login code can look like. Anything else is refused at the door,
//! without a publish or an upstream call, so junk cannot burn the app's WeChat quota.

/// `wx` followed by 16 lowercase hex digits.
pub fn is_plausible_appid(appid: &str) -> bool {
    appid.len() == 18
        && appid.starts_with("wx")
        && appid[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Longest code we accept; WeChat's are 32 characters.
pub const MAX_CODE_LEN: usize = 128;
/// Shortest code we accept.
pub const MIN_CODE_LEN: usize = 8;

/// WeChat codes are short runs of `[0-9A-Za-z]` (32 of them today); `-` and `_` are allowed in
/// case the format grows, nothing else is.
pub fn is_plausible_code(code: &str) -> bool {
    (MIN_CODE_LEN..=MAX_CODE_LEN).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_looking_values_pass() {
        assert!(is_plausible_appid("wx0123456789abcdef"));
        assert!(is_plausible_code("051nI5Pa1XJkDs0773Pa1OWYOa1nI5PF"));
    }

    #[test]
    fn junk_is_refused() {
        for appid in [
            "",
            "wx",
            "wx0123456789ABCDEF",
            "xx0123456789abcdef",
            "wx0123456789abcdef0",
        ] {
            assert!(!is_plausible_appid(appid), "{appid:?}");
        }
        let long = "a".repeat(MAX_CODE_LEN + 1);
        for code in [
            "",
            "short",
            "has space in it",
            "abc&def=ghij",
            "日本語のコードです",
            long.as_str(),
        ] {
            assert!(!is_plausible_code(code), "{code:?}");
        }
    }
}
