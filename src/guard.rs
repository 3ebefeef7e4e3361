//! The SSRF guard: which destinations Herald may connect to.
//!
//! Endpoints are written by tenants, so a URL may point at Herald's own network (a database on
//! 10.0.0.5, a cloud metadata service on 169.254.169.254). Every block of the IANA IPv4 and
//! IPv6 special-purpose address registries (loopback, private, link-local, documentation,
//! translation, ...), multicast, and IPv6 outside global unicast are refused unless an
//! operator allowlisted a CIDR containing the address; an IPv6 address that carries an IPv4
//! one (IPv4-mapped, NAT64, 6to4, Teredo) is judged by the IPv4 address its packets reach.
//! `http://` is refused unless allowed. Classification is pure: no I/O.
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
    /// The address, and the special-purpose block it is in.
    #[error("the destination address {0} is not public ({1}) and not allowlisted")]
    Address(IpAddr, &'static str),
    #[error("the URL has no host")]
    NoHost,
}

impl DestinationPolicy {
    /// Whether deliveries may connect to `ip`: an allowlisted address always may; otherwise a
    /// public one may, a special-purpose one may not, and one that carries IPv4 addresses
    /// (IPv4-mapped, NAT64, 6to4, Teredo) may when every address it carries may.
    pub fn ip_allowed(&self, ip: IpAddr) -> bool {
        self.refusal(ip).is_none()
    }

    /// Why deliveries may not connect to `ip` (the block it is in), if they may not.
    pub fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        if self.allow.iter().any(|net| net.contains(&ip)) {
            return None;
        }
        match classify(ip) {
            Class::Public => None,
            Class::Special(block) => Some(block),
            Class::Carries { via, first, second } => {
                let refused = |v4: Ipv4Addr| self.refusal(IpAddr::V4(v4)).is_some();
                (refused(first) || second.is_some_and(refused)).then_some(via)
            }
        }
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
        match self.refusal(ip) {
            None => Ok(()),
            Some(block) => Err(Blocked::Address(ip, block)),
        }
    }
}

/// What an address is, for the guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// Public unicast.
    Public,
    /// In a special-purpose block (named): not a place a webhook receiver lives.
    Special(&'static str),
    /// An IPv6 address (of the form named) whose packets end up at these IPv4 addresses
    /// (Teredo carries two: its server and its client), so those decide.
    Carries {
        via: &'static str,
        first: Ipv4Addr,
        second: Option<Ipv4Addr>,
    },
}

/// The IANA IPv4 Special-Purpose Address Registry (2025), every entry, plus multicast (its own
/// registry). All are refused, the "globally reachable" ones too: those are anycast
/// infrastructure (AS112 DNS sinks, AMT relays, PCP and TURN anycast), never a receiver.
const SPECIAL_V4: &[(Ipv4Addr, u8, &str)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8, "this network"),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "private-use"),
    (Ipv4Addr::new(100, 64, 0, 0), 10, "shared address space"),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback"),
    (Ipv4Addr::new(169, 254, 0, 0), 16, "link-local"),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "private-use"),
    (Ipv4Addr::new(192, 0, 0, 0), 29, "IPv4 service continuity"),
    (Ipv4Addr::new(192, 0, 0, 8), 32, "IPv4 dummy address"),
    (
        Ipv4Addr::new(192, 0, 0, 9),
        32,
        "port control protocol anycast",
    ),
    (Ipv4Addr::new(192, 0, 0, 10), 32, "TURN anycast"),
    (Ipv4Addr::new(192, 0, 0, 170), 31, "NAT64/DNS64 discovery"),
    (Ipv4Addr::new(192, 0, 0, 0), 24, "IETF protocol assignments"),
    (
        Ipv4Addr::new(192, 0, 2, 0),
        24,
        "documentation (TEST-NET-1)",
    ),
    (Ipv4Addr::new(192, 31, 196, 0), 24, "AS112-v4"),
    (Ipv4Addr::new(192, 52, 193, 0), 24, "AMT"),
    (
        Ipv4Addr::new(192, 88, 99, 0),
        24,
        "6to4 relay anycast (deprecated)",
    ),
    (Ipv4Addr::new(192, 168, 0, 0), 16, "private-use"),
    (
        Ipv4Addr::new(192, 175, 48, 0),
        24,
        "direct delegation AS112 service",
    ),
    (Ipv4Addr::new(198, 18, 0, 0), 15, "benchmarking"),
    (
        Ipv4Addr::new(198, 51, 100, 0),
        24,
        "documentation (TEST-NET-2)",
    ),
    (
        Ipv4Addr::new(203, 0, 113, 0),
        24,
        "documentation (TEST-NET-3)",
    ),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast"),
    (Ipv4Addr::new(240, 0, 0, 0), 4, "reserved"),
    (Ipv4Addr::new(255, 255, 255, 255), 32, "limited broadcast"),
];

