//! Safe targets: a webhook URL is `https` unless the operator allows `http`, and the addresses its
//! host resolves to are checked at every delivery (a name that resolved to a public address
//! yesterday may resolve to the metadata service today). Loopback, link-local, private and cloud
//! metadata addresses are refused unless `webhooks.allow_addresses` names their class; addresses
//! that are never a web server (unspecified, multicast, broadcast, documentation, reserved) are
//! always refused. The delivery then connects to exactly the addresses checked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

/// A class of addresses that is refused unless allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressClass {
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `10/8`, `172.16/12`, `192.168/16`, `100.64/10` (carrier-grade NAT), `fc00::/7`.
    Private,
    /// `169.254/16`, `fe80::/10` (the metadata addresses excepted).
    LinkLocal,
    /// Cloud metadata services: `169.254.169.254`, `100.100.100.200` (Alibaba Cloud),
    /// `fd00:ec2::254`.
    Metadata,
}

impl AddressClass {
    /// The name in the configuration and in errors.
    pub fn name(self) -> &'static str {
        match self {
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::LinkLocal => "link_local",
            AddressClass::Metadata => "metadata",
        }
    }
}

/// What an address is, for the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A public address: always allowed.
    Public,
    /// Refused unless its class is allowed.
    Guarded(AddressClass),
    /// Never a web server: always refused.
    Reserved,
}

/// Classifies an address (IPv4 in IPv6, mapped or NAT64, as the IPv4 address).
pub fn classify(ip: IpAddr) -> Class {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return classify_v4(v4);
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) reaches the embedded IPv4 address.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return classify_v4(Ipv4Addr::new(a, b, c, d));
            }
            if v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                Class::Guarded(AddressClass::Metadata)
            } else if v6.is_loopback() {
                Class::Guarded(AddressClass::Loopback)
            } else if v6.is_unspecified() || v6.is_multicast() || (s[0] == 0x2001 && s[1] == 0xdb8)
            {
                Class::Reserved
            } else if (s[0] & 0xfe00) == 0xfc00 {
                Class::Guarded(AddressClass::Private)
            } else if (s[0] & 0xffc0) == 0xfe80 {
                Class::Guarded(AddressClass::LinkLocal)
            } else {
                Class::Public
            }
        }
    }
}

fn classify_v4(ip: Ipv4Addr) -> Class {
    let [a, b, ..] = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) {
        Class::Guarded(AddressClass::Metadata)
    } else if ip.is_loopback() {
        Class::Guarded(AddressClass::Loopback)
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        Class::Guarded(AddressClass::Private)
    } else if ip.is_link_local() {
        Class::Guarded(AddressClass::LinkLocal)
    } else if a == 0
        || a >= 224
        || ip.is_documentation()
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || (a == 198 && (18..20).contains(&b))
    {
        Class::Reserved
    } else {
        Class::Public
    }
}

/// Why a target is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The URL is not acceptable.
    #[error("{0}")]
    Url(String),
    /// The host did not resolve (in time).
    #[error("cannot resolve the host: {0}")]
    Resolve(String),
    /// An address the host resolves to is refused.
    #[error("refused address {ip}: {why}")]
    Refused {
        /// The address.
        ip: IpAddr,
        /// Its class, and how to allow it when it can be.
        why: String,
    },
}

/// Checks a webhook URL's form (at start-up and at each delivery): absolute, `https` (or `http`
/// when allowed), a host, no credentials, no fragment.
pub fn check_url(url: &str, allow_http: bool) -> Result<Url, TargetError> {
    let parsed = Url::parse(url).map_err(|e| TargetError::Url(format!("not a URL: {e}")))?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => {
            return Err(TargetError::Url(
                "http is refused: use https (or allow it with webhooks.allow_http)".into(),
            ));
        }
        other => return Err(TargetError::Url(format!("scheme {other:?} is not http(s)"))),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(TargetError::Url("the URL has no host".into()));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(TargetError::Url(
            "credentials in the URL are refused: the signature authenticates the sender".into(),
        ));
    }
    if parsed.fragment().is_some() {
        return Err(TargetError::Url("a fragment is not sent: remove it".into()));
    }
    Ok(parsed)
}

/// Checks one address against the allowed classes.
pub fn check_address(ip: IpAddr, allow: &[AddressClass]) -> Result<(), TargetError> {
    match classify(ip) {
        Class::Public => Ok(()),
        Class::Guarded(class) if allow.contains(&class) => Ok(()),
        Class::Guarded(class) => Err(TargetError::Refused {
            ip,
            why: format!(
                "a {} address (allow it with webhooks.allow_addresses = [\"{}\"])",
                class.name(),
                class.name()
            ),
        }),
        Class::Reserved => Err(TargetError::Refused {
            ip,
            why: "a reserved address (never a web server)".into(),
        }),
    }
}

