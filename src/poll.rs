//! The poller's decisions: which alerts to list, which to take in, where their
//! URLs come from, and where the cursor moves.

use chrono::{DateTime, Duration, Utc};

use crate::alert::{Alert, MDO_SERVICE_SOURCE};
use crate::config::PollerSettings;
use crate::exclusions::Exclusions;
use crate::hunting::UrlRow;
use crate::records::{AlertRecord, AlertStage, Cursor, SkippedUrl, UrlRef, SCHEMA};
use crate::urls::{normalize, url_key};

/// How far back the very first tick looks.
pub const INITIAL_LOOKBACK_HOURS: i64 = 24;
/// Alerts per page asked of Graph.
pub const PAGE_SIZE: u32 = 100;
/// Hunting tries before an alert is annotated as having no URL.
pub const MAX_HUNTING_TRIES: u32 = 6;
/// Wait between hunting tries for the same alert.
pub const HUNTING_RETRY_MINUTES: i64 = 3;
/// URLs analysed per alert, at most (the rest is named in the comment).
pub const MAX_URLS_PER_ALERT: usize = 50;

/// Graph timestamps in `$filter`: unquoted, UTC, second precision.
pub fn graph_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The first page's URL for this tick.
pub fn alerts_url(graph_base: &str, cursor: Option<&Cursor>, now: DateTime<Utc>) -> String {
    let since = cursor
        .map(|c| c.since)
        .unwrap_or(now - Duration::hours(INITIAL_LOOKBACK_HOURS));
    let filter = format!(
        "serviceSource eq '{MDO_SERVICE_SOURCE}' and lastUpdateDateTime ge {}",
        graph_time(since)
    );
    let mut url = url::Url::parse(&format!("{graph_base}/v1.0/security/alerts_v2"))
        .expect("validated base URL");
    url.query_pairs_mut()
        .append_pair("$filter", &filter)
        .append_pair("$top", &PAGE_SIZE.to_string());
    url.to_string()
}

