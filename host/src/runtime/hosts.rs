//! Which broker hosts a connection may use: Ditto's host validation (`DefaultHostValidator`,
//! `ditto.connectivity.connection.*-hostnames`, `blocked-subnets`, `blocked-host-regex`),
//! checked when a connection is created, modified or tried.
//!
//! Nothing is blocked while `blocked_hostnames` is empty (the default, as Ditto's). Once it
//! names a host: a host in `allowed_hostnames` is taken as it is; a host matching
//! `blocked_host_regex` is refused; any other is resolved, and refused when an address is a
//! loopback, private (site-local), multicast or wildcard address, an address of a blocked
//! hostname, or in a blocked subnet (CIDR).

use crate::error::DittoError;
use crate::model::topic::comma_list;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// `[hosts]` in the configuration; each key is a comma-separated list, as Ditto's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostRules {
    /// Hosts a connection may use even when they are blocked.
    pub allowed_hostnames: String,
    /// Hosts whose addresses are blocked; while empty, every host is allowed.
    pub blocked_hostnames: String,
    /// Blocked subnets in CIDR form, e.g. `11.1.0.0/16`.
    pub blocked_subnets: String,
    /// Hosts that match this regular expression (whole) are blocked.
    pub blocked_host_regex: String,
}

/// Ditto's environment variables of these keys.
pub const ENV: [(&str, &str); 4] = [
    (
        "CONNECTIVITY_CONNECTION_ALLOWED_HOSTNAMES",
        "allowed_hostnames",
    ),
    (
        "CONNECTIVITY_CONNECTION_BLOCKED_HOSTNAMES",
        "blocked_hostnames",
    ),
    ("CONNECTIVITY_CONNECTION_BLOCKED_SUBNETS", "blocked_subnets"),
    (
        "CONNECTIVITY_CONNECTION_BLOCKED_HOST_REGEX",
        "blocked_host_regex",
    ),
];

impl HostRules {
    /// Checks the values that can be wrong on their own (subnets, the regex), naming the key.
    pub fn check_config(&self) -> Result<(), String> {
        for subnet in comma_list(&self.blocked_subnets) {
            subnet.parse::<ipnet::IpNet>().map_err(|e| {
                format!("[hosts] blocked_subnets: '{subnet}' is not a CIDR subnet: {e}")
            })?;
        }
        self.regex()
            .map(|_| ())
            .map_err(|e| format!("[hosts] blocked_host_regex is not a regular expression: {e}"))
    }

    fn regex(&self) -> Result<Option<regex::Regex>, regex::Error> {
        if self.blocked_host_regex.is_empty() {
            return Ok(None);
        }
        regex::Regex::new(&format!("^(?:{})$", self.blocked_host_regex)).map(Some)
    }

    /// Whether a connection may use `host` (see the module documentation): 400
    /// `connectivity:connection.configuration.invalid` with Ditto's message when not.
    pub async fn check(&self, host: &str) -> Result<(), DittoError> {
        self.check_with(host, resolve).await
    }

