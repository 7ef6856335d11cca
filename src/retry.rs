//! Retry decisions for outbound calls: which failures are worth another try,
//! how long to wait (`Retry-After` first, else exponential backoff with
//! jitter), and when to give up. The component sleeps; the core only decides.

use std::time::Duration;

use crate::config::RetryLimits;

/// Longest single wait we accept inside a tick; longer waits are deferred to
/// a later tick.
pub const MAX_WAIT_IN_TICK: Duration = Duration::from_secs(10);
const BASE_DELAY_MS: f64 = 500.0;

/// Parse `Retry-After` in seconds (Graph sends fractions such as `2.128`).
/// HTTP-dates are not used by these APIs and count as absent.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let secs: f64 = v.trim().parse().ok()?;
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(secs.min(3600.0)))
}

/// How a call ended, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// The request never got an HTTP answer (refused, reset, timed out).
    NoResponse,
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    Retry(Duration),
    /// Not retryable, retries used up, or the wait does not fit: stop now.
    GiveUp,
}

/// Is this outcome worth a retry at all? A non-idempotent call (a VMRay
/// submit, an alert comment) is retried only on 429, which means "not
/// accepted"; anything else may have been acted on.
pub fn retryable(outcome: Outcome, idempotent: bool) -> bool {
    match outcome {
        Outcome::Status { code: 429, .. } => true,
        Outcome::NoResponse => idempotent,
        Outcome::Status { code, .. } => idempotent && matches!(code, 500 | 502 | 503 | 504),
    }
}

/// Decide after a failed attempt.
///
/// `retries_done` counts retries already made; `elapsed` is time since the
/// first attempt; `tick_left` is what the tick may still spend; `jitter` is a
/// random number in [0, 1).
pub fn decide(
    outcome: Outcome,
    idempotent: bool,
    retries_done: u32,
    elapsed: Duration,
    tick_left: Duration,
    limits: RetryLimits,
    jitter: f64,
) -> Decision {
    if !retryable(outcome, idempotent) || retries_done >= limits.max_retries {
        return Decision::GiveUp;
    }
    let wait = match outcome {
        Outcome::Status {
            retry_after: Some(d),
            ..
        } => d,
        _ => {
            let backoff = BASE_DELAY_MS * 2f64.powi(retries_done.min(10) as i32);
            Duration::from_millis((backoff * (0.5 + jitter.clamp(0.0, 1.0) / 2.0)) as u64)
        }
    };
    let over_total = elapsed + wait > Duration::from_secs(limits.total_timeout_secs);
    if over_total || wait > MAX_WAIT_IN_TICK || wait >= tick_left {
        return Decision::GiveUp;
    }
    Decision::Retry(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RetryLimits = RetryLimits {
        max_retries: 3,
        total_timeout_secs: 300,
    };
    const LOTS: Duration = Duration::from_secs(25);

    #[test]
    fn retry_after_fractional_seconds() {
        assert_eq!(
            parse_retry_after("2.128"),
            Some(Duration::from_millis(2128))
        );
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn obeys_retry_after_and_limits() {
        let t429 = Outcome::Status {
            code: 429,
            retry_after: Some(Duration::from_millis(2128)),
        };
        assert_eq!(
            decide(t429, false, 0, Duration::ZERO, LOTS, LIMITS, 0.3),
            Decision::Retry(Duration::from_millis(2128))
        );
        assert_eq!(
            decide(t429, true, 3, Duration::ZERO, LOTS, LIMITS, 0.3),
            Decision::GiveUp
        );
        let long = Outcome::Status {
            code: 429,
            retry_after: Some(Duration::from_secs(60)),
        };
        assert_eq!(
            decide(long, true, 0, Duration::ZERO, LOTS, LIMITS, 0.3),
            Decision::GiveUp,
            "deferred to a later tick"
        );
    }

    #[test]
    fn never_retries_a_submit_blindly() {
        let e500 = Outcome::Status {
            code: 500,
            retry_after: None,
        };
        assert_eq!(
            decide(e500, false, 0, Duration::ZERO, LOTS, LIMITS, 0.0),
            Decision::GiveUp
        );
        assert_eq!(
            decide(
                Outcome::NoResponse,
                false,
                0,
                Duration::ZERO,
                LOTS,
                LIMITS,
                0.0
            ),
            Decision::GiveUp
        );
        assert!(matches!(
            decide(e500, true, 0, Duration::ZERO, LOTS, LIMITS, 0.0),
            Decision::Retry(_)
        ));
        let e400 = Outcome::Status {
            code: 400,
            retry_after: None,
        };
        assert_eq!(
            decide(e400, true, 0, Duration::ZERO, LOTS, LIMITS, 0.0),
            Decision::GiveUp
        );
    }

    #[test]
    fn backoff_grows_with_jitter() {
        let e503 = Outcome::Status {
            code: 503,
            retry_after: None,
        };
        let Decision::Retry(a) = decide(e503, true, 0, Duration::ZERO, LOTS, LIMITS, 0.0) else {
            panic!()
        };
        let Decision::Retry(b) = decide(e503, true, 2, Duration::ZERO, LOTS, LIMITS, 0.0) else {
            panic!()
        };
        let Decision::Retry(c) = decide(e503, true, 2, Duration::ZERO, LOTS, LIMITS, 0.99) else {
            panic!()
        };
        assert!(a < b && b < c, "{a:?} {b:?} {c:?}");
    }
}
