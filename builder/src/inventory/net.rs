//! A small CIDR helper (IPv4 and IPv6): parse, contains, network and broadcast addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A network in CIDR notation with its host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    v6: bool,
    /// The network address as an integer (IPv4 in the low 32 bits).
    bits: u128,
    prefix: u8,
}

/// Why a CIDR string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    /// Not `ADDRESS/PREFIX`.
    Syntax,
    /// Prefix longer than 32 (IPv4) or 128 (IPv6).
    Prefix(u8),
    /// Host bits set; carries the network it probably means.
    HostBits(Cidr),
}

pub fn ip_bits(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(a) => (false, u32::from(a) as u128),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

fn width(v6: bool) -> u8 {
    if v6 {
        128
    } else {
        32
    }
}

/// The network bits of `bits` for a prefix of `prefix` bits.
pub fn mask(v6: bool, bits: u128, prefix: u8) -> u128 {
    let w = width(v6);
    let prefix = prefix.min(w);
    if prefix == 0 {
        return 0;
    }
    let all = if v6 { u128::MAX } else { u32::MAX as u128 };
    let m = (all << (w - prefix)) & all;
    bits & m
}

fn to_ip(v6: bool, bits: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(bits))
    } else {
        IpAddr::V4(Ipv4Addr::from(bits as u32))
    }
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, CidrError> {
        let (addr, prefix) = s.split_once('/').ok_or(CidrError::Syntax)?;
        let ip: IpAddr = addr.parse().map_err(|_| CidrError::Syntax)?;
        if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CidrError::Syntax);
        }
        if prefix.len() > 1 && prefix.starts_with('0') {
            return Err(CidrError::Syntax);
        }
        let prefix: u16 = prefix.parse().map_err(|_| CidrError::Syntax)?;
        let (v6, bits) = ip_bits(ip);
        if prefix > width(v6) as u16 {
            return Err(CidrError::Prefix(prefix.min(255) as u8));
        }
        let prefix = prefix as u8;
        let net = mask(v6, bits, prefix);
        let cidr = Cidr {
            v6,
            bits: net,
            prefix,
        };
        if net != bits {
            return Err(CidrError::HostBits(cidr));
        }
        Ok(cidr)
    }

    pub fn is_v6(&self) -> bool {
        self.v6
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn bits(&self) -> u128 {
        self.bits
    }

    pub fn network(&self) -> IpAddr {
        to_ip(self.v6, self.bits)
    }

    /// The IPv4 broadcast address (none for IPv6 and for /31 and /32).
    pub fn broadcast(&self) -> Option<IpAddr> {
        if self.v6 || self.prefix > 30 {
            return None;
        }
        let host = (u32::MAX as u128) >> self.prefix;
        Some(to_ip(false, self.bits | host))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (v6, bits) = ip_bits(ip);
        v6 == self.v6 && mask(v6, bits, self.prefix) == self.bits
    }

    /// Whether `ip` (inside this network) is one a host must not use: "the network address"
    /// (IPv4 up to /30, IPv6 up to /126: the subnet-router anycast address) or "the broadcast
    /// address".
    pub fn reserved(&self, ip: IpAddr) -> Option<&'static str> {
        let (_, bits) = ip_bits(ip);
        let max_prefix = if self.v6 { 126 } else { 30 };
        if self.prefix <= max_prefix && bits == self.bits && self.contains(ip) {
            return Some("the network address");
        }
        if self.broadcast() == Some(ip) {
            return Some("the broadcast address");
        }
        None
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

/// An address a node or VIP cannot have whatever its network: what kind it is.
pub fn unusable(ip: IpAddr) -> Option<&'static str> {
    if ip.is_unspecified() {
        Some("the unspecified address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
        Some("the limited broadcast address")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v4() {
        let c = Cidr::parse("192.168.3.0/24").unwrap();
        assert_eq!(c.to_string(), "192.168.3.0/24");
        assert!(c.contains(ip("192.168.3.241")));
        assert!(!c.contains(ip("192.168.4.1")));
        assert!(!c.contains(ip("::1")));
        assert_eq!(c.broadcast(), Some(ip("192.168.3.255")));
        assert_eq!(c.reserved(ip("192.168.3.0")), Some("the network address"));
        assert_eq!(
            c.reserved(ip("192.168.3.255")),
            Some("the broadcast address")
        );
        assert_eq!(c.reserved(ip("192.168.3.1")), None);
        assert_eq!(Cidr::parse("192.168.3.5/24"), Err(CidrError::HostBits(c)));
        assert_eq!(Cidr::parse("10.0.0.0/33"), Err(CidrError::Prefix(33)));
        assert_eq!(Cidr::parse("10.0.0.0"), Err(CidrError::Syntax));
        assert_eq!(Cidr::parse("10.0.0.0/"), Err(CidrError::Syntax));
        assert_eq!(Cidr::parse("10.0.0.0/+8"), Err(CidrError::Syntax));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        let p2p = Cidr::parse("10.0.0.0/31").unwrap();
        assert_eq!(p2p.reserved(ip("10.0.0.0")), None);
        assert_eq!(p2p.reserved(ip("10.0.0.1")), None);
        let host = Cidr::parse("10.0.0.7/32").unwrap();
        assert!(host.contains(ip("10.0.0.7")));
    }

    #[test]
    fn v6() {
        let c = Cidr::parse("2001:db8::/64").unwrap();
        assert!(c.contains(ip("2001:db8::5")));
        assert!(!c.contains(ip("2001:db8:1::5")));
        assert!(!c.contains(ip("10.0.0.1")));
        assert_eq!(c.broadcast(), None);
        assert_eq!(c.reserved(ip("2001:db8::")), Some("the network address"));
        assert!(matches!(
            Cidr::parse("2001:db8::1/64"),
            Err(CidrError::HostBits(_))
        ));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("2001:db8::1")));
    }
}
