//! Graph `alerts_v2`: parsing pages and alerts, and finding URLs in evidence.
//!
//! Every byte is hostile: an alert that cannot be used yields an error naming
//! the field, and the rest of the page goes on.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::model::Severity;

/// Evidence arrays beyond this are cut (an alert with 10,000 evidence items is
/// an attack or a bug, not a phishing mail).
pub const MAX_EVIDENCE: usize = 500;
/// URLs taken from one alert's evidence, at most.
pub const MAX_URLS_PER_ALERT: usize = 200;
/// Network message ids taken from one alert, at most.
pub const MAX_MESSAGES_PER_ALERT: usize = 50;

pub const MDO_SERVICE_SOURCE: &str = "microsoftDefenderForOffice365";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("alert {alert}: field `{field}` {problem}")]
pub struct AlertError {
    /// The alert id when it could be read, else `?`.
    pub alert: String,
    pub field: &'static str,
    pub problem: String,
}

/// What the connector needs from one MDO alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub id: String,
    pub incident_id: Option<String>,
    pub title: String,
    pub severity: Severity,
    pub service_source: String,
    pub created: DateTime<Utc>,
    pub last_updated: DateTime<Utc>,
    /// URLs as found in `urlEvidence` and `analyzedMessageEvidence.urls` (raw).
    pub evidence_urls: Vec<String>,
    /// Network message ids of the mails in the alert (for hunting).
    pub network_message_ids: Vec<String>,
    /// Sum of `urlCount` over message evidence: URLs Graph knows exist.
    pub expected_url_count: u64,
    /// Teams alerts carry no URL that can be had through the APIs.
    pub is_teams: bool,
    /// Texts of the comments already on the alert.
    pub comments: Vec<String>,
    /// Mails of the alert that Graph mail can find (recipient mailbox and
    /// `internetMessageId` of `analyzedMessageEvidence`), for attachments.
    pub messages: Vec<crate::records::MessageRef>,
}

impl Alert {
    /// Should the poller ask advanced hunting for more URLs?
    pub fn needs_hunting(&self) -> bool {
        !self.network_message_ids.is_empty()
            && (self.evidence_urls.len() as u64) < self.expected_url_count.max(1)
    }
}

/// One page of `GET /security/alerts_v2`.
#[derive(Debug)]
pub struct AlertPage {
    pub alerts: Vec<Result<Alert, AlertError>>,
    pub next_link: Option<String>,
}

/// JSON from a service. Invalid UTF-8 (one bad byte in one alert's title)
/// becomes U+FFFD instead of failing the whole body and every alert in it.
pub fn json_lossy(body: &[u8]) -> Result<Value, serde_json::Error> {
    match serde_json::from_slice(body) {
        Err(_) if std::str::from_utf8(body).is_err() => {
            serde_json::from_str(&String::from_utf8_lossy(body))
        }
        other => other,
    }
}

/// Parse one page; fails only when the envelope itself is unusable.
pub fn parse_page(body: &[u8]) -> Result<AlertPage, AlertError> {
    let env_err = |problem: String| AlertError {
        alert: "?".into(),
        field: "value",
        problem,
    };
    let v: Value = json_lossy(body).map_err(|e| env_err(format!("is not JSON: {e}")))?;
    let items = v
        .get("value")
        .and_then(Value::as_array)
        .ok_or_else(|| env_err("is missing or not an array".into()))?;
    let next_link = match v.get("@odata.nextLink") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(AlertError {
                alert: "?".into(),
                field: "@odata.nextLink",
                problem: "is not a string".into(),
            })
        }
    };
    Ok(AlertPage {
        alerts: items.iter().map(parse_alert).collect(),
        next_link,
    })
}

fn str_field<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get(field).and_then(Value::as_str)
}

fn time_field(v: &Value, id: &str, field: &'static str) -> Result<DateTime<Utc>, AlertError> {
    let raw = str_field(v, field).ok_or_else(|| AlertError {
        alert: id.into(),
        field,
        problem: "is missing or not a string".into(),
    })?;
    DateTime::parse_from_rfc3339(raw)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| AlertError {
            alert: id.into(),
            field,
            problem: format!("is not an ISO 8601 date-time ({e})"),
        })
}

