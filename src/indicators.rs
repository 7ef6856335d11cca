//! Defender indicators from VMRay IOCs: which IOCs, which action, and the
//! import body.

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use crate::config::DefenderSettings;
use crate::model::{IndicatorAction, IndicatorKind, Ioc, Verdict};
use crate::records::IndicatorRecord;

/// `/api/indicators/import` takes at most this many per call.
pub const MAX_IMPORT_BATCH: usize = 500;

/// One indicator to write, with the correction made to its action, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct IndicatorDraft {
    pub ioc: Ioc,
    pub action: IndicatorAction,
    pub generate_alert: bool,
    pub expires: DateTime<Utc>,
    pub body: Value,
    /// Set when the configured action was invalid for the type and replaced.
    pub corrected: Option<String>,
}

/// Where an IOC came from, for the title and description.
pub struct Origin<'a> {
    pub sample_id: u64,
    pub sample_url: Option<&'a str>,
    pub alert_id: &'a str,
}

/// Build the indicator for an IOC, or `None` when its verdict is not chosen.
pub fn draft(
    ioc: &Ioc,
    origin: &Origin,
    s: &DefenderSettings,
    now: DateTime<Utc>,
) -> Option<IndicatorDraft> {
    if !s.indicator_verdicts.contains(&ioc.verdict) {
        return None;
    }
    let configured = s.actions.for_ioc(ioc.verdict, ioc.kind)?;
    let (action, corrected) =
        if configured == IndicatorAction::BlockAndRemediate && !ioc.kind.is_file() {
            (
                IndicatorAction::Block,
                Some(format!(
                    "BlockAndRemediate is invalid for {} indicators; Block used",
                    ioc.kind.as_str()
                )),
            )
        } else {
            (configured, None)
        };
    // Defender requires generateAlert for Audit.
    let generate_alert = s.indicator_generate_alert || action == IndicatorAction::Audit;
    let severity = if ioc.verdict == Verdict::Malicious {
        "High"
    } else {
        "Medium"
    };
    let expires = now + Duration::days(i64::from(s.indicator_expiration_days));
    let title = format!("VMRay: {} {}", ioc.verdict.as_str(), ioc.kind.noun());
    let description =
        format!(
        "VMRay rated this {} {} in sample {}{} while analysing Defender for Office 365 alert {}.",
        ioc.kind.noun(),
        ioc.verdict.as_str(),
        origin.sample_id,
        origin.sample_url.map(|u| format!(" ({})", crate::comment::defang(u))).unwrap_or_default(),
        origin.alert_id
    );
    let body = json!({
        "indicatorValue": ioc.value,
        "indicatorType": ioc.kind.as_str(),
        "action": action.as_str(),
        "title": title,
        "description": description.chars().take(1000).collect::<String>(),
        "expirationTime": expires.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "severity": severity,
        "recommendedActions": "Review the VMRay report of the sample named in the description.",
        "generateAlert": generate_alert,
        "application": "VMRay",
    });
    Some(IndicatorDraft {
        ioc: ioc.clone(),
        action,
        generate_alert,
        expires,
        body,
        corrected,
    })
}

/// Is a fresh write needed, given what we wrote before? Once per expiration
/// period, or sooner when the action changed.
pub fn needs_write(
    prev: Option<&IndicatorRecord>,
    draft: &IndicatorDraft,
    now: DateTime<Utc>,
) -> bool {
    match prev {
        None => true,
        Some(p) => p.expires <= now + Duration::days(1) || p.action != draft.action,
    }
}

/// The import call's body for a batch.
pub fn import_body(batch: &[&IndicatorDraft]) -> Value {
    json!({ "Indicators": batch.iter().map(|d| d.body.clone()).collect::<Vec<_>>() })
}

/// `GET /api/indicators` for one value and type (OData string quoting).
pub fn lookup_query(kind: IndicatorKind, value: &str) -> String {
    let filter = format!(
        "indicatorValue eq '{}' and indicatorType eq '{}'",
        value.replace('\'', "''"),
        kind.as_str()
    );
    let encoded: String = url::form_urlencoded::byte_serialize(filter.as_bytes()).collect();
    format!("/api/indicators?$filter={encoded}")
}

/// Did a look-up find the indicator as this connector writes it (not
/// expiring before `not_before`)?
pub fn lookup_found(body: &[u8], value: &str, not_before: DateTime<Utc>) -> Result<bool, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("indicator list is not JSON: {e}"))?;
    let items = v
        .get("value")
        .and_then(Value::as_array)
        .ok_or("indicator list: field `value` is missing")?;
    Ok(items.iter().any(|i| {
        let same = i
            .get("indicatorValue")
            .and_then(Value::as_str)
            .is_some_and(|x| x.eq_ignore_ascii_case(value));
        let expiry = i
            .get("expirationTime")
            .and_then(Value::as_str)
            .and_then(crate::vmray::parse_time);
        same && expiry.is_none_or(|e| e >= not_before)
    }))
}

