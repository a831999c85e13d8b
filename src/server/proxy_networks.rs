//! The networks whose connections are trusted to begin with a PROXY protocol header.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

/// One network in CIDR notation: `10.0.0.0/8`, `2001:db8::/32`, or a single address
/// (`127.0.0.5`, a /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpNetwork {
    addr: IpAddr,
    prefix: u8,
}

/// A network that does not parse, in PostgreSQL's words for pg_hba.conf addresses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    /// The address part is not an IPv4 or IPv6 address.
    #[error("invalid IP address \"{value}\"")]
    InvalidAddress {
        /// The text given.
        value: String,
    },
    /// The mask length is not a number from 0 to 32 (IPv4) or 128 (IPv6).
    #[error("invalid CIDR mask in address \"{value}\"")]
    InvalidMask {
        /// The text given.
        value: String,
    },
    /// Bits are set in the address beyond the mask (`10.1.0.0/8`): almost always a typo.
    #[error("invalid IP mask \"{value}\": the address has bits set beyond the mask")]
    HostBitsSet {
        /// The text given.
        value: String,
    },
}

impl IpNetwork {
    /// The network `addr/prefix`. `None` if the prefix is longer than the address or bits of
    /// `addr` beyond the prefix are set.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let net = IpNetwork { addr, prefix };
        (prefix <= max_prefix(addr) && net.mask(addr) == bits(addr)).then_some(net)
    }

    /// The network's address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The mask length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in the network. An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`, what a
    /// dual-stack listener reports) is matched as the IPv4 address it maps.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        ip.is_ipv4() == self.addr.is_ipv4() && self.mask(ip) == bits(self.addr)
    }

    /// The bits of `ip` under this network's mask, widened to 128 bits.
    fn mask(&self, ip: IpAddr) -> u128 {
        let width = max_prefix(ip);
        let host_bits = u32::from(width - self.prefix.min(width));
        let mask = if host_bits >= 128 {
            0
        } else {
            !0u128 << host_bits
        };
        bits(ip) & mask
    }
}

fn max_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl FromStr for IpNetwork {
    type Err = NetworkError;

    fn from_str(s: &str) -> Result<Self, NetworkError> {
        let value = || s.to_owned();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| NetworkError::InvalidAddress { value: value() })?;
        let prefix = match prefix {
            None => max_prefix(addr),
            Some(p) => {
                // Decimal digits only: no sign, no spaces, no leading zeros beyond "0".
                let ok = !p.is_empty()
                    && p.len() <= 3
                    && p.bytes().all(|b| b.is_ascii_digit())
                    && (p == "0" || !p.starts_with('0'));
                match p.parse::<u8>() {
                    Ok(n) if ok && n <= max_prefix(addr) => n,
                    _ => return Err(NetworkError::InvalidMask { value: value() }),
                }
            }
        };
        IpNetwork::new(addr, prefix).ok_or(NetworkError::HostBitsSet { value: value() })
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The networks a PROXY protocol header is accepted from (the load balancers). Cheap to clone
/// (shared). Empty: the PROXY protocol is off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyNetworks {
    nets: Arc<[IpNetwork]>,
}

impl ProxyNetworks {
    /// No network: the PROXY protocol is off.
    pub fn none() -> Self {
        ProxyNetworks::default()
    }

    /// These networks.
    pub fn new(nets: impl IntoIterator<Item = IpNetwork>) -> Self {
        ProxyNetworks {
            nets: nets.into_iter().collect(),
        }
    }

    /// Parses a comma-separated list (`10.0.0.0/8, 192.168.1.5`); spaces around items are
    /// ignored; an empty string is no network.
    pub fn parse_list(list: &str) -> Result<Self, NetworkError> {
        let nets = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<IpNetwork>, _>>()?;
        Ok(ProxyNetworks::new(nets))
    }

    /// Whether the list is empty (the PROXY protocol is off).
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is in one of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }

    /// The networks.
    pub fn iter(&self) -> impl Iterator<Item = &IpNetwork> {
        self.nets.iter()
    }
}

impl fmt::Display for ProxyNetworks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.nets.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn membership() {
        let n = net("10.0.0.0/8");
        assert!(n.contains("10.255.1.2".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!n.contains("::1".parse().unwrap()));
        let single = net("127.0.0.5");
        assert_eq!(single.prefix(), 32);
        assert!(single.contains("127.0.0.5".parse().unwrap()));
        assert!(!single.contains("127.0.0.6".parse().unwrap()));
        let v6 = net("2001:db8::/32");
        assert!(v6.contains("2001:db8:1::7".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert!(net("0.0.0.0/0").contains("1.2.3.4".parse().unwrap()));
        assert!(!net("0.0.0.0/0").contains("::2".parse().unwrap()));
        assert!(net("::/0").contains("::2".parse().unwrap()));
    }

    #[test]
    fn refused_texts() {
        let err = |s: &str| s.parse::<IpNetwork>().unwrap_err().to_string();
        assert_eq!(err("10.0.0/8"), "invalid IP address \"10.0.0/8\"");
        assert_eq!(
            err("10.0.0.0/33"),
            "invalid CIDR mask in address \"10.0.0.0/33\""
        );
        assert_eq!(
            err("10.0.0.0/08"),
            "invalid CIDR mask in address \"10.0.0.0/08\""
        );
        assert_eq!(
            err("10.0.0.0/+8"),
            "invalid CIDR mask in address \"10.0.0.0/+8\""
        );
        assert_eq!(
            err("10.0.0.0/"),
            "invalid CIDR mask in address \"10.0.0.0/\""
        );
        assert_eq!(
            err("10.1.0.0/8"),
            "invalid IP mask \"10.1.0.0/8\": the address has bits set beyond the mask"
        );
        assert!(err("::1/129").starts_with("invalid CIDR mask"));
    }

    #[test]
    fn lists() {
        let l = ProxyNetworks::parse_list(" 10.0.0.0/8, 127.0.0.5 ,::1").unwrap();
        assert_eq!(l.to_string(), "10.0.0.0/8,127.0.0.5/32,::1/128");
        assert!(l.contains("127.0.0.5".parse().unwrap()));
        assert!(ProxyNetworks::parse_list("").unwrap().is_empty());
        assert!(ProxyNetworks::parse_list("10.0.0.0/8,bad").is_err());
    }
}