/// The IANA IPv6 Special-Purpose Address Registry (2025), every entry but those that carry an
/// IPv4 address (see `carried_v4`), plus the blocks RFC 4291 and RFC 3879 reserve. Refused
/// outright, for the reason given at `SPECIAL_V4`; the IPv4-compatible, IPv4-translated and
/// local-use NAT64 blocks are refused rather than judged by an embedded IPv4 address: the
/// first two are deprecated (no stack routes them as IPv4 any more), and where a local-use
/// NAT64 prefix puts its IPv4 address depends on a prefix length only its operator knows,
/// while its translator sits inside that operator's network by definition.
const SPECIAL_V6: &[(Ipv6Addr, u8, &str)] = &[
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1), 128, "loopback"),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 128, "unspecified"),
    (
        Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0),
        96,
        "IPv4-compatible (deprecated)",
    ),
    (
        Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, 0, 0),
        96,
        "IPv4-translated (obsolete)",
    ),
    (
        Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        48,
        "local-use IPv4/IPv6 translation",
    ),
    (
        Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
        64,
        "discard-only",
    ),
    (
        Ipv6Addr::new(0x100, 0, 0, 1, 0, 0, 0, 0),
        64,
        "dummy IPv6 prefix",
    ),
    (
        Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 1),
        128,
        "port control protocol anycast",
    ),
    (
        Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 2),
        128,
        "TURN anycast",
    ),
    (
        Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 3),
        128,
        "DNS-SD service registration anycast",
    ),
    (
        Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0),
        48,
        "benchmarking",
    ),
    (Ipv6Addr::new(0x2001, 3, 0, 0, 0, 0, 0, 0), 32, "AMT"),
    (
        Ipv6Addr::new(0x2001, 4, 0x112, 0, 0, 0, 0, 0),
        48,
        "AS112-v6",
    ),
    (
        Ipv6Addr::new(0x2001, 0x10, 0, 0, 0, 0, 0, 0),
        28,
        "ORCHID (deprecated)",
    ),
    (
        Ipv6Addr::new(0x2001, 0x20, 0, 0, 0, 0, 0, 0),
        28,
        "ORCHIDv2",
    ),
    (
        Ipv6Addr::new(0x2001, 0x30, 0, 0, 0, 0, 0, 0),
        28,
        "drone remote ID",
    ),
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        23,
        "IETF protocol assignments",
    ),
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        "documentation",
    ),
    (
        Ipv6Addr::new(0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0),
        48,
        "direct delegation AS112 service",
    ),
    (
        Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        "documentation",
    ),
    (
        Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0),
        16,
        "segment routing SIDs",
    ),
    (
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        "unique-local",
    ),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, "link-local"),
    (
        Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
        10,
        "site-local (deprecated)",
    ),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, "multicast"),
];

/// IANA allocates global unicast IPv6 from 2000::/3 only; the rest is reserved by the IETF.
const GLOBAL_UNICAST_V6: (Ipv6Addr, u8) = (Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3);