/// Resolves the URL's host within `timeout` and checks every address it resolves to: the
/// addresses the delivery may connect to.
pub async fn resolve(
    url: &Url,
    allow: &[AddressClass],
    timeout: Duration,
) -> Result<Vec<SocketAddr>, TargetError> {
    let port = url
        .port_or_known_default()
        .ok_or_else(|| TargetError::Url("the URL has no port".into()))?;
    let host = url
        .host_str()
        .ok_or_else(|| TargetError::Url("the URL has no host".into()))?;
    // An IPv6 literal is written in brackets.
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match literal.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::time::timeout(timeout, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| TargetError::Resolve(format!("no answer within {timeout:?}")))?
            .map_err(|e| TargetError::Resolve(e.kind().to_string()))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(TargetError::Resolve("no address".into()));
    }
    // Every address: the connection may go to any of them.
    for addr in &addrs {
        check_address(addr.ip(), allow)?;
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(ip: &str) -> Class {
        classify(ip.parse().unwrap())
    }

    #[test]
    fn addresses_are_classified() {
        use AddressClass::*;
        assert_eq!(class("127.0.0.1"), Class::Guarded(Loopback));
        assert_eq!(class("127.8.9.1"), Class::Guarded(Loopback));
        assert_eq!(class("::1"), Class::Guarded(Loopback));
        assert_eq!(class("::ffff:127.0.0.1"), Class::Guarded(Loopback));
        assert_eq!(class("10.1.2.3"), Class::Guarded(Private));
        assert_eq!(class("172.16.0.1"), Class::Guarded(Private));
        assert_eq!(class("172.31.255.255"), Class::Guarded(Private));
        assert_eq!(class("192.168.1.1"), Class::Guarded(Private));
        assert_eq!(class("100.64.0.1"), Class::Guarded(Private));
        assert_eq!(class("fd12::1"), Class::Guarded(Private));
        assert_eq!(class("::ffff:10.0.0.1"), Class::Guarded(Private));
        assert_eq!(class("64:ff9b::a00:1"), Class::Guarded(Private));
        assert_eq!(class("169.254.1.1"), Class::Guarded(LinkLocal));
        assert_eq!(class("fe80::1"), Class::Guarded(LinkLocal));
        assert_eq!(class("169.254.169.254"), Class::Guarded(Metadata));
        assert_eq!(class("100.100.100.200"), Class::Guarded(Metadata));
        assert_eq!(class("fd00:ec2::254"), Class::Guarded(Metadata));
        assert_eq!(class("0.0.0.0"), Class::Reserved);
        assert_eq!(class("::"), Class::Reserved);
        assert_eq!(class("224.0.0.1"), Class::Reserved);
        assert_eq!(class("255.255.255.255"), Class::Reserved);
        assert_eq!(class("192.0.2.1"), Class::Reserved);
        assert_eq!(class("2001:db8::1"), Class::Reserved);
        assert_eq!(class("93.184.216.34"), Class::Public);
        assert_eq!(class("172.32.0.1"), Class::Public);
        assert_eq!(class("2606:4700::1111"), Class::Public);
    }

    #[test]
    fn only_the_allowed_classes_pass() {
        let private: IpAddr = "10.0.0.5".parse().unwrap();
        assert!(check_address(private, &[]).is_err());
        assert!(check_address(private, &[AddressClass::Loopback]).is_err());
        assert!(check_address(private, &[AddressClass::Private]).is_ok());
        // Allowing private addresses does not allow the metadata service.
        let metadata: IpAddr = "169.254.169.254".parse().unwrap();
        assert!(
            check_address(metadata, &[AddressClass::LinkLocal, AddressClass::Private]).is_err()
        );
        let reserved: IpAddr = "0.0.0.0".parse().unwrap();
        assert!(
            check_address(
                reserved,
                &[
                    AddressClass::Loopback,
                    AddressClass::Private,
                    AddressClass::LinkLocal,
                    AddressClass::Metadata
                ]
            )
            .is_err()
        );
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("https://hooks.example.com/phonecheck", false).is_ok());
        assert!(check_url("http://hooks.example.com/", false).is_err());
        assert!(check_url("http://hooks.example.com/", true).is_ok());
        assert!(check_url("ftp://hooks.example.com/", true).is_err());
        assert!(check_url("https://user:pw@hooks.example.com/", false).is_err());
        assert!(check_url("https://hooks.example.com/#x", false).is_err());
        assert!(check_url("hooks.example.com", false).is_err());
    }

    #[tokio::test]
    async fn a_literal_address_is_checked_without_resolving() {
        let url = check_url("http://127.0.0.1:9/", true).unwrap();
        let refused = resolve(&url, &[], Duration::from_secs(1)).await;
        assert!(
            matches!(refused, Err(TargetError::Refused { .. })),
            "{refused:?}"
        );
        let allowed = resolve(&url, &[AddressClass::Loopback], Duration::from_secs(1)).await;
        assert_eq!(allowed.unwrap(), ["127.0.0.1:9".parse().unwrap()]);
        // `localhost` resolves (from /etc/hosts) to loopback addresses: refused by default.
        let url = check_url("http://localhost:9/", true).unwrap();
        assert!(resolve(&url, &[], Duration::from_secs(5)).await.is_err());
    }
}
