// SPDX-License-Identifier: Apache-2.0
//! Address ranges (CIDR) for IPv4 and IPv6: parsing, formatting, membership, and the
//! 16-byte form the kernel's address trie uses (IPv4 mapped into ::ffff:0:0/96).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A network: the address with its host bits cleared, and the prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The range of `addr`/`prefix`; host bits of `addr` are cleared. None when the
    /// prefix is longer than the address (32 for IPv4, 128 for IPv6).
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        let max = max_prefix(addr);
        if prefix > max {
            return None;
        }
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(prefix))),
        };
        Some(Cidr { addr, prefix })
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                u32::from(a) & mask32(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                u128::from(a) & mask128(self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }

    /// The kernel trie's key: (prefix length, 16 address bytes), IPv4 as ::ffff:a.b.c.d
    /// with the prefix counted from the start of the mapped address (96 + n).
    pub fn trie_key(&self) -> (u32, [u8; 16]) {
        match self.addr {
            IpAddr::V4(a) => (96 + self.prefix as u32, a.to_ipv6_mapped().octets()),
            IpAddr::V6(a) => (self.prefix as u32, a.octets()),
        }
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - prefix as u32).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - prefix as u32).unwrap_or(0)
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why a range did not parse, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrError(pub String);

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CidrError {}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `ADDR/PREFIX` or a bare address (one host: /32 or /128). Host bits set in ADDR
    /// are cleared (10.1.2.3/8 is 10.0.0.0/8).
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let bad = |why: &str| {
            CidrError(format!(
                "'{s}' is not an address range: {why} (expected e.g. 10.0.0.0/8, 192.168.1.7 or fd00::/64)"
            ))
        };
        let (addr_s, prefix_s) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr_s
            .parse()
            .map_err(|_| bad(&format!("'{addr_s}' is not an IPv4 or IPv6 address")))?;
        let max = max_prefix(addr);
        let prefix = match prefix_s {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && p.chars().all(|c| c.is_ascii_digit()) => n,
                _ => {
                    return Err(bad(&format!(
                        "the prefix length must be a number from 0 to {max}"
                    )))
                }
            },
        };
        Ok(Cidr::new(addr, prefix).expect("prefix checked"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_normalises() {
        assert_eq!(c("10.200.3.0/24").to_string(), "10.200.3.0/24");
        assert_eq!(c("10.200.3.7/24").to_string(), "10.200.3.0/24");
        assert_eq!(c("127.0.0.1").to_string(), "127.0.0.1/32");
        assert_eq!(c("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(c("fd00:200::5/64").to_string(), "fd00:200::/64");
        assert_eq!(c("::1").to_string(), "::1/128");
        assert_eq!(c("::/0").to_string(), "::/0");
        assert!(c("::1").contains("::1".parse().unwrap()));
    }

    #[test]
    fn rejects_bad_ranges_with_a_reason() {
        for (s, why) in [
            ("10.0.0.0/33", "0 to 32"),
            ("fd00::/129", "0 to 128"),
            ("10.0.0/8", "not an IPv4 or IPv6 address"),
            ("10.0.0.0/", "0 to 32"),
            ("10.0.0.0/-1", "0 to 32"),
            ("10.0.0.0/+8", "0 to 32"),
            ("example.com", "not an IPv4 or IPv6 address"),
            ("", "not an IPv4 or IPv6 address"),
            ("1.2.3.4/8/9", "0 to 32"),
        ] {
            let e = s.parse::<Cidr>().unwrap_err().to_string();
            assert!(e.contains(why), "{s}: {e}");
            assert!(e.contains(&format!("'{s}'")), "{s}: {e}");
        }
    }

    #[test]
    fn membership() {
        let net = c("10.200.0.0/16");
        assert!(net.contains("10.200.255.1".parse().unwrap()));
        assert!(!net.contains("10.201.0.1".parse().unwrap()));
        assert!(!net.contains("::ffff:10.200.0.1".parse().unwrap()));
        let v6 = c("fd00:200::/32");
        assert!(v6.contains("fd00:200:1::1".parse().unwrap()));
        assert!(!v6.contains("fd00:201::1".parse().unwrap()));
        assert!(c("0.0.0.0/0").contains("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn trie_keys_map_ipv4_into_ipv6() {
        let (len, key) = c("10.200.1.0/24").trie_key();
        assert_eq!(len, 120);
        assert_eq!(
            key,
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 200, 1, 0]
        );
        let (len, key) = c("fd00::/8").trie_key();
        assert_eq!(len, 8);
        assert_eq!(key[0], 0xfd);
    }
}
