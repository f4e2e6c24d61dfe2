//! The client's address, as login throttling and the audit trail see it: the TCP peer, or, when
//! the peer is a trusted proxy (`auth.trusted_proxies`), the right-most `X-Forwarded-For` entry
//! that is not itself a trusted proxy. From any other peer the header is ignored: a client must
//! not choose the address its failed logins count against.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

/// `auth.trusted_proxies`: addresses (`10.0.0.5`) and networks (`10.0.0.0/8`) of the reverse
/// proxies in front of maas. Written as a list, or as one comma-separated string (handy in
/// `MAAS__AUTH__TRUSTED_PROXIES`). Empty by default: `X-Forwarded-For` is never read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parse each entry; the error names the one that is neither an address nor a network.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        entries
            .into_iter()
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .map(|net| net.trunc())
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!(
                            "'{entry}' is not an IP address or a network such as 10.0.0.0/8 or fd00::/8"
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|net| net.contains(&address))
    }

    /// The client behind a request from `peer` that carried these `X-Forwarded-For` values (in
    /// the order the headers came). Walking from the right, each entry was written by the hop
    /// after it; the first one not written about a trusted proxy is the client. An entry that is
    /// not an address ends the walk at the hop that wrote it.
    pub fn client<'a>(
        &self,
        peer: Option<IpAddr>,
        forwarded_for: impl IntoIterator<Item = &'a str>,
    ) -> Option<IpAddr> {
        let mut client = peer?.to_canonical();
        if !self.contains(client) {
            return Some(client);
        }
        let entries: Vec<&str> = forwarded_for
            .into_iter()
            .flat_map(|value| value.split(','))
            .collect();
        for entry in entries.into_iter().rev() {
            match parse_entry(entry) {
                Some(address) => {
                    client = address;
                    if !self.contains(address) {
                        break;
                    }
                }
                None => break,
            }
        }
        Some(client)
    }
}

/// `192.0.2.1`, `2001:db8::1`, `[2001:db8::1]`, with or without a port.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .or_else(|_| {
            entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .unwrap_or(entry)
                .parse::<IpAddr>()
        })
        .ok()
        .map(|a| a.to_canonical())
}

impl Serialize for TrustedProxies {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for net in &self.0 {
            // A single address is written as itself, not as a /32 or /128 network.
            if net.prefix_len() == net.max_prefix_len() {
                seq.serialize_element(&net.addr().to_string())?;
            } else {
                seq.serialize_element(&net.to_string())?;
            }
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for TrustedProxies {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = TrustedProxies;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of IP addresses and networks, or one comma-separated string")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<TrustedProxies, E> {
                TrustedProxies::parse(text.split(',')).map_err(E::custom)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TrustedProxies, A::Error> {
                let mut entries: Vec<String> = Vec::new();
                while let Some(entry) = seq.next_element::<String>()? {
                    entries.push(entry);
                }
                TrustedProxies::parse(entries.iter().map(String::as_str)).map_err(de::Error::custom)
            }
        }
        deserializer.deserialize_any(Entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_peer() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client(ip("192.0.2.7"), ["203.0.113.9"]),
            ip("192.0.2.7")
        );

        let proxies = TrustedProxies::parse(["10.0.0.0/8", "192.0.2.1"]).unwrap();
        // An untrusted peer's header is ignored.
        assert_eq!(
            proxies.client(ip("192.0.2.7"), ["203.0.113.9"]),
            ip("192.0.2.7")
        );
        // A trusted peer: the right-most entry that is not a proxy; spoofed entries to its left
        // are never reached.
        assert_eq!(
            proxies.client(ip("192.0.2.1"), ["1.1.1.1, 203.0.113.9, 10.1.2.3"]),
            ip("203.0.113.9")
        );
        assert_eq!(
            proxies.client(ip("192.0.2.1"), ["1.1.1.1", "203.0.113.9"]),
            ip("203.0.113.9"),
            "several headers read as one list"
        );
        // No header, or only proxies in it: the left-most proxy is as far as we can see.
        assert_eq!(proxies.client(ip("192.0.2.1"), []), ip("192.0.2.1"));
        assert_eq!(
            proxies.client(ip("192.0.2.1"), ["10.0.0.9"]),
            ip("10.0.0.9")
        );
        // Garbage ends the walk at the hop that wrote it.
        assert_eq!(
            proxies.client(ip("192.0.2.1"), ["203.0.113.9, unknown"]),
            ip("192.0.2.1")
        );
        // Ports, brackets and IPv4-mapped IPv6 addresses.
        assert_eq!(
            proxies.client(ip("192.0.2.1"), ["[2001:db8::5]:443"]),
            ip("2001:db8::5")
        );
        assert_eq!(
            proxies.client(ip("192.0.2.1"), ["203.0.113.9:1234"]),
            ip("203.0.113.9")
        );
        assert_eq!(
            proxies.client(ip("::ffff:192.0.2.1"), ["203.0.113.9"]),
            ip("203.0.113.9")
        );
        assert_eq!(proxies.client(None, ["203.0.113.9"]), None);
    }

    #[test]
    fn settings_take_a_list_or_one_string_and_name_a_bad_entry() {
        let from_list: TrustedProxies =
            serde_json::from_str(r#"["127.0.0.1", "10.0.0.0/8", "fd00::/8"]"#).unwrap();
        let from_string: TrustedProxies =
            serde_json::from_str(r#""127.0.0.1, 10.0.0.0/8,fd00::/8""#).unwrap();
        assert_eq!(from_list, from_string);
        assert_eq!(
            serde_json::to_value(&from_list).unwrap(),
            serde_json::json!(["127.0.0.1", "10.0.0.0/8", "fd00::/8"])
        );
        let err = serde_json::from_str::<TrustedProxies>(r#"["10.0.0.0/8", "proxy.local"]"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("'proxy.local' is not an IP address"), "{err}");
        assert!(serde_json::from_str::<TrustedProxies>(r#""""#)
            .unwrap()
            .is_empty());
    }
}
