//! VMRay REST responses: the envelope, submissions, samples and their
//! results. Parsing is lenient where VMRay is inconsistent (scores as strings,
//! `null` verdicts) and strict where a wrong value would mislead (ids).

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;

use crate::model::{IndicatorKind, Ioc, Verdict};
use crate::records::{SampleReport, ThreatName, Vti, SCHEMA};

/// VTIs kept per sample (highest score first).
pub const MAX_VTIS: usize = 10;
/// IOCs kept per sample.
pub const MAX_IOCS: usize = 500;
/// Longest text taken from VMRay for names, reasons and operations.
pub const MAX_TEXT: usize = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VmrayError {
    #[error("VMRay response is not JSON: {0}")]
    NotJson(String),
    #[error("VMRay error: {0}")]
    Api(String),
    #[error("VMRay response field `{field}` {problem}")]
    Field {
        field: &'static str,
        problem: String,
    },
}

fn field(field: &'static str, problem: &str) -> VmrayError {
    VmrayError::Field {
        field,
        problem: problem.to_string(),
    }
}

/// Unwrap `{"result":"ok","data":…}`; `{"result":"error","error_msg":…}` is an error.
pub fn data(body: &[u8]) -> Result<Value, VmrayError> {
    let v: Value =
        crate::alert::json_lossy(body).map_err(|e| VmrayError::NotJson(e.to_string()))?;
    match v.get("result").and_then(Value::as_str) {
        Some("ok") => v
            .get("data")
            .cloned()
            .ok_or_else(|| field("data", "is missing")),
        Some(_) => Err(VmrayError::Api(clean_text(
            v.get("error_msg")
                .and_then(Value::as_str)
                .unwrap_or("unknown error"),
        ))),
        None => Err(field("result", "is missing")),
    }
}

/// Text from VMRay for a comment or a log: control characters replaced, length bounded.
pub fn clean_text(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_TEXT)
        .collect::<String>()
        .trim()
        .to_string()
}

/// A field that must be of one JSON shape when present (absent and `null`
/// are fine): a wrong type means a response we cannot trust, not "unknown".
fn expect(
    v: &Value,
    name: &'static str,
    ok: fn(&Value) -> bool,
    what: &str,
) -> Result<(), VmrayError> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(()),
        Some(x) if ok(x) => Ok(()),
        Some(_) => Err(field(name, &format!("is not {what}"))),
    }
}

fn id_of(v: &Value, name: &'static str) -> Result<u64, VmrayError> {
    match v.get(name) {
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| field(name, "is not a positive integer")),
        Some(Value::String(s)) => s
            .parse()
            .map_err(|_| field(name, "is not a positive integer")),
        _ => Err(field(name, "is missing")),
    }
}

/// VMRay dates: ISO 8601 with or without zone (then UTC).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|n| n.and_utc())
        })
        .or_else(|| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
                .ok()
                .map(|n| n.and_utc())
        })
}

/// What `POST /rest/sample/submit` returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub submission_id: u64,
    pub sample_id: u64,
}

/// Parse a submit response. Per-item `errors` with no submission is an error.
pub fn parse_submit(body: &[u8]) -> Result<Submitted, VmrayError> {
    let d = data(body)?;
    let first = d
        .get("submissions")
        .and_then(Value::as_array)
        .and_then(|s| s.first());
    match first {
        Some(sub) => Ok(Submitted {
            submission_id: id_of(sub, "submission_id")?,
            sample_id: id_of(sub, "submission_sample_id")?,
        }),
        None => {
            let msg = d
                .get("errors")
                .and_then(Value::as_array)
                .and_then(|e| e.first())
                .and_then(|e| e.get("error_msg"))
                .and_then(Value::as_str)
                .unwrap_or("no submission was created");
            Err(VmrayError::Api(clean_text(msg)))
        }
    }
}

/// A submission's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmissionStatus {
    pub submission_id: u64,
    pub sample_id: u64,
    pub finished: bool,
    pub has_errors: bool,
    pub created: Option<DateTime<Utc>>,
    pub url: Option<String>,
}

