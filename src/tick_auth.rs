//! The HTTP tick route's bearer token check: constant-time, and refusing
//! missing or short tokens outright.

/// Shortest `tick_token` accepted (configured or presented).
pub const MIN_TOKEN_LEN: usize = 16;

/// Compare without leaking where the first difference is.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

/// Is an `Authorization` header value the configured bearer token?
pub fn authorized(header: Option<&str>, configured: Option<&str>) -> bool {
    let (Some(header), Some(configured)) = (header, configured) else {
        return false;
    };
    if configured.len() < MIN_TOKEN_LEN {
        return false;
    }
    let Some(presented) = header.strip_prefix("Bearer ") else {
        return false;
    };
    presented.len() >= MIN_TOKEN_LEN
        && constant_time_eq(presented.as_bytes(), configured.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_the_exact_long_token() {
        let t = "0123456789abcdef0123";
        assert!(authorized(Some(&format!("Bearer {t}")), Some(t)));
        assert!(!authorized(Some(&format!("Bearer {t}x")), Some(t)));
        assert!(!authorized(Some("Bearer 0123456789abcdef012"), Some(t)));
        assert!(!authorized(Some(t), Some(t)), "scheme required");
        assert!(!authorized(None, Some(t)));
        assert!(
            !authorized(Some("Bearer short"), Some("short")),
            "short configured token refused"
        );
        assert!(!authorized(Some("Bearer "), Some(t)));
    }

    #[test]
    fn constant_time_eq_is_eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