fn classify(ip: IpAddr) -> Class {
    match ip {
        IpAddr::V4(v4) => match SPECIAL_V4
            .iter()
            .find(|(net, len, _)| in_v4(v4, *net, *len))
        {
            Some((_, _, name)) => Class::Special(name),
            None => Class::Public,
        },
        IpAddr::V6(v6) => {
            if let Some(carries) = carried_v4(v6) {
                return carries;
            }
            if let Some((_, _, name)) = SPECIAL_V6
                .iter()
                .find(|(net, len, _)| in_v6(v6, *net, *len))
            {
                return Class::Special(name);
            }
            if in_v6(v6, GLOBAL_UNICAST_V6.0, GLOBAL_UNICAST_V6.1) {
                Class::Public
            } else {
                Class::Special("reserved by the IETF")
            }
        }
    }
}

/// The IPv4 addresses an IPv6 address's packets are delivered to, for the forms where that
/// address is fixed by the IPv6 one: IPv4-mapped (`::ffff:0:0/96`, how a dual-stack socket
/// writes IPv4), NAT64's well-known prefix (`64:ff9b::/96`, what DNS64 answers for IPv4-only
/// hosts), 6to4 (`2002::/16`, bits 16..48) and Teredo (`2001::/32`: its server in bits 32..64,
/// its client in the last 32 bits, inverted). A relay or translator on the way may be inside
/// the operator's network, so these addresses are judged as IPv4, and a public one passes.
fn carried_v4(v6: Ipv6Addr) -> Option<Class> {
    let bits = u128::from(v6);
    let v4_at = |shift: u32| Ipv4Addr::from((bits >> shift) as u32);
    let carries = |via, first, second| Some(Class::Carries { via, first, second });
    if let Some(v4) = v6.to_ipv4_mapped() {
        carries("IPv4-mapped, of a non-public IPv4 address", v4, None)
    } else if in_v6(v6, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
        carries("NAT64, to a non-public IPv4 address", v4_at(0), None)
    } else if in_v6(v6, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        carries("6to4, through a non-public IPv4 address", v4_at(80), None)
    } else if in_v6(v6, Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32) {
        let client = Ipv4Addr::from(!(bits as u32));
        carries(
            "Teredo, through a non-public IPv4 address",
            v4_at(64),
            Some(client),
        )
    } else {
        None
    }
}

