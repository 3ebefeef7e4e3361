//! The SSRF guard: which destinations Herald may connect to.
//!
//! Endpoints are written by tenants, so a URL may point at Herald's own network (a database on
//! 10.0.0.5, a cloud metadata service on 169.254.169.254). Addresses that are loopback,
//! private, link-local, multicast, unspecified or otherwise not public are refused unless an
//! operator allowlisted a CIDR containing them, and `http://` is refused unless allowed.
//!
//! The check is made on the address actually connected to: hostnames are resolved once by
//! `GuardedResolver`, which hands reqwest only the addresses that pass, so there is no second
//! resolution an attacker could answer differently. IP-literal URLs never reach a resolver and
//! are checked by `DestinationPolicy::check_url`.
//!
//! Owns: that classification; used by `service/` to refuse such URLs up front and by
//! `delivery/` to enforce it at connect time. Must never: connect anywhere itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

#[derive(Clone, Debug)]
pub struct DestinationPolicy {
    pub allow: Vec<IpNet>,
    pub allow_http: bool,
}

/// Why a destination is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Blocked {
    #[error("the URL scheme must be https (http is not allowed on this server)")]
    Scheme,
    #[error("the destination address {0} is not public and not allowlisted")]
    Address(IpAddr),
    #[error("the URL has no host")]
    NoHost,
}

impl DestinationPolicy {
    pub fn ip_allowed(&self, ip: IpAddr) -> bool {
        !is_internal(ip) || self.allow.iter().any(|net| net.contains(&ip))
    }

    /// Checks what can be checked without resolving: the scheme, and the address when the
    /// host is an IP literal (or `localhost`, which always means loopback).
    pub fn check_url(&self, url: &Url) -> Result<(), Blocked> {
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            _ => return Err(Blocked::Scheme),
        }
        match url.host() {
            None => Err(Blocked::NoHost),
            Some(Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)),
            Some(Host::Domain(d))
                if d.eq_ignore_ascii_case("localhost") || d.ends_with(".localhost") =>
            {
                self.check_ip(IpAddr::V4(Ipv4Addr::LOCALHOST))
            }
            Some(Host::Domain(_)) => Ok(()),
        }
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), Blocked> {
        if self.ip_allowed(ip) {
            Ok(())
        } else {
            Err(Blocked::Address(ip))
        }
    }
}

/// Whether an address is anything but a public unicast address.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal_v4(v4);
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated, still private)
                || is_nat64_internal(v6)
                || (first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
        }
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT 100.64/10
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18/15
        || a >= 240 // reserved
}

/// 64:ff9b::/96 embeds an IPv4 address; judge the embedded one.
fn is_nat64_internal(v6: Ipv6Addr) -> bool {
    let s = v6.segments();
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        let o = v6.octets();
        return is_internal_v4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    false
}

/// The resolver reqwest uses: resolves once and keeps only allowed addresses.
pub struct GuardedResolver {
    pub policy: Arc<DestinationPolicy>,
}

/// A name that resolved only to refused addresses.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BlockedDestination(pub Blocked);

/// A name that did not resolve.
#[derive(Debug, thiserror::Error)]
#[error("DNS lookup failed: {0}")]
pub struct DnsFailure(pub String);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| {
                    Box::new(DnsFailure(e.to_string())) as Box<dyn std::error::Error + Send + Sync>
                })?
                .collect();
            let allowed: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| policy.ip_allowed(a.ip()))
                .collect();
            if allowed.is_empty() {
                let err = match addrs.first() {
                    Some(a) => BlockedDestination(Blocked::Address(a.ip())),
                    None => return Err(Box::new(DnsFailure("no addresses".into())) as _),
                };
                return Err(Box::new(err) as _);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_recognised() {
        for s in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "224.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "198.18.0.1",
            "240.0.0.1",
        ] {
            assert!(is_internal(ip(s)), "{s} should be internal");
        }
    }

    #[test]
    fn public_addresses_are_not_internal() {
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_internal(ip(s)), "{s} should be public");
        }
    }

    #[test]
    fn the_allowlist_opens_only_its_cidrs() {
        let policy = DestinationPolicy {
            allow: vec!["127.0.0.0/8".parse().unwrap()],
            allow_http: false,
        };
        assert!(policy.ip_allowed(ip("127.0.0.1")));
        assert!(!policy.ip_allowed(ip("10.0.0.1")));
        assert!(policy.ip_allowed(ip("8.8.8.8")));
    }

    #[test]
    fn urls_are_checked_without_resolving() {
        let strict = DestinationPolicy {
            allow: vec![],
            allow_http: false,
        };
        let url = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            strict.check_url(&url("http://example.com/")),
            Err(Blocked::Scheme)
        );
        assert_eq!(
            strict.check_url(&url("ftp://example.com/")),
            Err(Blocked::Scheme)
        );
        assert!(strict.check_url(&url("https://example.com/")).is_ok());
        assert_eq!(
            strict.check_url(&url("https://127.0.0.1:8443/")),
            Err(Blocked::Address(ip("127.0.0.1")))
        );
        assert_eq!(
            strict.check_url(&url("https://[::1]/")),
            Err(Blocked::Address(ip("::1")))
        );
        assert!(strict.check_url(&url("https://localhost/")).is_err());
        let open = DestinationPolicy {
            allow: vec!["127.0.0.0/8".parse().unwrap()],
            allow_http: true,
        };
        assert!(open.check_url(&url("http://127.0.0.1:9/")).is_ok());
        assert!(open.check_url(&url("http://localhost:9/")).is_ok());
        assert!(open.check_url(&url("http://10.0.0.1/")).is_err());
    }
}