/// One item of the import response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportItem {
    pub indicator: String,
    pub failed: bool,
    pub reason: Option<String>,
}

pub fn parse_import_response(body: &[u8]) -> Result<Vec<ImportItem>, String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| format!("indicator import response is not JSON: {e}"))?;
    let items = v
        .get("value")
        .and_then(Value::as_array)
        .ok_or("indicator import response: field `value` is missing")?;
    Ok(items
        .iter()
        .map(|i| ImportItem {
            indicator: i
                .get("indicator")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            failed: i.get("isFailed").and_then(Value::as_bool).unwrap_or(true),
            reason: i
                .get("failureReason")
                .and_then(Value::as_str)
                .map(crate::vmray::clean_text),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(extra: &[(&str, &str)]) -> DefenderSettings {
        let mut m: std::collections::HashMap<String, String> = [
            ("tenant_id", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
            ("client_id", "11111111-2222-3333-4444-555555555555"),
            ("client_secret", "x"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            m.insert(k.to_string(), v.to_string());
        }
        DefenderSettings::read(&move |k: &str| m.get(k).cloned()).unwrap()
    }

    fn origin() -> Origin<'static> {
        Origin {
            sample_id: 42,
            sample_url: Some("http://evil.example/"),
            alert_id: "a1",
        }
    }

    #[test]
    fn actions_per_verdict_and_kind() {
        let s = settings(&[]);
        let now = Utc::now();
        let url = Ioc {
            kind: IndicatorKind::Url,
            value: "http://evil.example/p".into(),
            verdict: Verdict::Malicious,
        };
        let d = draft(&url, &origin(), &s, now).unwrap();
        assert_eq!(d.action, IndicatorAction::Block);
        assert_eq!(d.body["severity"], "High");
        assert_eq!(d.body["indicatorType"], "Url");
        assert_eq!(d.body["generateAlert"], false);
        let sus = Ioc {
            kind: IndicatorKind::FileSha256,
            value: "ab".repeat(32),
            verdict: Verdict::Suspicious,
        };
        let d = draft(&sus, &origin(), &s, now).unwrap();
        assert_eq!(d.action, IndicatorAction::Audit);
        assert_eq!(d.body["generateAlert"], true, "Audit forces generateAlert");
        assert_eq!(d.body["severity"], "Medium");
        let clean = Ioc {
            verdict: Verdict::Clean,
            ..url.clone()
        };
        assert!(draft(&clean, &origin(), &s, now).is_none());
        let only_mal = settings(&[("vmray_sample_verdict", "malicious")]);
        assert!(draft(&sus, &origin(), &only_mal, now).is_none());
    }

    #[test]
    fn lookups_quote_and_match() {
        let q = lookup_query(IndicatorKind::Url, "http://a.example/it's");
        assert!(q.contains("it%27%27s"), "{q}");
        let now = Utc::now();
        let body = json!({"value":[{"indicatorValue":"Evil.Example","expirationTime":(now + Duration::days(29)).to_rfc3339()}]}).to_string();
        assert!(lookup_found(body.as_bytes(), "evil.example", now + Duration::days(28)).unwrap());
        assert!(!lookup_found(body.as_bytes(), "evil.example", now + Duration::days(30)).unwrap());
        assert!(!lookup_found(br#"{"value":[]}"#, "evil.example", now).unwrap());
    }

    #[test]
    fn import_response_items() {
        let items = parse_import_response(br#"{"value":[{"id":"1","indicator":"a","isFailed":false,"failureReason":null},{"indicator":"b","isFailed":true,"failureReason":"InvalidUrl"}]}"#).unwrap();
        assert!(!items[0].failed);
        assert_eq!(items[1].reason.as_deref(), Some("InvalidUrl"));
    }

    #[test]
    fn written_once_per_period() {
        let s = settings(&[]);
        let now = Utc::now();
        let ioc = Ioc {
            kind: IndicatorKind::DomainName,
            value: "evil.example".into(),
            verdict: Verdict::Malicious,
        };
        let d = draft(&ioc, &origin(), &s, now).unwrap();
        let rec = IndicatorRecord {
            v: 1,
            value: ioc.value.clone(),
            kind: ioc.kind,
            action: d.action,
            expires: d.expires,
            written_at: now,
        };
        assert!(!needs_write(Some(&rec), &d, now + Duration::days(10)));
        assert!(needs_write(Some(&rec), &d, now + Duration::days(30)));
        assert!(needs_write(None, &d, now));
    }
}