fn in_v4(ip: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net)
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net)
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
            let mut first_refused = None;
            let allowed: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| match policy.refusal(a.ip()) {
                    None => true,
                    Some(block) => {
                        first_refused.get_or_insert(Blocked::Address(a.ip(), block));
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                return Err(match first_refused {
                    Some(blocked) => Box::new(BlockedDestination(blocked)) as _,
                    None => Box::new(DnsFailure("no addresses".into())) as _,
                });
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

    fn strict() -> DestinationPolicy {
        DestinationPolicy {
            allow: vec![],
            allow_http: false,
        }
    }

    fn refused(s: &str) -> bool {
        !strict().ip_allowed(ip(s))
    }

    /// One test per block: its first and last addresses (and any given between) are refused.
    /// Written out here, not read from the tables, so a block missing there fails.
    macro_rules! refused_blocks {
        ($($name:ident: $($addr:literal),+;)*) => {$(
            #[test]
            fn $name() {
                for addr in [$($addr),+] {
                    assert!(refused(addr), "{addr} should be refused");
                }
            }
        )*};
    }

    refused_blocks! {
        v4_this_network_0_0_0_0_8: "0.0.0.0", "0.1.2.3", "0.255.255.255";
        v4_private_10_8: "10.0.0.0", "10.255.255.255";
        v4_shared_address_space_100_64_10: "100.64.0.0", "100.127.255.255";
        v4_loopback_127_8: "127.0.0.1", "127.255.255.255";
        v4_link_local_169_254_16: "169.254.0.0", "169.254.169.254", "169.254.255.255";
        v4_private_172_16_12: "172.16.0.0", "172.31.255.255";
        v4_ietf_protocol_assignments_192_0_0_24: "192.0.0.0", "192.0.0.255";
        v4_service_continuity_192_0_0_0_29: "192.0.0.0", "192.0.0.7";
        v4_dummy_pcp_turn_anycast_192_0_0_8_to_10: "192.0.0.8", "192.0.0.9", "192.0.0.10";
        v4_nat64_discovery_192_0_0_170_31: "192.0.0.170", "192.0.0.171";
        v4_documentation_192_0_2_24: "192.0.2.0", "192.0.2.255";
        v4_as112_192_31_196_24: "192.31.196.0", "192.31.196.255";
        v4_amt_192_52_193_24: "192.52.193.0", "192.52.193.255";
        v4_6to4_relay_anycast_192_88_99_24: "192.88.99.0", "192.88.99.255";
        v4_private_192_168_16: "192.168.0.0", "192.168.255.255";
        v4_as112_direct_delegation_192_175_48_24: "192.175.48.0", "192.175.48.255";
        v4_benchmarking_198_18_15: "198.18.0.0", "198.19.255.255";
        v4_documentation_198_51_100_24: "198.51.100.0", "198.51.100.255";
        v4_documentation_203_0_113_24: "203.0.113.0", "203.0.113.255";
        v4_multicast_224_4: "224.0.0.0", "239.255.255.255";
        v4_reserved_240_4: "240.0.0.0", "254.255.255.255";
        v4_limited_broadcast: "255.255.255.255";
        v6_loopback: "::1";
        v6_unspecified: "::";
        v6_ipv4_compatible_96: "::0.0.0.2", "::8.8.8.8", "::255.255.255.255";
        v6_ipv4_mapped_of_internal: "::ffff:0.0.0.0", "::ffff:127.0.0.1", "::ffff:10.0.0.1";
        v6_ipv4_translated_ffff_0_0_0_96: "::ffff:0:0.0.0.0", "::ffff:0:8.8.8.8";
        v6_nat64_of_internal_64_ff9b_96: "64:ff9b::a00:1", "64:ff9b::127.0.0.1", "64:ff9b::";
        v6_nat64_local_use_64_ff9b_1_48: "64:ff9b:1::", "64:ff9b:1::808:808",
            "64:ff9b:1:ffff:ffff:ffff:ffff:ffff";
        v6_discard_only_100_64: "100::", "100::ffff:ffff:ffff:ffff";
        v6_dummy_prefix_100_0_0_1_64: "100:0:0:1::", "100:0:0:1:ffff:ffff:ffff:ffff";
        v6_ietf_protocol_assignments_2001_23: "2001:100::", "2001:1ff:ffff::1",
            "2001:1::1", "2001:1::2", "2001:1::3", "2001:5::1";
        v6_teredo_of_internal_2001_32: "2001:0:7f00:1::", "2001:0:808:808::f5ff:fffe",
            "2001:0:808:808:0:0:f5ff:fffe";
        v6_benchmarking_2001_2_48: "2001:2::", "2001:2:0:ffff:ffff:ffff:ffff:ffff";
        v6_amt_2001_3_32: "2001:3::", "2001:3:ffff:ffff:ffff:ffff:ffff:ffff";
        v6_as112_2001_4_112_48: "2001:4:112::", "2001:4:112:ffff:ffff:ffff:ffff:ffff";
        v6_orchid_2001_10_28: "2001:10::", "2001:1f:ffff:ffff:ffff:ffff:ffff:ffff";
        v6_orchid_v2_2001_20_28: "2001:20::", "2001:2f:ffff:ffff:ffff:ffff:ffff:ffff";
        v6_drone_remote_id_2001_30_28: "2001:30::", "2001:3f:ffff:ffff:ffff:ffff:ffff:ffff";
        v6_documentation_2001_db8_32: "2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff";
        v6_6to4_of_internal_2002_16: "2002:a00:1::", "2002:7f00:1::1", "2002:c0a8:101::",
            "2002:c058:6301::";
        v6_as112_direct_delegation_2620_4f_8000_48: "2620:4f:8000::",
            "2620:4f:8000:ffff:ffff:ffff:ffff:ffff";
        v6_documentation_3fff_20: "3fff::", "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff";
        v6_segment_routing_5f00_16: "5f00::", "5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        v6_unique_local_fc00_7: "fc00::", "fd12:3456::1", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        v6_link_local_fe80_10: "fe80::", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        v6_site_local_fec0_10: "fec0::", "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        v6_multicast_ff00_8: "ff00::", "ff02::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        v6_outside_global_unicast_2000_3: "4000::1", "1::1", "e000::1";
    }

    #[test]
    fn public_addresses_pass_including_next_to_each_block() {
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "1.0.0.0",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.1",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.1",
            "191.255.255.255",
            "192.0.1.0",
            "192.0.3.0",
            "192.31.195.255",
            "192.31.197.0",
            "192.52.192.255",
            "192.88.98.255",
            "192.88.100.0",
            "192.167.255.255",
            "192.169.0.0",
            "192.175.47.255",
            "192.175.49.0",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.99.255",
            "198.51.101.0",
            "203.0.112.255",
            "203.0.114.0",
            "223.255.255.255",
            "2606:4700::1111",
            "2a00:1450:4001::1",
            "2001:200::1",
            "2001:db7:ffff::1",
            "2001:db9::1",
            "2620:4f:7fff::1",
            "2620:4f:8001::1",
            "3ffe:ffff::1",
            "3fff:1000::1",
            "2003::1",
        ] {
            assert!(!refused(s), "{s} should pass");
        }
    }

    /// The IPv4 address an IPv6 address carries decides, so a public one passes.
    #[test]
    fn carried_public_ipv4_addresses_pass() {
        for s in [
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
            // Teredo: server 65.54.227.120, client 8.8.8.8 (the last 32 bits, inverted).
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
        ] {
            assert!(!refused(s), "{s} should pass");
        }
    }

    #[test]
    fn teredo_is_judged_by_its_server_and_its_inverted_client() {
        // Client 10.0.0.1 inverted is f5ff:fffe; server public.
        assert!(refused("2001:0:4136:e378:8000:63bf:f5ff:fffe"));
        // Client public (8.8.8.8 inverted is f7f7:f7f7), server 10.0.0.1.
        assert!(refused("2001:0:a00:1:8000:63bf:f7f7:f7f7"));
        // As written the last 32 bits are 8.8.8.8, but the client is their inverse,
        // 247.247.247.247, which is reserved.
        assert!(refused("2001:0:4136:e378:8000:63bf:808:808"));
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
    fn the_allowlist_wins_for_special_blocks_and_carried_addresses() {
        let policy = DestinationPolicy {
            allow: vec![
                "10.0.0.0/8".parse().unwrap(),
                "64:ff9b:1::/48".parse().unwrap(),
                "2002:c0a8::/32".parse().unwrap(),
            ],
            allow_http: false,
        };
        for s in [
            "::ffff:10.1.2.3",
            "64:ff9b::10.1.2.3",
            "2002:a01:203::1",
            "64:ff9b:1::a01:203",
            "2002:c0a8:101::1",
        ] {
            assert!(policy.ip_allowed(ip(s)), "{s} should be allowed");
        }
        for s in ["::ffff:192.168.1.1", "64:ff9b::127.0.0.1", "2002:ac10:1::1"] {
            assert!(!policy.ip_allowed(ip(s)), "{s} should be refused");
        }
    }

    #[test]
    fn urls_are_checked_without_resolving() {
        let strict = strict();
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
            Err(Blocked::Address(ip("127.0.0.1"), "loopback"))
        );
        assert_eq!(
            strict.check_url(&url("https://[::1]/")),
            Err(Blocked::Address(ip("::1"), "loopback"))
        );
        assert!(strict.check_url(&url("https://[2002:a00:1::]/")).is_err());
        assert!(strict.check_url(&url("https://[64:ff9b:1::1]/")).is_err());
        assert!(strict.check_url(&url("https://localhost/")).is_err());
        let open = DestinationPolicy {
            allow: vec!["127.0.0.0/8".parse().unwrap()],
            allow_http: true,
        };
        assert!(open.check_url(&url("http://127.0.0.1:9/")).is_ok());
        assert!(open.check_url(&url("http://[::ffff:127.0.0.1]:9/")).is_ok());
        assert!(open.check_url(&url("http://localhost:9/")).is_ok());
        assert!(open.check_url(&url("http://10.0.0.1/")).is_err());
    }
}