/// Alert ids are opaque but bounded: printable ASCII without whitespace.
pub fn valid_alert_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 200 && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Parse one alert object.
pub fn parse_alert(v: &Value) -> Result<Alert, AlertError> {
    let id = match v.get("id") {
        Some(Value::String(s)) if valid_alert_id(s) => s.clone(),
        Some(Value::String(_)) => {
            return Err(AlertError {
                alert: "?".into(),
                field: "id",
                problem: "is empty, too long or not printable ASCII".into(),
            })
        }
        _ => {
            return Err(AlertError {
                alert: "?".into(),
                field: "id",
                problem: "is missing or not a string".into(),
            })
        }
    };
    let incident_id = match v.get("incidentId") {
        Some(Value::String(s))
            if !s.is_empty()
                && s.len() <= 64
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            Some(s.clone())
        }
        Some(Value::Number(n)) => Some(n.to_string()),
        None | Some(Value::Null) => None,
        Some(_) => {
            return Err(AlertError {
                alert: id,
                field: "incidentId",
                problem: "is not a short alphanumeric id".into(),
            })
        }
    };
    let created = time_field(v, &id, "createdDateTime")?;
    let last_updated = time_field(v, &id, "lastUpdateDateTime").unwrap_or(created);
    let severity = str_field(v, "severity")
        .and_then(Severity::parse)
        .unwrap_or(Severity::Unknown);
    let service_source = str_field(v, "serviceSource")
        .unwrap_or_default()
        .to_string();
    let title: String = str_field(v, "title")
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect();

    let mut alert = Alert {
        is_teams: looks_like_teams(&title),
        id,
        incident_id,
        title,
        severity,
        service_source,
        created,
        last_updated,
        evidence_urls: Vec::new(),
        network_message_ids: Vec::new(),
        expected_url_count: 0,
        comments: Vec::new(),
        messages: Vec::new(),
    };
    if let Some(comments) = v.get("comments").and_then(Value::as_array) {
        alert.comments = comments
            .iter()
            .filter_map(|c| str_field(c, "comment"))
            .map(str::to_string)
            .collect();
    }
    match v.get("evidence") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items.iter().take(MAX_EVIDENCE) {
                read_evidence(item, &mut alert);
            }
        }
        Some(_) => {
            return Err(AlertError {
                alert: alert.id,
                field: "evidence",
                problem: "is not an array".into(),
            })
        }
    }
    Ok(alert)
}

fn looks_like_teams(title: &str) -> bool {
    title.to_ascii_lowercase().contains("teams")
}

fn push_unique(list: &mut Vec<String>, value: &str, max: usize) {
    if list.len() < max && !list.iter().any(|x| x == value) {
        list.push(value.to_string());
    }
}

