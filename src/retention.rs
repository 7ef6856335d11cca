//! Expiry: which records may go, so the store does not grow without bound.
//! Each component sweeps only the keys it writes (one writer per key), at
//! most once an hour, and only records nothing still needs.

use chrono::{DateTime, Duration, Utc};

use crate::records::{AlertRecord, IndicatorRecord, SampleReport, UrlAnalysis, UrlState};

/// How long a finished alert's records are kept: an alert updated within
/// this time is recognised and not processed again.
pub const RETENTION_DAYS: i64 = 30;
/// Minutes between sweeps of one component.
pub const SWEEP_INTERVAL_MINUTES: i64 = 60;
/// Deletes per sweep, so one tick stays short.
pub const MAX_DELETES_PER_SWEEP: usize = 1000;

/// Is a sweep due, given when the last one ran?
pub fn sweep_due(last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    last.is_none_or(|l| now - l >= Duration::minutes(SWEEP_INTERVAL_MINUTES) || l > now)
}

/// The kind and id of one of a tenant's keys: `mdo:{tenant}:{kind}:{id}`.
pub fn split_key<'a>(tenant_prefix: &str, key: &'a str) -> Option<(&'a str, &'a str)> {
    key.strip_prefix(tenant_prefix)?.split_once(':')
}

/// A poller alert record no longer open and older than the retention.
pub fn alert_expired(rec: &AlertRecord, still_open: bool, now: DateTime<Utc>) -> bool {
    !still_open && now - rec.first_seen > Duration::days(RETENTION_DAYS)
}

/// A URL analysis too old to be reused (past the resubmit window by a day);
/// one still in flight never expires.
pub fn url_expired(rec: &UrlAnalysis, resubmit_after_days: u32, now: DateTime<Utc>) -> bool {
    let keep = Duration::days(i64::from(resubmit_after_days) + 1);
    match &rec.state {
        UrlState::Done { analysed_at, .. } => now - *analysed_at > keep,
        UrlState::Failed { at, .. } => now - *at > keep,
        UrlState::Submitting { .. } | UrlState::Running { .. } => false,
    }
}

/// A sample record older than the retention (samples of open alerts are
/// written again when their URL is analysed again).
pub fn sample_expired(rec: &SampleReport, now: DateTime<Utc>) -> bool {
    rec.stored_at
        .is_some_and(|t| now - t > Duration::days(RETENTION_DAYS))
}

/// An indicator record past its expiration: Defender dropped it too.
pub fn indicator_expired(rec: &IndicatorRecord, now: DateTime<Utc>) -> bool {
    rec.expires < now
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::SCHEMA;

    #[test]
    fn sweeps_hourly() {
        let now = Utc::now();
        assert!(sweep_due(None, now));
        assert!(!sweep_due(Some(now - Duration::minutes(59)), now));
        assert!(sweep_due(Some(now - Duration::minutes(60)), now));
        assert!(
            sweep_due(Some(now + Duration::hours(2)), now),
            "a clock that went back must not stop sweeps"
        );
    }

    #[test]
    fn keys_split_by_tenant() {
        assert_eq!(
            split_key("mdo:t1:", "mdo:t1:alert:a:b"),
            Some(("alert", "a:b"))
        );
        assert_eq!(split_key("mdo:t1:", "mdo:t2:alert:a"), None);
    }

    #[test]
    fn what_expires() {
        let now = Utc::now();
        let rec: AlertRecord = serde_json::from_value(serde_json::json!({
            "v": SCHEMA, "alert_id": "a", "incident_id": null, "title": "", "created": now,
            "first_seen": now - Duration::days(31), "network_message_ids": [], "urls": [], "skipped": [],
            "stage": "ready"
        }))
        .unwrap();
        assert!(alert_expired(&rec, false, now));
        assert!(!alert_expired(&rec, true, now), "open alerts stay");
        let url = |state| UrlAnalysis {
            v: SCHEMA,
            url: "u".into(),
            state,
        };
        let done = url(UrlState::Done {
            sample_id: 1,
            submission_id: None,
            analysed_at: now - Duration::days(9),
            reused: false,
        });
        assert!(url_expired(&done, 7, now));
        assert!(!url_expired(&done, 8, now));
        let running = url(UrlState::Running {
            submission_id: 1,
            sample_id: 1,
            submitted_at: now - Duration::days(99),
        });
        assert!(!url_expired(&running, 0, now));
    }
}
