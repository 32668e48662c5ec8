//! Who a request comes from, for per-client limits. The TCP peer is the client unless it is one
//! of our configured trusted proxies (`WXLOGIN_TRUSTED_PROXIES`); only then is
//! `X-Forwarded-For` read, right to left, skipping our own proxies. A client can write anything
//! into that header, so trusting it from anyone else would let every request pick its own
//! address and escape the limit.

use std::{fmt, net::IpAddr, str::FromStr};

use axum::http::HeaderMap;
use ipnet::IpNet;
use serde::Deserialize;

/// The addresses and networks of our reverse proxies / load balancers.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("trusted proxies must be IP addresses or CIDR networks, comma-separated (got {0:?})")]
pub struct TrustedProxiesError(String);

impl TrustedProxies {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }
}

impl FromStr for TrustedProxies {
    type Err = TrustedProxiesError;

    /// `"10.0.0.0/8, 192.168.1.7, ::1"`; an empty string is no proxy at all.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(parse_one)
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }
}

fn parse_one(item: &str) -> Result<IpNet, TrustedProxiesError> {
    let err = || TrustedProxiesError(item.chars().take(60).collect());
    if item.contains('/') {
        item.parse::<IpNet>().map(|n| n.trunc()).map_err(|_| err())
    } else {
        item.parse::<IpAddr>()
            .map(|ip| IpNet::from(canonical(ip)))
            .map_err(|_| err())
    }
}

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

impl fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustedProxies({self})")
    }
}

/// A comma-separated string (`WXLOGIN_TRUSTED_PROXIES`) or a TOML list of strings.
impl<'de> Deserialize<'de> for TrustedProxies {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        let text = match Raw::deserialize(d)? {
            Raw::One(s) => s,
            Raw::Many(v) => v.join(","),
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`, what a dual-stack socket reports) is the
/// IPv4 address it maps.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address: the peer, or — when the peer is a trusted proxy — the rightmost
/// `X-Forwarded-For` entry that is not itself a trusted proxy. A header we cannot read from a
/// trusted proxy leaves the proxy as the client (limiting the proxy is safer than trusting junk).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer = canonical(peer);
    if trusted.is_empty() || !trusted.contains(peer) {
        return peer;
    }
    // Several X-Forwarded-For headers are one list, in order.
    let mut hops: Vec<IpAddr> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else {
            return peer;
        };
        for item in text.split(',') {
            match item.trim().parse::<IpAddr>() {
                Ok(ip) => hops.push(canonical(ip)),
                Err(_) => return peer,
            }
        }
    }
    hops.into_iter()
        .rev()
        .find(|ip| !trusted.contains(*ip))
        .unwrap_or(peer)
}

/// What a per-client limit is keyed by: the IPv4 address, or the /64 of an IPv6 address (one
/// subscriber usually holds a whole /64, so per-address keys would be free to multiply).
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn proxies_parse_from_addresses_and_networks() {
        let p: TrustedProxies = " 10.0.0.0/8, 192.168.1.7 ,::1,2001:db8::/32"
            .parse()
            .unwrap();
        assert!(p.contains(ip("10.200.3.4")));
        assert!(p.contains(ip("192.168.1.7")));
        assert!(!p.contains(ip("192.168.1.8")));
        assert!(p.contains(ip("::1")));
        assert!(p.contains(ip("2001:db8:1::5")));
        assert!(
            p.contains(ip("::ffff:10.1.1.1")),
            "a mapped IPv4 address is that address"
        );
        assert!("".parse::<TrustedProxies>().unwrap().is_empty());
        for bad in ["10.0.0.0/33", "example.com", "10.0.0.1/x", "1.2.3"] {
            assert!(bad.parse::<TrustedProxies>().is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_is_ignored_from_a_peer_that_is_not_a_trusted_proxy() {
        let trusted: TrustedProxies = "10.0.0.1".parse().unwrap();
        let h = headers(&["203.0.113.9"]);
        assert_eq!(
            client_ip(ip("198.51.100.2"), &h, &trusted),
            ip("198.51.100.2")
        );
        assert_eq!(
            client_ip(ip("198.51.100.2"), &h, &TrustedProxies::default()),
            ip("198.51.100.2")
        );
    }

    #[test]
    fn from_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_client() {
        let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        // The client forged the first entry; our proxies appended the rest.
        let h = headers(&["1.1.1.1, 203.0.113.9", "10.0.0.5"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("203.0.113.9"));
    }

    #[test]
    fn an_unreadable_or_all_trusted_header_leaves_the_proxy_as_the_client() {
        let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        for h in [
            headers(&["not-an-ip"]),
            headers(&["10.0.0.7"]),
            headers(&[]),
            headers(&["203.0.113.9, unknown"]),
        ] {
            assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.1"));
        }
    }

    #[test]
    fn ipv6_clients_are_limited_per_64_and_ipv4_per_address() {
        assert_eq!(limit_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            limit_key(ip("2001:db8:1:2:aaaa::1")),
            limit_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_eq!(limit_key(ip("203.0.113.9")), ip("203.0.113.9"));
        assert_eq!(limit_key(ip("::ffff:203.0.113.9")), ip("203.0.113.9"));
    }
}