/// Is a `@odata.nextLink` safe to follow (same origin as the configured Graph)?
pub fn next_link_allowed(graph_base: &str, next: &str) -> bool {
    match (url::Url::parse(graph_base), url::Url::parse(next)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

/// What to do with a listed alert.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // one per listed alert, moved straight into the store
pub enum Intake {
    Take(AlertRecord),
    /// Too young: URLs reach Graph minutes after the alert; a later tick takes it.
    TooYoung,
    /// Not ours to handle (other service, severity not chosen).
    Ignore(String),
}

/// Decide about one listed alert that has no record yet.
pub fn intake(alert: &Alert, s: &PollerSettings, now: DateTime<Utc>) -> Intake {
    if alert.service_source != MDO_SERVICE_SOURCE {
        return Intake::Ignore(format!(
            "service source `{}` is not MDO",
            alert.service_source
        ));
    }
    if !s.alert_severities.contains(&alert.severity) {
        return Intake::Ignore(format!(
            "severity {:?} is not in alert_severities",
            alert.severity
        ));
    }
    if now - alert.created < Duration::minutes(i64::from(s.minimum_alert_age_minutes)) {
        return Intake::TooYoung;
    }
    let mut record = AlertRecord {
        v: SCHEMA,
        alert_id: alert.id.clone(),
        incident_id: alert.incident_id.clone(),
        title: alert.title.clone(),
        created: alert.created,
        first_seen: now,
        network_message_ids: alert.network_message_ids.clone(),
        urls: Vec::new(),
        skipped: Vec::new(),
        stage: AlertStage::Ready,
        messages: Vec::new(),
        files: Vec::new(),
        attachment_notes: Vec::new(),
        attachments: None,
    };
    add_urls(
        &mut record,
        alert.evidence_urls.iter().map(String::as_str),
        &s.url_exclusions,
    );
    record.stage = if alert.needs_hunting() {
        AlertStage::AwaitingUrls {
            tries: 0,
            next_try: now,
        }
    } else if !record.urls.is_empty() {
        AlertStage::Ready
    } else if alert.is_teams {
        AlertStage::NoUrls {
            reason: "Teams alerts carry no URL that Defender's APIs expose".into(),
        }
    } else if !record.skipped.is_empty() {
        AlertStage::NoUrls {
            reason: "every URL in the alert is excluded or cannot be analysed".into(),
        }
    } else {
        AlertStage::NoUrls {
            reason: "the alert names no URL and no e-mail message to look one up by".into(),
        }
    };
    crate::attachments::plan(&mut record, alert, s.analyze_user_reported_attachments, now);
    Intake::Take(record)
}

/// Add raw URLs to a record: normalise, de-duplicate, apply exclusions, and
/// note what was skipped and why.
pub fn add_urls<'a>(
    record: &mut AlertRecord,
    raw: impl Iterator<Item = &'a str>,
    exclusions: &Exclusions,
) {
    for r in raw {
        let shown: String = r.chars().take(200).collect();
        match normalize(r) {
            Ok(n) if exclusions.excludes(&n.url, &n.host) => note_skip(
                record,
                n.url.chars().take(200).collect(),
                "matches url_exclusion_patterns",
            ),
            Ok(n) => {
                if record.urls.iter().any(|u| u.url == n.url) {
                    continue;
                }
                if record.urls.len() >= MAX_URLS_PER_ALERT {
                    note_skip(
                        record,
                        n.url.chars().take(200).collect(),
                        "more URLs than the per-alert limit",
                    );
                    continue;
                }
                let key = url_key(&n.url);
                record.urls.push(UrlRef { url: n.url, key });
            }
            Err(e) => note_skip(record, shown, &e.to_string()),
        }
    }
}

fn note_skip(record: &mut AlertRecord, url: String, reason: &str) {
    if record.skipped.len() < 20 && !record.skipped.iter().any(|s| s.url == url) {
        record.skipped.push(SkippedUrl {
            url,
            reason: reason.to_string(),
        });
    }
}

/// Is the record waiting for a hunting query this tick?
pub fn hunting_due(record: &AlertRecord, now: DateTime<Utc>) -> bool {
    matches!(record.stage, AlertStage::AwaitingUrls { next_try, .. } if next_try <= now)
}

/// Look-back of this tick's one query: 24 h while any alert is on its first
/// try, else the configured e-mail look-back.
pub fn hunting_lookback_days(due: &[&AlertRecord], email_lookback_days: u32) -> u32 {
    let any_first = due
        .iter()
        .any(|r| matches!(r.stage, AlertStage::AwaitingUrls { tries: 0, .. }));
    if any_first {
        1
    } else {
        email_lookback_days
    }
}

/// Apply one hunting answer to a record that was due.
pub fn apply_hunting(
    record: &mut AlertRecord,
    rows: &[UrlRow],
    exclusions: &Exclusions,
    now: DateTime<Utc>,
) {
    let AlertStage::AwaitingUrls { tries, .. } = record.stage else {
        return;
    };
    let before = record.urls.len() + record.skipped.len();
    let mine = rows.iter().filter(|r| {
        record
            .network_message_ids
            .iter()
            .any(|id| id.eq_ignore_ascii_case(&r.network_message_id))
    });
    let raw: Vec<String> = mine.map(|r| r.url.clone()).collect();
    add_urls(record, raw.iter().map(String::as_str), exclusions);
    let found = record.urls.len() + record.skipped.len() > before;
    let tries = tries + 1;
    record.stage = if found && record.urls.is_empty() {
        // Every URL hunting found was skipped (scheme, length, exclusions):
        // a Ready record without URLs would never be written back.
        AlertStage::NoUrls {
            reason: "every URL advanced hunting found for the alert's e-mail was skipped".into(),
        }
    } else if found || (tries >= MAX_HUNTING_TRIES && !record.urls.is_empty()) {
        AlertStage::Ready
    } else if tries >= MAX_HUNTING_TRIES {
        AlertStage::NoUrls {
            reason: format!("advanced hunting (EmailUrlInfo) had no URL for the alert's e-mail after {tries} tries"),
        }
    } else {
        AlertStage::AwaitingUrls {
            tries,
            next_try: now + Duration::minutes(HUNTING_RETRY_MINUTES),
        }
    };
    crate::attachments::settle(record);
}

/// Where this tick's listing starts: the next page of a listing an earlier
/// tick could not finish (if it points at the configured Graph), else a
/// fresh listing from the cursor. Also the newest update seen so far.
pub fn listing_start(
    graph_base: &str,
    cursor: Option<&Cursor>,
    now: DateTime<Utc>,
) -> (String, Option<DateTime<Utc>>) {
    match cursor.and_then(|c| c.resume.as_deref().map(|r| (r, c.resume_newest))) {
        Some((next, newest)) if next_link_allowed(graph_base, next) => (next.to_string(), newest),
        _ => (alerts_url(graph_base, cursor, now), None),
    }
}

/// The cursor after a tick's listing (`None`: unchanged).
///
/// `unfinished` is the next page when the tick stopped paging early: the
/// listing goes on from there next tick and `since` stays. Otherwise `since`
/// moves forward to the newest update seen, but never past `now − minimum
/// age`, so alerts left for being too young are listed again. Listing with
/// `ge` plus de-duplication by alert id makes the boundary safe.
pub fn cursor_after(
    old: Option<&Cursor>,
    newest_seen: Option<DateTime<Utc>>,
    unfinished: Option<String>,
    now: DateTime<Utc>,
    minimum_alert_age_minutes: u32,
) -> Option<Cursor> {
    let since = old
        .map(|c| c.since)
        .unwrap_or(now - Duration::hours(INITIAL_LOOKBACK_HOURS));
    if let Some(next) = unfinished {
        return Some(Cursor {
            v: SCHEMA,
            since,
            resume: Some(next),
            resume_newest: newest_seen,
        });
    }
    let cap = now - Duration::minutes(i64::from(minimum_alert_age_minutes));
    let moved = newest_seen.map(|n| n.min(cap)).filter(|c| *c > since);
    let was_resuming = old.is_some_and(|c| c.resume.is_some());
    match (moved, old) {
        (Some(candidate), _) => Some(Cursor {
            v: SCHEMA,
            since: candidate,
            resume: None,
            resume_newest: None,
        }),
        (None, Some(_)) if was_resuming => Some(Cursor {
            v: SCHEMA,
            since,
            resume: None,
            resume_newest: None,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Severity;

    fn settings() -> PollerSettings {
        let vars = |k: &str| -> Option<String> {
            match k {
                "tenant_id" => Some("72f988bf-86f1-41af-91ab-2d7cd011db47".into()),
                "client_id" => Some("11111111-2222-3333-4444-555555555555".into()),
                "client_secret" => Some("x".into()),
                "url_exclusion_patterns" => Some("*.intranet.example".into()),
                _ => None,
            }
        };
        PollerSettings::read(&vars).unwrap()
    }

    fn alert(age_min: i64, now: DateTime<Utc>) -> Alert {
        Alert {
            id: "a1".into(),
            incident_id: Some("7".into()),
            title: "Email reported by user as malware or phish".into(),
            severity: Severity::Medium,
            service_source: MDO_SERVICE_SOURCE.into(),
            created: now - Duration::minutes(age_min),
            last_updated: now - Duration::minutes(age_min),
            evidence_urls: vec![],
            network_message_ids: vec!["nm-1".into()],
            expected_url_count: 1,
            is_teams: false,
            comments: vec![],
            messages: vec![],
        }
    }

    #[test]
    fn young_alerts_wait_and_others_await_hunting() {
        let now = Utc::now();
        assert_eq!(intake(&alert(2, now), &settings(), now), Intake::TooYoung);
        let Intake::Take(r) = intake(&alert(10, now), &settings(), now) else {
            panic!()
        };
        assert!(hunting_due(&r, now));
        assert_eq!(hunting_lookback_days(&[&r], 7), 1);
    }

    #[test]
    fn hunting_fills_urls_and_gives_up_after_tries() {
        let now = Utc::now();
        let s = settings();
        let Intake::Take(mut r) = intake(&alert(10, now), &s, now) else {
            panic!()
        };
        let rows = vec![
            UrlRow {
                network_message_id: "NM-1".into(),
                url: "http://Evil.example/x#f".into(),
            },
            UrlRow {
                network_message_id: "nm-1".into(),
                url: "http://a.intranet.example/".into(),
            },
            UrlRow {
                network_message_id: "nm-1".into(),
                url: "javascript:alert(1)".into(),
            },
            UrlRow {
                network_message_id: "other".into(),
                url: "http://not-mine.example/".into(),
            },
        ];
        apply_hunting(&mut r, &rows, &s.url_exclusions, now);
        assert_eq!(r.stage, AlertStage::Ready);
        assert_eq!(r.urls.len(), 1);
        assert_eq!(r.urls[0].url, "http://evil.example/x");
        assert_eq!(r.skipped.len(), 2);

        let Intake::Take(mut r) = intake(&alert(10, now), &s, now) else {
            panic!()
        };
        for i in 0..MAX_HUNTING_TRIES {
            assert!(
                matches!(r.stage, AlertStage::AwaitingUrls { .. }),
                "try {i}"
            );
            apply_hunting(&mut r, &[], &s.url_exclusions, now);
        }
        assert!(matches!(r.stage, AlertStage::NoUrls { .. }));
    }

    #[test]
    fn hunting_that_finds_only_skipped_urls_ends_without_urls() {
        let now = Utc::now();
        let s = settings();
        let Intake::Take(mut r) = intake(&alert(10, now), &s, now) else {
            panic!()
        };
        let rows = vec![UrlRow {
            network_message_id: "nm-1".into(),
            url: "javascript:alert(1)".into(),
        }];
        apply_hunting(&mut r, &rows, &s.url_exclusions, now);
        assert!(r.urls.is_empty());
        assert_eq!(r.skipped.len(), 1);
        assert!(
            matches!(r.stage, AlertStage::NoUrls { .. }),
            "a Ready record without URLs is never written back: {:?}",
            r.stage
        );
    }

    #[test]
    fn cursor_never_passes_young_alerts() {
        let now = Utc::now();
        let c = cursor_after(None, Some(now - Duration::minutes(1)), None, now, 5).unwrap();
        assert_eq!(c.since, now - Duration::minutes(5));
        assert_eq!(
            cursor_after(Some(&c), Some(now - Duration::minutes(30)), None, now, 5),
            None
        );
        assert_eq!(cursor_after(Some(&c), None, None, now, 5), None);
    }

    #[test]
    fn long_listings_go_on_next_tick() {
        let now = Utc::now();
        let g = "https://graph.microsoft.com";
        let next = "https://graph.microsoft.com/v1.0/security/alerts_v2?$skiptoken=abc".to_string();
        let c = cursor_after(
            None,
            Some(now - Duration::minutes(20)),
            Some(next.clone()),
            now,
            5,
        )
        .unwrap();
        assert_eq!(
            c.since,
            now - Duration::hours(INITIAL_LOOKBACK_HOURS),
            "since stays while paging"
        );
        let (url, newest) = listing_start(g, Some(&c), now);
        assert_eq!((url, newest), (next, Some(now - Duration::minutes(20))));
        // Finished: since moves to the newest seen and the resume point goes.
        let done = cursor_after(Some(&c), Some(now - Duration::minutes(10)), None, now, 5).unwrap();
        assert_eq!(
            (done.since, done.resume),
            (now - Duration::minutes(10), None)
        );
        // A resume point elsewhere is not followed.
        let evil = Cursor {
            resume: Some("https://evil.example/x".into()),
            ..c
        };
        assert!(listing_start(g, Some(&evil), now)
            .0
            .starts_with("https://graph.microsoft.com/v1.0/security/alerts_v2?%24filter"));
    }

    #[test]
    fn filter_and_next_link() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let u = alerts_url("https://graph.microsoft.com", None, now);
        assert!(
            u.contains("lastUpdateDateTime+ge+2026-11-30T10%3A00%3A00Z"),
            "{u}"
        );
        assert!(next_link_allowed(
            "https://graph.microsoft.com",
            "https://graph.microsoft.com/v1.0/x?$skiptoken=1"
        ));
        assert!(!next_link_allowed(
            "https://graph.microsoft.com",
            "https://evil.example/v1.0/x"
        ));
    }
}