    async fn check_with<F>(
        &self,
        host: &str,
        resolve: impl Fn(String) -> F,
    ) -> Result<(), DittoError>
    where
        F: std::future::Future<Output = std::io::Result<Vec<IpAddr>>>,
    {
        if comma_list(&self.blocked_hostnames).next().is_none() {
            return Ok(());
        }
        if comma_list(&self.allowed_hostnames).any(|h| h == host) {
            return Ok(());
        }
        if self
            .regex()
            .ok()
            .flatten()
            .is_some_and(|r| r.is_match(host))
        {
            return Err(blocked(host, "the host is blocked."));
        }
        let lookup = |name: &str| {
            let literal = name.trim_matches(['[', ']']).parse::<IpAddr>().ok();
            let pending = literal.is_none().then(|| resolve(name.to_string()));
            async move {
                match (literal, pending) {
                    (Some(ip), _) => Ok(vec![ip]),
                    (None, Some(pending)) => pending.await,
                    (None, None) => Ok(Vec::new()),
                }
            }
        };
        let addresses = lookup(host).await.map_err(|e| {
            DittoError::configuration_invalid(format!(
                "The configured host '{host}' is invalid: {e}"
            ))
        })?;
        let mut blocked_addresses = Vec::new();
        for name in comma_list(&self.blocked_hostnames) {
            // A blocked name that does not resolve blocks nothing (Ditto logs a warning).
            blocked_addresses.extend(lookup(name).await.unwrap_or_default());
        }
        let subnets: Vec<ipnet::IpNet> = comma_list(&self.blocked_subnets)
            .filter_map(|s| s.parse().ok())
            .collect();
        for address in addresses {
            let why = if address.is_loopback() {
                Some("a loopback address")
            } else if is_site_local(&address) {
                Some("a site local address")
            } else if address.is_multicast() {
                Some("a multicast address")
            } else if address.is_unspecified() {
                Some("a wildcard address")
            } else if blocked_addresses.contains(&address) {
                Some("a blocked address")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(blocked(
                    host,
                    &format!("the hostname resolved to {why} ({address})."),
                ));
            }
            if let Some(subnet) = subnets.iter().find(|s| s.contains(&address)) {
                return Err(blocked(
                    host,
                    &format!(
                        "the hostname resolved to address {address} which resides in blocked subnet {subnet}."
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Java's `isSiteLocalAddress`: 10/8, 172.16/12, 192.168/16, and IPv6 fec0::/10; also IPv6
/// unique local addresses (fc00::/7), their successor.
fn is_site_local(address: &IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => v4.is_private(),
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            first & 0xffc0 == 0xfec0 || first & 0xfe00 == 0xfc00
        }
    }
}

fn blocked(host: &str, reason: &str) -> DittoError {
    DittoError::configuration_invalid(format!(
        "The configured host '{host}' may not be used for the connection because {reason}"
    ))
    .with_description(
        "The host is blocked or resolves to a forbidden address. If the host is valid, add it to the allowed hostnames configuration.",
    )
}

async fn resolve(host: String) -> std::io::Result<Vec<IpAddr>> {
    Ok(tokio::net::lookup_host((host.as_str(), 0))
        .await?
        .map(|a| a.ip())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn fake(host: String) -> std::io::Result<Vec<IpAddr>> {
        let ips: &[&str] = match host.as_str() {
            "localhost" => &["127.0.0.1", "::1"],
            "broker.example" => &["93.184.216.34"],
            "inside.example" => &["10.1.2.3"],
            "printer.example" => &["198.51.100.7"],
            "blocked.example" => &["198.51.100.7"],
            "many.example" => &["198.51.100.9", "192.168.1.9"],
            _ => return Err(std::io::Error::other("no such host")),
        };
        Ok(ips.iter().map(|i| i.parse().unwrap()).collect())
    }

    async fn check(rules: &HostRules, host: &str) -> Result<(), String> {
        rules.check_with(host, fake).await.map_err(|e| e.message)
    }

    #[tokio::test]
    async fn nothing_is_blocked_until_a_hostname_is() {
        let open = HostRules::default();
        for host in ["localhost", "127.0.0.1", "inside.example", "nowhere"] {
            assert_eq!(check(&open, host).await, Ok(()), "{host}");
        }
    }

    #[tokio::test]
    async fn blocked_hosts_follow_dittos_rules() {
        let rules = HostRules {
            allowed_hostnames: "inside.example, localhost".into(),
            blocked_hostnames: "blocked.example".into(),
            blocked_subnets: "93.184.216.0/24".into(),
            blocked_host_regex: r".*\.internal".into(),
        };
        assert_eq!(check(&rules, "localhost").await, Ok(()), "allowed");
        assert_eq!(check(&rules, "inside.example").await, Ok(()), "allowed");
        let e = check(&rules, "127.0.0.1").await.unwrap_err();
        assert_eq!(
            e,
            "The configured host '127.0.0.1' may not be used for the connection because the hostname resolved to a loopback address (127.0.0.1)."
        );
        assert!(
            check(&rules, "10.9.9.9")
                .await
                .unwrap_err()
                .contains("site local address")
        );
        assert!(
            check(&rules, "fd00::1")
                .await
                .unwrap_err()
                .contains("site local address")
        );
        assert!(
            check(&rules, "224.0.0.1")
                .await
                .unwrap_err()
                .contains("multicast")
        );
        assert!(
            check(&rules, "0.0.0.0")
                .await
                .unwrap_err()
                .contains("wildcard")
        );
        assert!(
            check(&rules, "printer.example")
                .await
                .unwrap_err()
                .contains("a blocked address (198.51.100.7)")
        );
        assert!(
            check(&rules, "broker.example")
                .await
                .unwrap_err()
                .contains("which resides in blocked subnet 93.184.216.0/24")
        );
        assert!(
            check(&rules, "many.example")
                .await
                .unwrap_err()
                .contains("192.168.1.9")
        );
        assert_eq!(
            check(&rules, "db.internal").await.unwrap_err(),
            "The configured host 'db.internal' may not be used for the connection because the host is blocked."
        );
        assert!(
            check(&rules, "nowhere")
                .await
                .unwrap_err()
                .starts_with("The configured host 'nowhere' is invalid")
        );
        let public = HostRules {
            blocked_hostnames: "blocked.example".into(),
            ..Default::default()
        };
        assert_eq!(check(&public, "198.51.100.8").await, Ok(()));
    }

    #[test]
    fn bad_subnets_and_regexes_are_named() {
        let rules = HostRules {
            blocked_subnets: "10.0.0.0/33".into(),
            ..Default::default()
        };
        assert!(
            rules
                .check_config()
                .unwrap_err()
                .contains("blocked_subnets")
        );
        let rules = HostRules {
            blocked_host_regex: "(".into(),
            ..Default::default()
        };
        assert!(
            rules
                .check_config()
                .unwrap_err()
                .contains("blocked_host_regex")
        );
        assert_eq!(HostRules::default().check_config(), Ok(()));
    }
}
