//! The VMRay side's decisions: reuse, look up, submit, follow, give up —
//! one URL at a time, with time passed in.

use chrono::{DateTime, Duration, Utc};

use crate::records::{AlertRecord, AlertStage, UrlAnalysis, UrlOutcome, UrlResult, UrlState};

/// Child samples walked per analysis, at most, and how deep.
pub const MAX_CHILD_SAMPLES: usize = 20;
pub const MAX_CHILD_DEPTH: usize = 3;

/// The oldest analysis an alert first seen at `first_seen` may reuse.
/// With 0 days only an analysis made after the alert was seen counts.
pub fn needed_since(first_seen: DateTime<Utc>, resubmit_after_days: u32) -> DateTime<Utc> {
    first_seen - Duration::days(i64::from(resubmit_after_days))
}

/// The next step for one URL.
#[derive(Debug, Clone, PartialEq)]
pub enum UrlStep {
    /// A fresh enough result is in our store.
    Reuse,
    /// Nothing usable of ours: ask VMRay's submission search before submitting.
    Lookup { since: DateTime<Utc> },
    /// A submit's fate is unknown (the tick died around it): find it by
    /// search (from `since`) before anything is submitted again. A submission
    /// found is dated `intent_at`, our clock's time of the submit.
    Reconcile {
        since: DateTime<Utc>,
        intent_at: DateTime<Utc>,
    },
    /// Ask VMRay whether the submission finished. `submitted_at` is on our
    /// clock, and becomes the analysis date (VMRay's own dates have second
    /// precision and their own clock; comparing them with ours could make a
    /// fresh analysis look stale and be submitted again).
    Poll {
        submission_id: u64,
        sample_id: u64,
        submitted_at: DateTime<Utc>,
    },
    /// The analysis took longer than `vmray_analysis_timeout_minutes`.
    TimedOut,
    /// A recent failure stands for this alert.
    Failed,
}

pub fn next_step(
    record: Option<&UrlAnalysis>,
    needed_since: DateTime<Utc>,
    now: DateTime<Utc>,
    analysis_timeout_minutes: u32,
) -> UrlStep {
    let Some(rec) = record else {
        return UrlStep::Lookup {
            since: needed_since,
        };
    };
    match &rec.state {
        UrlState::Done { analysed_at, .. } if *analysed_at >= needed_since => UrlStep::Reuse,
        UrlState::Done { .. } => UrlStep::Lookup {
            since: needed_since,
        },
        // Look a little before the intent: clocks of VMRay and the host differ.
        UrlState::Submitting { since, .. } => UrlStep::Reconcile {
            since: *since - Duration::minutes(5),
            intent_at: *since,
        },
        UrlState::Running { submitted_at, .. }
            if now - *submitted_at > Duration::minutes(i64::from(analysis_timeout_minutes)) =>
        {
            UrlStep::TimedOut
        }
        UrlState::Running {
            submission_id,
            sample_id,
            submitted_at,
        } => UrlStep::Poll {
            submission_id: *submission_id,
            sample_id: *sample_id,
            submitted_at: *submitted_at,
        },
        UrlState::Failed { at, .. } if *at >= needed_since => UrlStep::Failed,
        UrlState::Failed { .. } => UrlStep::Lookup {
            since: needed_since,
        },
    }
}

/// Was a submission found by search made before the alert was seen (a
/// reused analysis), or for it — by this connector, whose record of the
/// submit was lost? VMRay's dates have second precision and another clock,
/// hence the minute of tolerance.
pub fn found_is_reuse(created: Option<DateTime<Utc>>, first_seen: DateTime<Utc>) -> bool {
    created.is_none_or(|c| c < first_seen - Duration::minutes(1))
}

/// The result an alert gets for one URL, if its analysis is resolved.
pub fn url_result(record: Option<&UrlAnalysis>, needed_since: DateTime<Utc>) -> Option<UrlResult> {
    let rec = record?;
    let outcome = match &rec.state {
        UrlState::Done {
            sample_id,
            submission_id,
            analysed_at,
            reused,
        } if *analysed_at >= needed_since => UrlOutcome::Sample {
            sample_id: *sample_id,
            submission_id: *submission_id,
            analysed_at: *analysed_at,
            reused: *reused,
        },
        UrlState::Failed { reason, at } if *at >= needed_since => UrlOutcome::Failed {
            reason: reason.clone(),
        },
        _ => return None,
    };
    Some(UrlResult {
        url: rec.url.clone(),
        outcome,
        file: None,
    })
}