fn read_evidence(item: &Value, alert: &mut Alert) {
    let kind = str_field(item, "@odata.type").unwrap_or_default();
    match kind.rsplit('.').next().unwrap_or_default() {
        "urlEvidence" => {
            if let Some(u) = str_field(item, "url") {
                push_unique(&mut alert.evidence_urls, u, MAX_URLS_PER_ALERT);
            }
        }
        "analyzedMessageEvidence" => {
            if let Some(id) = str_field(item, "networkMessageId") {
                if crate::hunting::valid_message_id(id) {
                    push_unique(&mut alert.network_message_ids, id, MAX_MESSAGES_PER_ALERT);
                }
            }
            if let Some(urls) = item.get("urls").and_then(Value::as_array) {
                for u in urls.iter().filter_map(Value::as_str) {
                    push_unique(&mut alert.evidence_urls, u, MAX_URLS_PER_ALERT);
                }
            }
            if let (Some(mailbox), Some(imid)) = (
                str_field(item, "recipientEmailAddress"),
                str_field(item, "internetMessageId"),
            ) {
                let m = crate::records::MessageRef {
                    mailbox: mailbox.to_string(),
                    internet_message_id: imid.to_string(),
                };
                if crate::attachments::valid_message_ref(&m)
                    && alert.messages.len() < MAX_MESSAGES_PER_ALERT
                    && !alert.messages.contains(&m)
                {
                    alert.messages.push(m);
                }
            }
            if let Some(n) = item.get("urlCount").and_then(Value::as_u64) {
                alert.expected_url_count = alert.expected_url_count.saturating_add(n.min(10_000));
            }
        }
        "teamsMessageEvidence" => alert.is_teams = true,
        _ => {} // unknown evidence kinds are expected; never fail on them
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({"id":"da1","incidentId":"28282","severity":"medium","title":"Email reported by user as malware or phish",
               "serviceSource":"microsoftDefenderForOffice365","createdDateTime":"2026-12-01T10:03:27.72Z",
               "lastUpdateDateTime":"2026-12-01T10:05:00Z","comments":[{"comment":"hello"}],"evidence":[]})
    }

    #[test]
    fn reads_url_and_message_evidence() {
        let mut v = base();
        v["evidence"] = json!([
            {"@odata.type":"#microsoft.graph.security.urlEvidence","url":"http://a.example/"},
            {"@odata.type":"#microsoft.graph.security.analyzedMessageEvidence","networkMessageId":"0c1e7b0a-1111-2222-3333-444455556666",
             "urls":["http://b.example/","http://a.example/"],"urlCount":3},
            {"@odata.type":"#microsoft.graph.security.somethingNew","x":1}
        ]);
        let a = parse_alert(&v).unwrap();
        assert_eq!(
            a.evidence_urls,
            vec!["http://a.example/", "http://b.example/"]
        );
        assert_eq!(
            a.network_message_ids,
            vec!["0c1e7b0a-1111-2222-3333-444455556666"]
        );
        assert_eq!(a.expected_url_count, 3);
        assert!(a.needs_hunting());
        assert_eq!(a.incident_id.as_deref(), Some("28282"));
        assert_eq!(a.comments, vec!["hello"]);
        assert_eq!(a.severity, Severity::Medium);
    }

    #[test]
    fn errors_name_the_field() {
        let mut v = base();
        v.as_object_mut().unwrap().remove("id");
        assert_eq!(parse_alert(&v).unwrap_err().field, "id");
        let mut v = base();
        v["createdDateTime"] = json!(12);
        let e = parse_alert(&v).unwrap_err();
        assert_eq!((e.field, e.alert.as_str()), ("createdDateTime", "da1"));
        let mut v = base();
        v["evidence"] = json!({"not":"array"});
        assert_eq!(parse_alert(&v).unwrap_err().field, "evidence");
    }

    #[test]
    fn page_keeps_good_alerts_next_to_bad_ones() {
        let body = json!({"value":[base(), {"id": 5}], "@odata.nextLink":"https://graph/next"})
            .to_string();
        let page = parse_page(body.as_bytes()).unwrap();
        assert_eq!(page.alerts.len(), 2);
        assert!(page.alerts[0].is_ok());
        assert!(page.alerts[1].is_err());
        assert_eq!(page.next_link.as_deref(), Some("https://graph/next"));
        assert!(parse_page(b"{\"value\":3}").is_err());
        assert!(parse_page(b"<html>").is_err());
    }

    #[test]
    fn one_non_utf8_byte_spoils_only_its_own_field() {
        let mut body = json!({"value":[base()]}).to_string().into_bytes();
        let at = body.windows(5).position(|w| w == b"Email").unwrap();
        body[at] = 0xff; // the title of the only alert
        let page = parse_page(&body).unwrap();
        let a = page.alerts[0].as_ref().unwrap();
        assert!(a.title.starts_with('\u{fffd}'), "{}", a.title);
        let mut body = json!({"value":[base()]}).to_string().into_bytes();
        let at = body.windows(3).position(|w| w == b"da1").unwrap();
        body[at + 1] = 0xc3; // the id: refused, naming the field
        let page = parse_page(&body).unwrap();
        assert_eq!(page.alerts[0].as_ref().unwrap_err().field, "id");
        assert!(parse_page(b"\xff\xfe").is_err());
    }

    #[test]
    fn hostile_ids_and_types_name_the_field() {
        for (field, value) in [
            ("id", json!("")),
            ("id", json!("a b")),
            ("id", json!("x".repeat(201))),
            ("id", json!(12)),
            ("incidentId", json!("1' or '1'='1")),
            ("incidentId", json!(true)),
            ("createdDateTime", json!("yesterday")),
            ("evidence", json!("http://a.example/")),
        ] {
            let mut v = base();
            v[field] = value.clone();
            assert_eq!(parse_alert(&v).unwrap_err().field, field, "{value}");
        }
        let mut v = base();
        v["evidence"] = json!([null, 1, "x", [], {"@odata.type": 7, "url": "http://x.example/"},
            {"@odata.type": "#microsoft.graph.security.urlEvidence", "url": 42}]);
        let a = parse_alert(&v).unwrap();
        assert!(a.evidence_urls.is_empty());
        let mut v = base();
        let many: Vec<Value> = (0..10_000)
            .map(|i| json!({"@odata.type": "#microsoft.graph.security.urlEvidence", "url": format!("http://u{i}.example/")}))
            .collect();
        v["evidence"] = Value::Array(many);
        assert_eq!(
            parse_alert(&v).unwrap().evidence_urls.len(),
            MAX_URLS_PER_ALERT
        );
    }

    #[test]
    fn null_evidence_and_unknown_enums_are_fine() {
        let mut v = base();
        v["evidence"] = Value::Null;
        v["severity"] = json!("catastrophic");
        let a = parse_alert(&v).unwrap();
        assert_eq!(a.severity, Severity::Unknown);
        assert!(!a.needs_hunting());
    }
}
