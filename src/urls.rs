//! URL normalisation: what counts as "the same URL" for de-duplication, reuse
//! of analyses and VMRay submission search.
//!
//! Rules (from VMRay's guidance): scheme and host lower-case, default port
//! dropped, fragment dropped, path and query kept. Only http(s) URLs are ever
//! submitted. Safe Links wrappers are unwrapped to the original URL.

use sha2::{Digest, Sha256};

/// Longest URL we accept; VMRay and Defender reject far shorter ones anyway.
pub const MAX_URL_LEN: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("URL is empty")]
    Empty,
    #[error("URL is {0} bytes long (at most {MAX_URL_LEN})")]
    TooLong(usize),
    #[error("URL contains control characters")]
    ControlChars,
    #[error("URL cannot be parsed: {0}")]
    Unparsable(String),
    #[error("URL scheme `{0}` is not http or https")]
    Scheme(String),
    #[error("URL has no host")]
    NoHost,
}

/// A normalised http(s) URL and its lower-case host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedUrl {
    pub url: String,
    pub host: String,
}

/// Normalise a URL found in an alert or a hunting row.
pub fn normalize(raw: &str) -> Result<NormalizedUrl, UrlError> {
    normalize_depth(raw, 0)
}

fn normalize_depth(raw: &str, depth: u8) -> Result<NormalizedUrl, UrlError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(UrlError::Empty);
    }
    if trimmed.len() > MAX_URL_LEN {
        return Err(UrlError::TooLong(trimmed.len()));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(UrlError::ControlChars);
    }
    // Hunting rows sometimes carry a bare "evil.example/path" or
    // "evil.example:8080/p" (which would parse with scheme "evil.example").
    let with_scheme = || url::Url::parse(&format!("http://{trimmed}"));
    let mut parsed = match url::Url::parse(trimmed) {
        Ok(_) if looks_like_host_port(trimmed) => with_scheme(),
        Err(url::ParseError::RelativeUrlWithoutBase) if depth == 0 => with_scheme(),
        other => other,
    }
    .map_err(|e| UrlError::Unparsable(e.to_string()))?;
    let scheme = parsed.scheme().to_string();
    if scheme != "http" && scheme != "https" {
        return Err(UrlError::Scheme(scheme.chars().take(32).collect()));
    }
    let host = parsed
        .host_str()
        .ok_or(UrlError::NoHost)?
        .to_ascii_lowercase();
    if host.is_empty() {
        return Err(UrlError::NoHost);
    }
    if depth < 3 {
        if let Some(inner) = safe_links_target(&parsed, &host) {
            return normalize_depth(&inner, depth + 1);
        }
    }
    parsed.set_fragment(None);
    Ok(NormalizedUrl {
        url: parsed.to_string(),
        host,
    })
}

fn looks_like_host_port(s: &str) -> bool {
    // "evil.example:8080/x" parses as scheme "evil.example"; treat as host:port.
    match s.split_once(':') {
        Some((host, rest)) => {
            host.contains('.') && rest.chars().next().is_some_and(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

/// `https://eur01.safelinks.protection.outlook.com/?url=<original>&data=…`
fn safe_links_target(parsed: &url::Url, host: &str) -> Option<String> {
    if !host.ends_with(".safelinks.protection.outlook.com")
        && host != "safelinks.protection.outlook.com"
    {
        return None;
    }
    parsed
        .query_pairs()
        .find(|(k, _)| k == "url")
        .map(|(_, v)| v.into_owned())
}

/// Short, store-safe key for a normalised URL (SHA-256, first 128 bits, hex).
pub fn url_key(normalized: &str) -> String {
    short_hash(normalized)
}

/// First 128 bits of SHA-256 as hex: keys stay short and free of characters
/// that some key-value backends reject.
pub fn short_hash(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercases_scheme_and_host_keeps_path_and_query() {
        let n = normalize("HTTP://Evil.EXAMPLE:80/Login?User=A#frag").unwrap();
        assert_eq!(n.url, "http://evil.example/Login?User=A");
        assert_eq!(n.host, "evil.example");
        assert_eq!(
            normalize("https://a.example:443/").unwrap().url,
            "https://a.example/"
        );
        assert_eq!(
            normalize("https://a.example:8443/x").unwrap().url,
            "https://a.example:8443/x"
        );
    }

    #[test]
    fn refuses_non_http_schemes() {
        for bad in [
            "javascript:alert(1)",
            "data:text/html,<b>",
            "file:///etc/passwd",
            "ftp://x.example/",
        ] {
            assert!(matches!(normalize(bad), Err(UrlError::Scheme(_))), "{bad}");
        }
    }

    #[test]
    fn refuses_control_chars_and_huge_urls() {
        assert_eq!(
            normalize("http://a.example/\u{0}x"),
            Err(UrlError::ControlChars)
        );
        let huge = format!("http://a.example/{}", "a".repeat(70_000));
        assert!(matches!(normalize(&huge), Err(UrlError::TooLong(_))));
        assert_eq!(normalize("   "), Err(UrlError::Empty));
    }

    #[test]
    fn unwraps_safe_links() {
        let wrapped = "https://eur01.safelinks.protection.outlook.com/?url=http%3A%2F%2Fevil.example%2Fpay%3Fa%3D1&data=05%7C01&reserved=0";
        assert_eq!(
            normalize(wrapped).unwrap().url,
            "http://evil.example/pay?a=1"
        );
    }

    #[test]
    fn idn_becomes_punycode_and_ipv6_is_kept() {
        assert_eq!(
            normalize("http://bücher.example/").unwrap().host,
            "xn--bcher-kva.example"
        );
        assert_eq!(
            normalize("http://[2001:db8::1]:8080/x").unwrap().url,
            "http://[2001:db8::1]:8080/x"
        );
    }

    #[test]
    fn bare_hosts_get_http() {
        assert_eq!(
            normalize("evil.example/path").unwrap().url,
            "http://evil.example/path"
        );
        assert_eq!(
            normalize("evil.example:8080/p").unwrap().url,
            "http://evil.example:8080/p"
        );
    }

    #[test]
    fn keys_are_short_and_stable() {
        let k = url_key("http://evil.example/");
        assert_eq!(k.len(), 32);
        assert_eq!(k, url_key("http://evil.example/"));
        assert_ne!(k, url_key("http://evil.example/x"));
    }
}