/// Does the VMRay side have work on this alert?
pub fn alert_ready(record: &AlertRecord) -> bool {
    matches!(record.stage, AlertStage::Ready)
        && !crate::attachments::pending(record)
        && (!record.urls.is_empty() || !record.files.is_empty())
}

/// Submission tags: the configured ones, plus the alert id when asked
/// (characters VMRay refuses in tags are dropped).
pub fn submission_tags(configured: &[String], alert_id: Option<&str>) -> String {
    let mut tags: Vec<String> = configured.to_vec();
    if let Some(id) = alert_id {
        let clean: String = id
            .chars()
            .filter(|c| crate::config::is_vmray_tag_char(*c))
            .take(255)
            .collect();
        if !clean.is_empty() && !tags.contains(&clean) {
            tags.push(clean);
        }
    }
    tags.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::SCHEMA;

    fn rec(state: UrlState) -> UrlAnalysis {
        UrlAnalysis {
            v: SCHEMA,
            url: "http://a.example/".into(),
            state,
        }
    }

    #[test]
    fn reuse_window_edges() {
        let now = Utc::now();
        let seen = now;
        let done = |days: i64| {
            rec(UrlState::Done {
                sample_id: 1,
                submission_id: Some(2),
                analysed_at: now - Duration::days(days),
                reused: false,
            })
        };
        // 7-day window: 6 days old reused, 8 days old looked up again.
        assert_eq!(
            next_step(Some(&done(6)), needed_since(seen, 7), now, 30),
            UrlStep::Reuse
        );
        assert!(matches!(
            next_step(Some(&done(8)), needed_since(seen, 7), now, 30),
            UrlStep::Lookup { .. }
        ));
        // 0 days: only an analysis after the alert was seen counts.
        assert!(matches!(
            next_step(
                Some(&done(0)),
                needed_since(seen + Duration::seconds(1), 0),
                now,
                30
            ),
            UrlStep::Lookup { .. }
        ));
        let fresh = rec(UrlState::Done {
            sample_id: 1,
            submission_id: None,
            analysed_at: now,
            reused: false,
        });
        assert_eq!(
            next_step(Some(&fresh), needed_since(now, 0), now, 30),
            UrlStep::Reuse
        );
    }

    #[test]
    fn unknown_submits_are_reconciled_not_repeated() {
        let now = Utc::now();
        let r = rec(UrlState::Submitting {
            since: now,
            attempts: 1,
        });
        assert!(matches!(
            next_step(Some(&r), now, now, 30),
            UrlStep::Reconcile { .. }
        ));
    }

    #[test]
    fn a_submission_made_for_the_alert_is_not_a_reuse() {
        let seen = Utc::now();
        assert!(!found_is_reuse(
            Some(seen - Duration::milliseconds(900)),
            seen
        ));
        assert!(!found_is_reuse(Some(seen + Duration::minutes(3)), seen));
        assert!(found_is_reuse(Some(seen - Duration::days(2)), seen));
        assert!(found_is_reuse(None, seen));
    }

    #[test]
    fn running_times_out() {
        let now = Utc::now();
        let r = rec(UrlState::Running {
            submission_id: 5,
            sample_id: 6,
            submitted_at: now - Duration::minutes(31),
        });
        assert_eq!(next_step(Some(&r), now, now, 30), UrlStep::TimedOut);
        let r = rec(UrlState::Running {
            submission_id: 5,
            sample_id: 6,
            submitted_at: now - Duration::minutes(29),
        });
        assert_eq!(
            next_step(Some(&r), now, now, 30),
            UrlStep::Poll {
                submission_id: 5,
                sample_id: 6,
                submitted_at: now - Duration::minutes(29)
            }
        );
    }

    #[test]
    fn tags_carry_alert_id_when_asked() {
        assert_eq!(submission_tags(&["MDO".into()], None), "MDO");
        assert_eq!(
            submission_tags(&["MDO".into()], Some("da63 7,x")),
            "MDO,da637x"
        );
    }
}
