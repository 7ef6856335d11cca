//! The fuzz targets' invariants, shared with the stable corpus replay in
//! `tests/fuzz_corpus.rs` (each target calls one of these on its input).
#![allow(dead_code)]

use mdo_vmray::comment::{self, MARKER_PREFIX, MAX_COMMENT_CHARS};
use mdo_vmray::model::Verdict;
use mdo_vmray::records::{IncidentTags, SkippedUrl};
use mdo_vmray::{alert, config::PollerSettings, hunting, poll, tags, urls, vmray};

/// `alert::parse_page` on any bytes, then the poller's intake (`poll::add_urls`)
/// on every alert it accepts.
pub fn alert_parse(data: &[u8]) {
    let Ok(page) = alert::parse_page(data) else {
        return;
    };
    let settings = PollerSettings::read(&|name: &str| match name {
        "tenant_id" => Some("00000000-0000-0000-0000-0000000000aa".to_string()),
        "client_id" => Some("11111111-1111-1111-1111-111111111111".to_string()),
        "client_secret" => Some("fuzz-secret-value".to_string()),
        "minimum_alert_age_minutes" => Some("0".to_string()),
        "url_exclusion_patterns" => Some("*.excluded.example".to_string()),
        _ => None,
    })
    .expect("settings");
    let now = chrono::Utc::now();
    for a in page.alerts.into_iter().flatten() {
        assert!(alert::valid_alert_id(&a.id), "id {:?}", a.id);
        assert!(a.evidence_urls.len() <= alert::MAX_URLS_PER_ALERT);
        assert!(a.network_message_ids.len() <= alert::MAX_MESSAGES_PER_ALERT);
        assert!(a
            .network_message_ids
            .iter()
            .all(|m| hunting::valid_message_id(m)));
        assert!(a.title.chars().count() <= 300);
        if let Some(inc) = &a.incident_id {
            assert!(!inc.is_empty() && inc.len() <= 64, "incident {inc:?}");
        }
        if let poll::Intake::Take(record) = poll::intake(&a, &settings, now) {
            assert!(record.urls.len() <= poll::MAX_URLS_PER_ALERT);
            assert!(record.skipped.len() <= 20);
            for (i, u) in record.urls.iter().enumerate() {
                assert!(u.url.starts_with("http://") || u.url.starts_with("https://"));
                assert_eq!(u.key, urls::url_key(&u.url));
                assert!(
                    !record.urls[..i].iter().any(|o| o.url == u.url),
                    "duplicate"
                );
            }
            for s in &record.skipped {
                assert!(s.url.chars().count() <= 200);
            }
        }
    }
}

/// `urls::normalize`: a normalised URL is http(s), bounded, free of control
/// characters and whitespace, and normalises to itself.
pub fn url_normalize(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    let Ok(n) = urls::normalize(&raw) else {
        return;
    };
    assert!(
        n.url.starts_with("http://") || n.url.starts_with("https://"),
        "{:?}",
        n.url
    );
    assert!(!n.host.is_empty());
    assert!(!n.url.contains('#'), "fragment kept: {:?}", n.url);
    assert!(
        !n.url.chars().any(|c| c.is_control() || c.is_whitespace()),
        "{:?}",
        n.url
    );
    assert!(n.url.len() <= urls::MAX_URL_LEN, "{} bytes", n.url.len());
    let again = urls::normalize(&n.url).expect("a normalised URL normalises");
    assert_eq!(again, n, "not idempotent for {raw:?}");
    assert_eq!(urls::url_key(&n.url).len(), 32);
}

