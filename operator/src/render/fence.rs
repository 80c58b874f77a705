//! The address fence for URLs that tenants give (Helm repositories): the operator never reaches an
//! internal address for them. Loopback, private (RFC 1918, unique local), carrier-grade NAT,
//! link-local, unspecified, multicast and reserved addresses are refused, and so are the hub's own
//! Service and Pod ranges and its nodes' addresses, unless a platform admin allow-lists them
//! (`EMCO_REPOSITORY_ADDRESSES`). Link-local (cloud metadata) stays refused even then. Every
//! refusal reads the same, so it tells a tenant nothing about what listens there.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipnet::IpNet;

/// The one reason given for every refused address.
pub const REFUSED: &str = "the repository's address is not one the operator may reach for tenants \
     (loopback, private, link-local and the hub's own addresses are refused unless a platform admin allow-lists them)";

/// How long the hub's node addresses are trusted before they are listed again.
const NODES_TTL: Duration = Duration::from_secs(60);

/// Where the operator may go for tenants.
#[derive(Default)]
pub struct Fence {
    /// Host names a URL may name; empty: any (`EMCO_REPOSITORY_HOSTS`).
    pub hosts: Vec<String>,
    /// Internal ranges allowed all the same (`EMCO_REPOSITORY_ADDRESSES`).
    pub allowed: Vec<IpNet>,
    /// The hub's Service and Pod ranges (`EMCO_HUB_CIDRS`).
    pub hub_ranges: Vec<IpNet>,
    /// The hub's node addresses, when listed.
    pub(crate) nodes: Mutex<Option<(Instant, Vec<IpAddr>)>>,
}

impl Fence {
    /// The fence the operator's environment describes.
    pub fn from_env() -> Result<Fence, String> {
        let list = |var: &str| std::env::var(var).unwrap_or_default();
        Ok(Fence {
            hosts: list("EMCO_REPOSITORY_HOSTS")
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            allowed: ranges(&list("EMCO_REPOSITORY_ADDRESSES"))?,
            hub_ranges: ranges(&list("EMCO_HUB_CIDRS"))?,
            nodes: Mutex::new(None),
        })
    }

    /// Whether the operator may connect to `ip` for a tenant.
    pub fn admits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if link_local(ip) {
            return false;
        }
        if self.allowed.iter().any(|n| n.contains(&ip)) {
            return true;
        }
        let node = self.nodes.lock().unwrap().as_ref().is_some_and(|(_, nodes)| nodes.contains(&ip));
        !(internal(ip) || node || self.hub_ranges.iter().any(|n| n.contains(&ip)))
    }

    /// Lists the hub's node addresses again when the last list is older than a minute. Without
    /// the right to list nodes the fence goes on with the other rules.
    pub async fn refresh_nodes(&self, hub: &kube::Client) {
        let fresh = self.nodes.lock().unwrap().as_ref().is_some_and(|(at, _)| at.elapsed() < NODES_TTL);
        if fresh {
            return;
        }
        let api = kube::Api::<k8s_openapi::api::core::v1::Node>::all(hub.clone());
        let addresses = match api.list(&Default::default()).await {
            Ok(list) => list
                .items
                .iter()
                .flat_map(|n| n.status.iter().flat_map(|s| s.addresses.iter().flatten()))
                .filter_map(|a| a.address.parse::<IpAddr>().ok())
                .map(canonical)
                .collect(),
            Err(e) => {
                tracing::debug!(error = %e, "cannot list the hub's nodes for the address fence");
                Vec::new()
            }
        };
        *self.nodes.lock().unwrap() = Some((Instant::now(), addresses));
    }
}

/// Comma-separated addresses or CIDRs.
fn ranges(text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<IpNet>()
                .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{t} is neither an address nor a CIDR"))
        })
        .collect()
}

/// An IPv4 address hidden in an IPv6 one (mapped, NAT64) as itself.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match (v6.to_ipv4_mapped(), v6.segments()) {
            (Some(v4), _) => IpAddr::V4(v4),
            (None, [0x64, 0xff9b, 0, 0, 0, 0, hi, lo]) => {
                IpAddr::V4(std::net::Ipv4Addr::from(((hi as u32) << 16) | lo as u32))
            }
            _ => ip,
        },
        v4 => v4,
    }
}

/// Link-local addresses and the well-known metadata services: never reached.
fn link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local() || v4.octets() == [100, 100, 100, 200],
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Addresses that are not on the public internet.
fn internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || (a == 198 && (18..20).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfec0
                || first == 0x2002
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fence(allowed: &str, hub: &str) -> Fence {
        Fence { allowed: ranges(allowed).unwrap(), hub_ranges: ranges(hub).unwrap(), ..Default::default() }
    }

    #[test]
    fn internal_addresses_are_refused_public_ones_admitted() {
        let f = fence("", "");
        for refused in [
            "127.0.0.1",
            "127.3.2.1",
            "10.0.0.1",
            "172.16.5.4",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "64:ff9b::a00:1",
        ] {
            assert!(!f.admits(refused.parse().unwrap()), "{refused}");
        }
        for admitted in ["93.184.216.34", "1.1.1.1", "172.32.0.1", "2606:4700::1111"] {
            assert!(f.admits(admitted.parse().unwrap()), "{admitted}");
        }
    }

    #[test]
    fn the_hub_ranges_and_nodes_are_refused() {
        // Public-looking ranges a hub might use for Services and Pods.
        let f = fence("", "203.0.113.0/24, 2001:db8::/32");
        assert!(!f.admits("203.0.113.10".parse().unwrap()));
        assert!(!f.admits("2001:db8::1".parse().unwrap()));
        *f.nodes.lock().unwrap() = Some((Instant::now(), vec!["198.51.100.7".parse().unwrap()]));
        assert!(!f.admits("198.51.100.7".parse().unwrap()));
        assert!(f.admits("198.51.100.8".parse().unwrap()));
    }

    #[test]
    fn the_allow_list_opens_internal_ranges_but_never_link_local() {
        let f = fence("127.0.0.1, 10.1.0.0/16, 169.254.0.0/16", "");
        assert!(f.admits("127.0.0.1".parse().unwrap()));
        assert!(f.admits("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!f.admits("127.0.0.2".parse().unwrap()));
        assert!(f.admits("10.1.2.3".parse().unwrap()));
        assert!(!f.admits("10.2.0.1".parse().unwrap()));
        assert!(!f.admits("169.254.169.254".parse().unwrap()));
        assert!(ranges("nonsense").is_err());
    }
}