fn parse_submission(v: &Value) -> Result<SubmissionStatus, VmrayError> {
    expect(v, "submission_finished", Value::is_boolean, "a boolean")?;
    expect(v, "submission_has_errors", Value::is_boolean, "a boolean")?;
    expect(v, "submission_status", Value::is_string, "a string")?;
    expect(v, "submission_created", Value::is_string, "a string")?;
    Ok(SubmissionStatus {
        submission_id: id_of(v, "submission_id")?,
        sample_id: id_of(v, "submission_sample_id")?,
        finished: v
            .get("submission_finished")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        has_errors: v
            .get("submission_has_errors")
            .and_then(Value::as_bool)
            .unwrap_or(false)
            || v.get("submission_status").and_then(Value::as_str) == Some("error"),
        created: v
            .get("submission_created")
            .and_then(Value::as_str)
            .and_then(parse_time),
        url: v
            .get("submission_url")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// `GET /rest/submission/{id}`.
pub fn parse_submission_status(body: &[u8]) -> Result<SubmissionStatus, VmrayError> {
    parse_submission(&data(body)?)
}

/// `GET /rest/submission/search`: the newest finished-or-running submission
/// created at or after `since`, if any (bad items are skipped).
pub fn newest_submission(
    body: &[u8],
    since: DateTime<Utc>,
) -> Result<Option<SubmissionStatus>, VmrayError> {
    let d = data(body)?;
    let items = d.as_array().ok_or_else(|| field("data", "is not a list"))?;
    Ok(items
        .iter()
        .filter_map(|i| parse_submission(i).ok())
        .filter(|s| !s.has_errors && s.created.is_some_and(|c| c >= since))
        .max_by_key(|s| (s.created, s.submission_id)))
}

/// The search query for one URL: `url == "<url>"` with quotes escaped.
pub fn search_query(url: &str) -> String {
    format!(
        "url == \"{}\"",
        url.replace('\\', "\\\\").replace('"', "\\\"")
    )
}

fn opt_text(v: &Value, name: &str) -> Option<String> {
    v.get(name)
        .and_then(Value::as_str)
        .map(clean_text)
        .filter(|s| !s.is_empty())
}

/// Parse `GET /rest/sample/{id}` into a report without threat names, VTIs
/// and IOCs (those come from their own endpoints).
pub fn parse_sample(body: &[u8], fallback_time: DateTime<Utc>) -> Result<SampleReport, VmrayError> {
    let d = data(body)?;
    let sample_id = id_of(&d, "sample_id")?;
    expect(&d, "sample_verdict", Value::is_string, "a string")?;
    expect(&d, "sample_child_sample_ids", Value::is_array, "a list")?;
    expect(
        &d,
        "sample_vti_score",
        |x| x.is_number() || x.is_string(),
        "a number",
    )?;
    expect(&d, "sample_webif_url", Value::is_string, "a string")?;
    let vti_score = match d.get("sample_vti_score") {
        Some(Value::Number(n)) => n.as_u64().map(|n| n.min(100) as u32),
        Some(Value::String(s)) => s.trim().parse::<u32>().ok().map(|n| n.min(100)),
        _ => None,
    };
    let child_ids = d
        .get("sample_child_sample_ids")
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(|i| i.as_u64().or_else(|| i.as_str()?.parse().ok()))
                .collect()
        })
        .unwrap_or_default();
    let webif_url = d
        .get("sample_webif_url")
        .and_then(Value::as_str)
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"));
    Ok(SampleReport {
        v: SCHEMA,
        sample_id,
        url: d
            .get("sample_url")
            .and_then(Value::as_str)
            .map(|u| u.chars().take(2048).collect()),
        filename: opt_text(&d, "sample_filename"),
        sha256: d
            .get("sample_sha256hash")
            .and_then(Value::as_str)
            .filter(|h| is_hex(h, 64))
            .map(str::to_ascii_lowercase),
        verdict: d
            .get("sample_verdict")
            .and_then(Value::as_str)
            .map(Verdict::parse)
            .unwrap_or(Verdict::NotAvailable),
        verdict_reason: opt_text(&d, "sample_verdict_reason_description"),
        vti_score,
        classifications: Vec::new(),
        threat_names: Vec::new(),
        vtis: Vec::new(),
        iocs: Vec::new(),
        webif_url: webif_url
            .map(|u| u.chars().take(512).collect())
            .unwrap_or_default(),
        analysed_at: d
            .get("sample_created")
            .and_then(Value::as_str)
            .and_then(parse_time)
            .unwrap_or(fallback_time),
        child_ids,
        stored_at: None,
    })
}

/// `GET /rest/sample/{id}/threat_names` (the sample's own names).
pub fn parse_threat_names(body: &[u8]) -> Result<Vec<ThreatName>, VmrayError> {
    let d = data(body)?;
    let list = d
        .get("sample_threat_names")
        .and_then(Value::as_array)
        .ok_or_else(|| field("sample_threat_names", "is missing"))?;
    let mut out: Vec<ThreatName> = Vec::new();
    for item in list {
        let Some(name) = opt_text(item, "threat_name") else {
            continue;
        };
        let sources = item
            .get("sources")
            .and_then(Value::as_array)
            .map(|s| {
                s.iter()
                    .filter_map(Value::as_str)
                    .map(clean_text)
                    .take(10)
                    .collect()
            })
            .unwrap_or_default();
        if !out.iter().any(|t| t.name == name) && out.len() < 50 {
            out.push(ThreatName { name, sources });
        }
    }
    Ok(out)
}

/// The classifications in `GET /rest/sample/{id}` itself (the deprecated
/// `sample_classifications` list of names), when the answer has them.
pub fn sample_classifications(body: &[u8]) -> Option<Vec<String>> {
    let d = data(body).ok()?;
    let list = d.get("sample_classifications")?.as_array()?;
    let mut out: Vec<String> = Vec::new();
    for n in list
        .iter()
        .filter_map(Value::as_str)
        .map(clean_text)
        .filter(|n| !n.is_empty())
    {
        if !out.contains(&n) && out.len() < 50 {
            out.push(n);
        }
    }
    Some(out)
}

/// `GET /rest/sample/{id}/classifications`.
pub fn parse_classifications(body: &[u8]) -> Result<Vec<String>, VmrayError> {
    let d = data(body)?;
    let list = d
        .get("sample_classifications")
        .and_then(Value::as_array)
        .ok_or_else(|| field("sample_classifications", "is missing"))?;
    let mut out: Vec<String> = Vec::new();
    for item in list {
        let name = item
            .as_str()
            .map(clean_text)
            .or_else(|| opt_text(item, "classification_name"));
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            if !out.contains(&n) && out.len() < 50 {
                out.push(n);
            }
        }
    }
    Ok(out)
}