/// `hunting::query_body` with any message ids: only valid ids reach the KQL,
/// each as one well-formed string literal (no quote from the input gets out);
/// `hunting::parse_results` on any bytes.
pub fn hunting(data: &[u8]) {
    let _ = hunting::parse_results(data);
    let text = String::from_utf8_lossy(data);
    let ids: Vec<String> = text.split('\n').map(str::to_string).collect();
    let days = data.first().copied().unwrap_or(0) as u32;
    let body = hunting::query_body(&ids, days);
    let q = body["Query"].as_str().expect("Query");
    let prefix = "EmailUrlInfo | where NetworkMessageId in (";
    let suffix = ") | project NetworkMessageId, Url, UrlDomain, UrlLocation";
    assert!(q.starts_with(prefix) && q.ends_with(suffix), "{q}");
    let list = &q[prefix.len()..q.len() - suffix.len()];
    let expected: Vec<String> = ids
        .iter()
        .filter(|i| hunting::valid_message_id(i))
        .map(|i| format!("\"{i}\""))
        .collect();
    assert_eq!(
        list,
        expected.join(","),
        "the id list is exactly the valid ids, quoted"
    );
    // Every literal is a plain token: no quote, backslash or control character inside.
    for lit in list.split(',').filter(|l| !l.is_empty()) {
        let inner = &lit[1..lit.len() - 1];
        assert!(lit.starts_with('"') && lit.ends_with('"'));
        assert!(!inner.contains(['"', '\\', '\'']) && !inner.chars().any(char::is_control));
    }
    // kql_string escapes anything into one literal.
    let lit = hunting::kql_string(&text);
    let inner = &lit[1..lit.len() - 1];
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => assert!(
                matches!(chars.next(), Some('\\' | '"')),
                "lone backslash in {lit}"
            ),
            '"' => panic!("unescaped quote in {lit}"),
            c => assert!(!c.is_control()),
        }
    }
    assert!(body["Timespan"].as_str().unwrap().starts_with('P'));
}

fn clean(s: &str) {
    assert!(
        s.chars().count() <= vmray::MAX_TEXT,
        "{} chars",
        s.chars().count()
    );
    assert!(!s.chars().any(char::is_control), "{s:?}");
}
/// Every `vmray::parse_*` on any bytes: no panic, and what they return is
/// bounded and free of control characters.
pub fn vmray_parse(data: &[u8]) {
    let now = chrono::Utc::now();
    let _ = vmray::parse_submit(data);
    let _ = vmray::parse_submission_status(data);
    let _ = vmray::newest_submission(data, now - chrono::Duration::days(7));
    if let Ok(s) = vmray::parse_sample(data, now) {
        assert!(s.vti_score.is_none_or(|v| v <= 100));
        s.filename.as_deref().map(clean);
        s.verdict_reason.as_deref().map(clean);
        assert!(s.url.as_ref().is_none_or(|u| u.chars().count() <= 2048));
        assert!(s.webif_url.is_empty() || s.webif_url.starts_with("http"));
        assert!(s.sha256.as_ref().is_none_or(|h| h.len() == 64));
    }
    if let Ok(names) = vmray::parse_threat_names(data) {
        assert!(names.len() <= 50);
        for t in &names {
            clean(&t.name);
            assert!(!t.name.is_empty() && t.sources.len() <= 10);
        }
    }
    if let Ok(cs) = vmray::parse_classifications(data) {
        assert!(cs.len() <= 50);
        cs.iter().for_each(|c| clean(c));
    }
    if let Ok(vtis) = vmray::parse_vtis(data) {
        assert!(vtis.len() <= vmray::MAX_VTIS);
        for v in &vtis {
            assert!(v.score <= 5);
            clean(&v.operation);
            clean(&v.category);
        }
    }
    if let Ok(iocs) = vmray::parse_iocs(data) {
        assert!(iocs.len() <= vmray::MAX_IOCS);
        for i in &iocs {
            assert!(!i.value.is_empty() && i.value.len() <= 2048);
            assert!(!i.value.chars().any(char::is_control));
        }
    }
}

