//! The HTTP tick route's bearer token check: constant-time, and refusing
//! missing or short tokens outright.

/// Shortest `tick_token` accepted (configured or presented).
pub const MIN_TOKEN_LEN: usize = 16;

/// Compare without leaking where the first difference is.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        #[cfg(test)]
        tests::EXAMINED.with(|n| n.set(n.get() + 1));
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
    use std::cell::Cell;

    thread_local! {
        /// Bytes `constant_time_eq` examined (test-only hook).
        pub(super) static EXAMINED: Cell<usize> = const { Cell::new(0) };
    }

    fn examined(a: &[u8], b: &[u8]) -> (bool, usize) {
        EXAMINED.with(|n| n.set(0));
        let eq = constant_time_eq(a, b);
        (eq, EXAMINED.with(Cell::get))
    }

    #[test]
    fn every_byte_is_examined_wherever_the_mismatch_is() {
        let token = b"0123456789abcdef0123456789abcdef";
        let n = token.len();
        let (eq, work) = examined(token, token);
        assert!(eq);
        assert_eq!(work, n);
        for pos in [0, 1, n / 2, n - 1] {
            let mut other = *token;
            other[pos] ^= 0x01;
            assert_eq!(
                examined(&other, token),
                (false, n),
                "mismatch at byte {pos} must cost the same as a match"
            );
        }
        // A shorter or longer guess still walks the longer of the two.
        assert_eq!(examined(&token[..1], token), (false, n));
        assert_eq!(examined(b"", token), (false, n));
        let mut longer = token.to_vec();
        longer.push(b'x');
        assert_eq!(examined(&longer, token), (false, n + 1));
        // Lengths differing by a multiple of 256 are still unequal.
        let long_a = vec![b'a'; 256];
        assert!(!constant_time_eq(&long_a, b""));
    }

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