/// `GET /rest/sample/{id}/vtis`: highest scores first, at most [`MAX_VTIS`].
pub fn parse_vtis(body: &[u8]) -> Result<Vec<Vti>, VmrayError> {
    let d = data(body)?;
    let list = d
        .get("threat_indicators")
        .and_then(Value::as_array)
        .ok_or_else(|| field("threat_indicators", "is missing"))?;
    let mut out: Vec<Vti> = list
        .iter()
        .filter_map(|i| {
            Some(Vti {
                category: opt_text(i, "category").unwrap_or_default(),
                operation: opt_text(i, "operation")?,
                score: i.get("score").and_then(Value::as_u64).unwrap_or(0).min(5) as u32,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        b.score
            .cmp(&a.score)
            .then_with(|| a.operation.cmp(&b.operation))
    });
    out.truncate(MAX_VTIS);
    Ok(out)
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `GET /rest/sample/{id}/iocs`: every IOC with a verdict, mapped to its own
/// indicator type (URLs stay URLs; files by SHA-256, else SHA-1, else MD5).
pub fn parse_iocs(body: &[u8]) -> Result<Vec<Ioc>, VmrayError> {
    let d = data(body)?;
    let iocs = d.get("iocs").ok_or_else(|| field("iocs", "is missing"))?;
    let mut out: Vec<Ioc> = Vec::new();
    let mut push = |kind: IndicatorKind, value: &str, item: &Value| {
        let verdict = item
            .get("verdict")
            .and_then(Value::as_str)
            .map(Verdict::parse)
            .unwrap_or(Verdict::NotAvailable);
        let value = value.trim();
        if value.is_empty()
            || value.len() > 2048
            || value.chars().any(char::is_control)
            || out.len() >= MAX_IOCS
        {
            return;
        }
        if !out
            .iter()
            .any(|i| i.kind == kind && i.value.eq_ignore_ascii_case(value))
        {
            out.push(Ioc {
                kind,
                value: value.to_string(),
                verdict,
            });
        }
    };
    if !iocs.is_object() {
        return Err(field("iocs", "is not an object"));
    }
    for kind in ["files", "urls", "ips", "domains"] {
        if iocs
            .get(kind)
            .is_some_and(|x| !x.is_array() && !x.is_null())
        {
            return Err(VmrayError::Field {
                field: "iocs",
                problem: format!("`{kind}` is not a list"),
            });
        }
    }
    let list = |name: &str| {
        iocs.get(name)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for f in list("files") {
        let hashes = f
            .get("hashes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for h in hashes {
            let pick = [
                ("sha256_hash", 64, IndicatorKind::FileSha256),
                ("sha1_hash", 40, IndicatorKind::FileSha1),
                ("md5_hash", 32, IndicatorKind::FileMd5),
            ]
            .into_iter()
            .find_map(|(name, len, kind)| {
                h.get(name)
                    .and_then(Value::as_str)
                    .filter(|v| is_hex(v, len))
                    .map(|v| (kind, v.to_ascii_lowercase()))
            });
            if let Some((kind, value)) = pick {
                push(kind, &value, &f);
            }
        }
    }
    for u in list("urls") {
        if let Some(url) = u.get("url").and_then(Value::as_str) {
            push(IndicatorKind::Url, url, &u);
        }
    }
    for i in list("ips") {
        if let Some(ip) = i.get("ip_address").and_then(Value::as_str) {
            if ip.parse::<std::net::IpAddr>().is_ok() {
                push(IndicatorKind::IpAddress, ip, &i);
            }
        }
    }
    for dmn in list("domains") {
        if let Some(name) = dmn.get("domain").and_then(Value::as_str) {
            if name.contains('.')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
            {
                push(IndicatorKind::DomainName, &name.to_ascii_lowercase(), &dmn);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(data: Value) -> Vec<u8> {
        json!({"result":"ok","data":data,"continuation_id":null})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn envelope_errors_are_reported() {
        let e = data(br#"{"result":"error","error_msg":"No such element"}"#).unwrap_err();
        assert_eq!(e, VmrayError::Api("No such element".into()));
        assert!(matches!(data(b"nope"), Err(VmrayError::NotJson(_))));
    }

    #[test]
    fn submit_with_errors_and_no_submission_fails() {
        let ok_body = ok(
            json!({"errors":[],"submissions":[{"submission_id":111,"submission_sample_id":42}]}),
        );
        assert_eq!(
            parse_submit(&ok_body).unwrap(),
            Submitted {
                submission_id: 111,
                sample_id: 42
            }
        );
        let err_body = ok(
            json!({"errors":[{"error_msg":"Submission not stored because no jobs were created"}],"submissions":[]}),
        );
        assert!(
            matches!(parse_submit(&err_body), Err(VmrayError::Api(m)) if m.contains("no jobs"))
        );
    }

    #[test]
    fn sample_is_parsed_leniently() {
        let body = ok(
            json!({"sample_id":42,"sample_verdict":"Malicious","sample_vti_score":"87","sample_url":"http://e.example/",
            "sample_webif_url":"https://eu.cloud.vmray.com/samples/42","sample_created":"2026-12-01T10:05:00","sample_child_sample_ids":[43,"44"],
            "sample_verdict_reason_description":"Phishing\npage"}),
        );
        let s = parse_sample(&body, Utc::now()).unwrap();
        assert_eq!(s.verdict, Verdict::Malicious);
        assert_eq!(s.vti_score, Some(87));
        assert_eq!(s.child_ids, vec![43, 44]);
        assert_eq!(s.verdict_reason.as_deref(), Some("Phishing page"));
        assert_eq!(s.analysed_at.to_rfc3339(), "2026-12-01T10:05:00+00:00");
        assert!(parse_sample(&ok(json!({"sample_id":"x"})), Utc::now()).is_err());
    }

    #[test]
    fn iocs_keep_their_own_types() {
        let body = ok(json!({"status":"finished","iocs":{
            "files":[{"verdict":"malicious","hashes":[{"md5_hash":"d41d8cd98f00b204e9800998ecf8427e","sha256_hash":"E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"}]}],
            "urls":[{"verdict":"suspicious","url":"http://evil.example/p"}],
            "ips":[{"verdict":"malicious","ip_address":"203.0.113.9"},{"verdict":"malicious","ip_address":"not-an-ip"}],
            "domains":[{"verdict":"clean","domain":"Evil.Example"}]}}));
        let iocs = parse_iocs(&body).unwrap();
        assert_eq!(iocs.len(), 4);
        assert_eq!(iocs[0].kind, IndicatorKind::FileSha256);
        assert_eq!(
            iocs[0].value,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            iocs[1],
            Ioc {
                kind: IndicatorKind::Url,
                value: "http://evil.example/p".into(),
                verdict: Verdict::Suspicious
            }
        );
        assert_eq!(iocs[2].kind, IndicatorKind::IpAddress);
        assert_eq!(
            iocs[3],
            Ioc {
                kind: IndicatorKind::DomainName,
                value: "evil.example".into(),
                verdict: Verdict::Clean
            }
        );
    }

    #[test]
    fn classifications_from_the_sample_record() {
        let body = ok(
            json!({"sample_id": 1, "sample_classifications": ["Phishing", "Phishing", 3, "Dropper"]}),
        );
        assert_eq!(
            sample_classifications(&body),
            Some(vec!["Phishing".to_string(), "Dropper".to_string()])
        );
        assert_eq!(sample_classifications(&ok(json!({"sample_id": 1}))), None);
    }

    #[test]
    fn vtis_sorted_and_bounded() {
        let many: Vec<Value> = (0..30)
            .map(|i| json!({"category":"c","operation":format!("op{i}"),"score": i % 6}))
            .collect();
        let vtis = parse_vtis(&ok(json!({"status":"finished","threat_indicators":many}))).unwrap();
        assert_eq!(vtis.len(), MAX_VTIS);
        assert_eq!(vtis[0].score, 5);
    }

    #[test]
    fn newest_matching_submission_wins() {
        let body = ok(json!([
            {"submission_id":1,"submission_sample_id":9,"submission_created":"2026-11-20T00:00:00","submission_finished":true},
            {"submission_id":2,"submission_sample_id":9,"submission_created":"2026-11-28T00:00:00","submission_finished":true},
            {"submission_id":3,"submission_sample_id":9,"submission_created":"2026-11-29T00:00:00","submission_status":"error"}
        ]));
        let since = parse_time("2026-11-25T00:00:00Z").unwrap();
        assert_eq!(
            newest_submission(&body, since)
                .unwrap()
                .unwrap()
                .submission_id,
            2
        );
        let later = parse_time("2026-11-30T00:00:00Z").unwrap();
        assert_eq!(newest_submission(&body, later).unwrap(), None);
        assert_eq!(search_query("http://a/\"x"), "url == \"http://a/\\\"x\"");
    }
}