fn check(parts: &[String], marker: &str) {
    assert!(!parts.is_empty());
    for p in parts {
        assert!(
            p.chars().count() <= MAX_COMMENT_CHARS,
            "{} chars",
            p.chars().count()
        );
        assert!(p.starts_with(marker), "{:?}", &p[..p.len().min(80)]);
        assert!(
            !p.chars().any(|c| c.is_control() && c != '\n'),
            "control char"
        );
        assert!(
            !p.lines().skip(1).any(|l| l.starts_with(MARKER_PREFIX)),
            "a second marker line"
        );
    }
}

fn tag_ok(t: &str) -> bool {
    t.chars()
        .all(|c| c.is_alphanumeric() || " -_.:".contains(c))
}
/// Comment and tag rendering from fuzzed VMRay answers and texts: comments are
/// at most 8,000 characters, start with their marker, hold no control
/// character but newlines and no second marker line; tags hold only allowed
/// characters.
pub fn render(data: &[u8]) {
    // Fields separated by 0xFF: [sample json, threat-names json, vtis json, url, reason].
    let mut f = data.split(|b| *b == 0xff);
    let sample = f.next().unwrap_or_default();
    let names = f.next().unwrap_or_default();
    let vtis = f.next().unwrap_or_default();
    let url = String::from_utf8_lossy(f.next().unwrap_or_default()).to_string();
    let reason = String::from_utf8_lossy(f.next().unwrap_or_default()).to_string();

    let now = chrono::Utc::now();
    let base = br#"{"result":"ok","data":{"sample_id":7,"sample_verdict":"malicious"}}"#;
    let mut report = vmray::parse_sample(sample, now)
        .or_else(|_| vmray::parse_sample(base, now))
        .expect("base sample");
    report.threat_names = vmray::parse_threat_names(names).unwrap_or_default();
    report.vtis = vmray::parse_vtis(vtis).unwrap_or_default();
    if !url.is_empty() {
        report.url = Some(url.chars().take(2048).collect());
    }
    let child = report.clone();
    let marker = comment::sample_marker(report.sample_id, Some(9));
    check(
        &comment::render_sample_comment(&marker, &report, &[&child, &child], true),
        &marker,
    );
    let fm = comment::failure_marker("0123456789abcdef0123456789abcdef");
    check(
        &comment::render_failure_comment(&fm, &url, &vmray::clean_text(&reason)),
        &fm,
    );
    let skipped = vec![SkippedUrl {
        url: url.chars().take(200).collect(),
        reason: "URL contains control characters".into(),
    }];
    check(
        &comment::render_no_url_comment("every URL was skipped", &skipped),
        &comment::no_url_marker(),
    );

    let cleaned = tags::clean_tag_text(&reason);
    assert!(cleaned.chars().count() <= 64);
    assert!(
        cleaned
            .chars()
            .all(|c| c.is_alphanumeric() || " -_.".contains(c)),
        "{cleaned:?}"
    );
    assert_eq!(cleaned.trim(), cleaned);
    let names = tags::threat_names(&[&report]);
    let existing: Vec<String> = reason.split(',').map(str::to_string).collect();
    let prev = IncidentTags {
        v: 1,
        verdict: Verdict::Suspicious,
        threat_names: vec![],
    };
    let (merged, own) = tags::merge(&existing, Some(&prev), report.verdict, &names);
    assert!(own.verdict >= Verdict::Suspicious, "never downgraded");
    assert!(own.threat_names.len() <= tags::MAX_THREAT_TAGS);
    for t in &merged {
        let ours =
            t.starts_with(tags::VERDICT_TAG_PREFIX) || t.starts_with(tags::THREAT_TAG_PREFIX);
        if ours && !existing.contains(t) {
            assert!(tag_ok(t), "our tag {t:?}");
        }
    }
    for e in &existing {
        let ours = e.starts_with(tags::VERDICT_TAG_PREFIX);
        assert!(
            ours || merged.contains(e),
            "dropped someone else's tag {e:?}"
        );
    }
}
