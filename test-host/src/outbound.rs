//! `allowed_outbound_hosts`, matched the way Spin matches them:
//! `scheme://host[:port]` where the scheme must match exactly (or be `*`), the
//! host is literal, `*` or `*.domain`, and the port is a number, a range
//! `start..end` (end exclusive), `*`, or omitted (the scheme's well-known port).
//! Templates are resolved from application variables; a template that resolves
//! to an empty string (or a bare `http://` / `https://`) is dropped.

use crate::variables::Template;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::ops::Range;
use url::Host;

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostRule {
    Any,
    /// Stored with its leading dot: `.example.com`.
    AnySubdomain(String),
    Literal(Host),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortRule {
    Any,
    Port(u16),
    Range(Range<u16>),
}

/// One entry of `allowed_outbound_hosts`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    original: String,
    /// `None` = any scheme (`*://`).
    scheme: Option<String>,
    host: HostRule,
    port: PortRule,
}

fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        "postgres" => Some(5432),
        "mysql" => Some(3306),
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        _ => None,
    }
}

impl AllowedHost {
    pub fn parse(text: &str) -> Result<AllowedHost> {
        let trimmed = text.trim();
        let Some((scheme, rest)) = trimmed.split_once("://") else {
            bail!("{text:?} is not of the form <scheme>://<host>[:<port>]");
        };
        let scheme = match scheme {
            "*" => None,
            s if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphabetic()) => Some(s.to_string()),
            s => bail!("{text:?}: invalid scheme {s:?}"),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            bail!("{text:?} has a path; allowed hosts must not");
        }
        let (host, port) = split_host_port(rest);
        let host = parse_host(host).with_context(|| format!("{text:?}: invalid host"))?;
        let port = match port {
            None => match &scheme {
                Some(s) => PortRule::Port(well_known_port(s).with_context(|| {
                    format!("{text:?}: no port given and scheme {s:?} has no well-known port")
                })?),
                None => bail!("{text:?}: no port given for scheme '*'"),
            },
            Some("*") => PortRule::Any,
            Some(p) => match p.split_once("..") {
                Some((a, b)) => PortRule::Range(
                    a.parse()
                        .with_context(|| format!("{text:?}: bad port range"))?
                        ..b.parse()
                            .with_context(|| format!("{text:?}: bad port range"))?,
                ),
                None => PortRule::Port(p.parse().with_context(|| format!("{text:?}: bad port"))?),
            },
        };
        Ok(AllowedHost {
            original: trimmed.to_string(),
            scheme,
            host,
            port,
        })
    }

    /// Whether a request to `scheme://host[:port]` is allowed by this entry.
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        if let Some(s) = &self.scheme {
            if s != scheme {
                return false;
            }
        }
        let Ok(host) = Host::parse(host) else {
            return false;
        };
        let host_ok = match (&self.host, &host) {
            (HostRule::Any, _) => true,
            (HostRule::AnySubdomain(suffix), Host::Domain(d)) => d.ends_with(suffix.as_str()),
            (HostRule::AnySubdomain(_), _) => false,
            (HostRule::Literal(l), h) => l == h,
        };
        if !host_ok {
            return false;
        }
        let Some(port) = port.or_else(|| well_known_port(scheme)) else {
            return matches!(self.port, PortRule::Any);
        };
        match &self.port {
            PortRule::Any => true,
            PortRule::Port(p) => *p == port,
            PortRule::Range(r) => r.contains(&port),
        }
    }
}

impl std::fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.original)
    }
}

/// Splits `host[:port]`, keeping bracketed IPv6 literals whole.
fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        if let Some(end) = authority.find(']') {
            let (h, tail) = authority.split_at(end + 1);
            return (h, tail.strip_prefix(':').filter(|p| !p.is_empty()));
        }
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() => (h, Some(p)),
        Some((h, _)) => (h, None),
        None => (authority, None),
    }
}

fn parse_host(host: &str) -> Result<HostRule> {
    if host == "*" {
        return Ok(HostRule::Any);
    }
    if let Some(domain) = host.strip_prefix("*.") {
        if domain.contains('*') {
            bail!("wildcards are allowed only as a prefix");
        }
        return match Host::parse(domain)? {
            Host::Domain(d) => Ok(HostRule::AnySubdomain(format!(".{d}"))),
            _ => bail!("a wildcard must be followed by a domain"),
        };
    }
    if host.contains('*') {
        bail!("wildcards are allowed only as `*` or `*.domain`");
    }
    Ok(HostRule::Literal(Host::parse(host)?))
}

/// A component's resolved `allowed_outbound_hosts`.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts(Vec<AllowedHost>);

impl AllowedHosts {
    /// Parses the manifest entries, resolving templates from `app_values`.
    pub fn resolve(entries: &[String], app_values: &HashMap<String, String>) -> Result<Self> {
        let mut hosts = Vec::new();
        for entry in entries {
            if entry.trim() == "insecure:allow-all" {
                bail!("'insecure:allow-all' is not allowed; use '*://*:*'");
            }
            let template = Template::parse(entry)?;
            let text = if template.is_literal() {
                entry.clone()
            } else {
                let resolved = template.render(app_values)?;
                if resolved.is_empty() || resolved == "http://" || resolved == "https://" {
                    continue;
                }
                resolved
            };
            hosts.push(
                AllowedHost::parse(&text)
                    .with_context(|| format!("allowed_outbound_hosts entry {entry:?}"))?,
            );
        }
        Ok(AllowedHosts(hosts))
    }

    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        self.0.iter().any(|h| h.allows(scheme, host, port))
    }

    /// Whether an absolute URL (`scheme://host[:port]/...`) is allowed.
    pub fn allows_uri(&self, uri: &http::Uri) -> bool {
        match (uri.scheme_str(), uri.host()) {
            (Some(scheme), Some(host)) => self.allows(scheme, host, uri.port_u16()),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(entries: &[&str], vars: &[(&str, &str)]) -> AllowedHosts {
        let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        let vars = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        AllowedHosts::resolve(&entries, &vars).unwrap()
    }

    #[test]
    fn default_ports_and_exact_scheme() {
        let h = hosts(&["https://login.example.com"], &[]);
        assert!(h.allows("https", "login.example.com", None));
        assert!(h.allows("https", "login.example.com", Some(443)));
        assert!(!h.allows("https", "login.example.com", Some(8443)));
        assert!(!h.allows("http", "login.example.com", None));
        assert!(!h.allows("https", "other.example.com", None));
    }

    #[test]
    fn explicit_port_must_match() {
        let h = hosts(&["http://127.0.0.1:8080"], &[]);
        assert!(h.allows("http", "127.0.0.1", Some(8080)));
        assert!(!h.allows("http", "127.0.0.1", None));
        assert!(!h.allows("http", "localhost", Some(8080)));
    }

    #[test]
    fn wildcards_and_ranges() {
        let h = hosts(
            &["https://*.example.com", "http://localhost:8000..8010"],
            &[],
        );
        assert!(h.allows("https", "a.example.com", None));
        assert!(h.allows("https", "a.b.example.com", None));
        assert!(!h.allows("https", "example.com", None));
        assert!(!h.allows("https", "badexample.com", None));
        assert!(h.allows("http", "localhost", Some(8000)));
        assert!(h.allows("http", "localhost", Some(8009)));
        assert!(!h.allows("http", "localhost", Some(8010)));
        let any = hosts(&["*://*:*"], &[]);
        assert!(any.allows("http", "x.y", Some(1)));
    }

    #[test]
    fn templates_resolve_and_empty_ones_are_dropped() {
        let h = hosts(
            &["{{ base }}", "{{ empty }}"],
            &[("base", "http://127.0.0.1:9000/"), ("empty", "")],
        );
        assert!(h.allows("http", "127.0.0.1", Some(9000)));
        assert_eq!(h.0.len(), 1);
    }

    #[test]
    fn rejects_paths_and_bad_entries() {
        for bad in ["https://x.com/api", "x.com", "https://a.*.com", "*://x.com"] {
            assert!(AllowedHost::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(AllowedHosts::resolve(&["insecure:allow-all".into()], &HashMap::new()).is_err());
    }

    #[test]
    fn uri_check() {
        let h = hosts(&["http://127.0.0.1:9000"], &[]);
        assert!(h.allows_uri(&"http://127.0.0.1:9000/x?y".parse().unwrap()));
        assert!(!h.allows_uri(&"http://127.0.0.1:9001/x".parse().unwrap()));
    }
}
