//! Hostile input through the real components: every case of the corpus in
//! `tests/hostile/*.json` is served by the simulators (raw alerts, hunting
//! rows, VMRay samples — non-UTF-8 bytes included), next to a good control
//! alert that must still be processed end to end. Each case must end in its
//! expected outcome (an error naming the field, a skip naming the reason, or a
//! safe rendering), no tick may fail or trap, and every comment, tag,
//! submission and hunting query must stay bounded and clean.
//!
//! Corpus format: docs/hostile-input.md.

mod support;

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use simulators::{Scenario, SimState};
use support::Harness;

const CONTROL_ALERT: &str = "hostile-control-good";
const CONTROL_URL: &str = "http://control-good.example/phish";
const MARKER: &str = "[VMRay connector]";
const MAX_COMMENT_CHARS: usize = 8_000;

/// Expand the corpus' two shorthands: `{{x N:TEXT}}` in a string is TEXT
/// repeated N times; an array item `{"$repeat": N, "item": X}` is N copies of X
/// with `{i}` in its strings replaced by the copy's index.
fn expand(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(expand_str(s)),
        Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                match (
                    item.get("$repeat").and_then(Value::as_u64),
                    item.get("item"),
                ) {
                    (Some(n), Some(x)) => {
                        let x = expand(x);
                        for i in 0..n {
                            out.push(with_index(&x, i));
                        }
                    }
                    _ => out.push(expand(item)),
                }
            }
            Value::Array(out)
        }
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), expand(v))).collect()),
        other => other.clone(),
    }
}

fn expand_str(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{x ") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 4..];
        let end = after.find("}}").expect("unterminated {{x N:TEXT}}");
        let (n, text) = after[..end].split_once(':').expect("{{x N:TEXT}}");
        out.push_str(&text.repeat(n.trim().parse().expect("repeat count")));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

fn with_index(v: &Value, i: u64) -> Value {
    match v {
        Value::String(s) => Value::String(s.replace("{i}", &i.to_string())),
        Value::Array(a) => Value::Array(a.iter().map(|x| with_index(x, i)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), with_index(x, i)))
                .collect(),
        ),
        other => other.clone(),
    }
}

struct Case {
    name: String,
    /// The alert id the case's alert is served with, when it has a usable one.
    alert_id: String,
    expect: Value,
}

fn load(group: &str) -> (Vec<Value>, String) {
    let path = support::root().join(format!("tests/hostile/{group}.json"));
    let text = std::fs::read_to_string(&path).expect("corpus file");
    let v: Value = serde_json::from_str(&text).expect("corpus file is JSON");
    assert_eq!(v["group"], group);
    assert!(v["about"].as_str().is_some_and(|a| !a.is_empty()));
    let cases = v["cases"].as_array().expect("cases").clone();
    for c in &cases {
        assert!(c["name"].as_str().is_some(), "every case has a name: {c}");
        assert!(c["expect"]["outcome"].as_str().is_some(), "{c}");
    }
    (cases, text)
}

fn iso_minutes_ago(m: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(m))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn url_evidence(urls: &[Value]) -> Value {
    Value::Array(
        urls.iter()
            .map(|u| json!({"@odata.type": "#microsoft.graph.security.urlEvidence", "url": u}))
            .collect(),
    )
}

/// A valid raw alert, to be overridden by a case.
fn default_alert(id: &str, n: usize) -> Map<String, Value> {
    let v = json!({
        "id": id,
        "incidentId": format!("{}", 7000 + n),
        "title": format!("Hostile input case {n}"),
        "severity": "medium",
        "status": "new",
        "serviceSource": "microsoftDefenderForOffice365",
        "createdDateTime": iso_minutes_ago(30),
        "lastUpdateDateTime": iso_minutes_ago(30),
        "evidence": [],
    });
    v.as_object().unwrap().clone()
}

/// The scenario for one group, and what each case expects.
fn build(group: &str) -> (Scenario, Vec<Case>) {
    let (cases, _) = load(group);
    let mut alerts = Vec::new();
    let mut mails = Vec::new();
    let mut samples = Map::new();
    let mut out = Vec::new();
    for (n, raw_case) in cases.iter().enumerate() {
        let case = expand(raw_case);
        let id = format!("hostile-{group}-{n}");
        let mut alert = default_alert(&id, n);
        if let Some(urls) = case.get("urls").and_then(Value::as_array) {
            alert.insert("evidence".into(), url_evidence(urls));
        }
        if let Some(ev) = case.get("evidence") {
            alert.insert("evidence".into(), ev.clone());
        }
        if let Some(nm) = case.get("network_message_id") {
            alert.insert(
                "evidence".into(),
                json!([{"@odata.type": "#microsoft.graph.security.analyzedMessageEvidence",
                        "networkMessageId": nm, "urls": [], "urlCount": 1}]),
            );
            if let Some(nm) = nm.as_str() {
                let urls: Vec<Value> = case["mail_urls"]
                    .as_array()
                    .expect("mail_urls")
                    .iter()
                    .map(|u| json!({"url": u, "location": "Body", "age_hours": 1}))
                    .collect();
                mails.push(json!({"network_message_id": nm, "urls": urls}));
            }
        }
        if let Some(sample) = case.get("sample") {
            let url = format!("http://vmray-case-{n}.example/");
            alert.insert("evidence".into(), url_evidence(&[json!(url)]));
            samples.insert(url, sample.clone());
        }
        if let Some(over) = case.get("alert").and_then(Value::as_object) {
            for (k, v) in over {
                alert.insert(k.clone(), v.clone());
            }
        }
        for k in case["remove"].as_array().into_iter().flatten() {
            alert.remove(k.as_str().unwrap());
        }
        let alert_id = alert
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        alerts.push(json!({"raw": Value::Object(alert)}));
        out.push(Case {
            name: case["name"].as_str().unwrap().to_string(),
            alert_id,
            expect: case["expect"].clone(),
        });
    }
    // The good alert, last in the scenario (first on the newest-first page).
    alerts.push(json!({"id": CONTROL_ALERT, "incident_id": "7999", "age_minutes": 30,
        "evidence": [{"@odata.type": "#microsoft.graph.security.urlEvidence", "url": CONTROL_URL}]}));
    samples.insert(
        CONTROL_URL.into(),
        json!({"verdict": "malicious", "threat_names": [{"name": "Lumma", "sources": ["vti"]}]}),
    );
    let scenario = json!({"alerts": alerts, "mails": mails,
        "vmray": {"analysis_delay_seconds": 0, "urls": samples}});
    (
        Scenario::from_json(&scenario.to_string()).expect("scenario parses"),
        out,
    )
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

fn expects_comment(c: &Case) -> bool {
    matches!(c.expect["outcome"].as_str(), Some("analysed" | "no_url"))
}

/// Checks that hold for everything the connector wrote, whatever the input.
fn global_invariants(s: &SimState, problems: &mut Vec<String>) {
    for (alert, comments) in &s.comments {
        for c in comments {
            let text = &c.comment;
            if text.chars().count() > MAX_COMMENT_CHARS {
                problems.push(format!(
                    "{alert}: comment of {} chars",
                    text.chars().count()
                ));
            }
            if !text.starts_with(MARKER) {
                problems.push(format!("{alert}: comment without marker: {:.80}", text));
            }
            if text
                .lines()
                .skip(1)
                .any(|l| l.trim_start().starts_with(MARKER))
            {
                problems.push(format!("{alert}: a second marker line in a comment"));
            }
            if text.chars().any(|ch| ch.is_control() && ch != '\n') {
                problems.push(format!("{alert}: control character in a comment"));
            }
        }
    }
    for inc in s.incidents.values() {
        for t in &inc.custom_tags {
            let ours = t
                .strip_prefix("VMRay threat: ")
                .or(t.strip_prefix("VMRay: "));
            if let Some(rest) = ours {
                if rest.is_empty()
                    || rest.chars().count() > 64
                    || !rest
                        .chars()
                        .all(|ch| ch.is_alphanumeric() || " -_.".contains(ch))
                {
                    problems.push(format!("incident {}: bad tag {t:?}", inc.id));
                }
            }
        }
    }
    for sub in &s.vmray_submissions {
        let Some(u) = &sub.url else { continue };
        let ok = (u.starts_with("http://") || u.starts_with("https://"))
            && u.len() <= 8 * 1024
            && !u.chars().any(|ch| ch.is_control() || ch.is_whitespace());
        if !ok {
            problems.push(format!("bad URL submitted to VMRay: {:.120}", u));
        }
        for t in &sub.tags {
            if t.len() > 255 || t.chars().any(char::is_control) {
                problems.push(format!("bad submission tag {t:?}"));
            }
        }
    }
    for q in &s.hunting_queries {
        if q.chars().any(char::is_control) || q.len() > 64 * 1024 {
            problems.push(format!(
                "hunting query with control chars or oversized: {:.200}",
                q
            ));
        }
    }
    for i in &s.indicators {
        if i.title.chars().any(char::is_control) || i.description.chars().any(char::is_control) {
            problems.push(format!("indicator {} has control chars", i.indicator_value));
        }
    }
}

fn check_case(c: &Case, h: &Harness, s: &SimState, problems: &mut Vec<String>) {
    let mut fail = |why: String| problems.push(format!("[{}] {why}", c.name));
    let e = &c.expect;
    let comments = s.comment_texts(&c.alert_id);
    let all_comments = comments.join("\n");
    match e["outcome"].as_str().unwrap() {
        "unusable" => {
            let field = e["field"].as_str().unwrap();
            let needle = format!("field `{field}`");
            let logged = h.events("poller").iter().any(|ev| {
                ev["event"] == "alert_unusable"
                    && ev["level"] == "warn"
                    && ev["error"].as_str().is_some_and(|x| x.contains(&needle))
            });
            if !logged {
                fail(format!("no alert_unusable warning naming {needle}"));
            }
            if !c.alert_id.is_empty() && !comments.is_empty() {
                fail(format!("an unusable alert got comments: {comments:?}"));
            }
        }
        "ignored" => {
            if !comments.is_empty() {
                fail(format!("an ignored alert got comments: {comments:?}"));
            }
        }
        "no_url" => {
            if !comments
                .iter()
                .any(|x| x.starts_with(&format!("{MARKER} no URL")))
            {
                fail(format!("no \"no URL\" comment: {comments:?}"));
            }
            if let Some(reason) = e["reason"].as_str() {
                if !all_comments.contains(reason) {
                    fail(format!(
                        "the comment does not name {reason:?}: {all_comments:.500}"
                    ));
                }
            }
        }
        "analysed" => {
            if !comments
                .iter()
                .any(|x| x.starts_with(&format!("{MARKER} sample ")))
            {
                fail(format!("no analysis comment: {:.500}", all_comments));
            }
        }
        "any" => {}
        other => panic!("unknown outcome {other}"),
    }
    let submitted: Vec<String> = s
        .vmray_submissions
        .iter()
        .filter_map(|x| x.url.clone())
        .collect();
    for want in strs(&e["submitted"]) {
        if !submitted.contains(&want) {
            fail(format!("{want} was not submitted"));
        }
    }
    for bad in strs(&e["not_submitted"]) {
        if submitted.iter().any(|u| u.contains(&bad)) {
            fail(format!("a URL with {bad:?} was submitted"));
        }
    }
    if let Some(like) = e["max_submitted_like"].as_array() {
        let (needle, max) = (
            like[0].as_str().unwrap(),
            like[1].as_u64().unwrap() as usize,
        );
        let n = submitted.iter().filter(|u| u.contains(needle)).count();
        if n == 0 || n > max {
            fail(format!(
                "{n} URLs like {needle:?} submitted (1..={max} expected)"
            ));
        }
    }
    for want in strs(&e["comment_contains"]) {
        if !all_comments.contains(&want) {
            fail(format!("comment lacks {want:?}: {all_comments:.500}"));
        }
    }
    for bad in strs(&e["comment_excludes"]) {
        if all_comments.contains(&bad) {
            fail(format!("comment contains {:.60}", bad));
        }
    }
    for bad in strs(&e["hunting_excludes"]) {
        if s.hunting_queries.iter().any(|q| q.contains(&bad)) {
            fail(format!("a hunting query contains {:.60}", bad));
        }
    }
    let tags: Vec<String> = s
        .incidents
        .values()
        .flat_map(|i| i.custom_tags.clone())
        .collect();
    for want in strs(&e["tags_include"]) {
        if !tags.contains(&want) {
            fail(format!("no tag {want:?} in {tags:?}"));
        }
    }
    for bad in strs(&e["tags_exclude"]) {
        let inc = (7000
            + c.alert_id
                .rsplit('-')
                .next()
                .unwrap()
                .parse::<usize>()
                .unwrap())
        .to_string();
        if s.custom_tags(&inc).contains(&bad) {
            fail(format!("incident {inc} tagged {bad:?}"));
        }
    }
    for bad in strs(&e["no_indicator_like"]) {
        if let Some(i) = s
            .indicators
            .iter()
            .find(|i| i.indicator_value.contains(&bad))
        {
            fail(format!("indicator {:?} written", i.indicator_value));
        }
    }
}

/// Run one corpus group; returns how many cases it covered.
fn run_group(group: &str) -> usize {
    let (scenario, cases) = build(group);
    let h = Harness::start(scenario, &[]);
    let commented: Vec<String> = cases
        .iter()
        .filter(|c| expects_comment(c))
        .map(|c| c.alert_id.clone())
        .collect();
    // Every round must succeed and no component may trap (Harness::round panics).
    let mut rounds = 0;
    loop {
        rounds += 1;
        h.round();
        let s = h.sims.state();
        let missing: Vec<&String> = commented
            .iter()
            .filter(|a| s.comment_texts(a).is_empty())
            .collect();
        if missing.is_empty() && !s.comment_texts(CONTROL_ALERT).is_empty() {
            break;
        }
        assert!(
            rounds < 15,
            "hostile/{group}.json: after {rounds} rounds still no comment on {missing:?} (control: {})",
            s.comment_texts(CONTROL_ALERT).len()
        );
    }
    h.round(); // and a round after everything settled
    let s = h.sims.state();
    let mut problems = Vec::new();
    // The good alert in the same batch went all the way through.
    let control = s.comment_texts(CONTROL_ALERT);
    if !control
        .iter()
        .any(|c| c.contains("Verdict: MALICIOUS") && c.contains("Lumma"))
    {
        problems.push(format!("control alert: {control:?}"));
    }
    if !s
        .custom_tags("7999")
        .contains(&"VMRay: malicious".to_string())
    {
        problems.push("control incident not tagged".into());
    }
    if !s
        .vmray_submissions
        .iter()
        .any(|x| x.url.as_deref() == Some(CONTROL_URL))
    {
        problems.push("control URL not submitted".into());
    }
    global_invariants(&s, &mut problems);
    for c in &cases {
        check_case(c, &h, &s, &mut problems);
    }
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for c in &cases {
        *outcomes
            .entry(c.expect["outcome"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    println!(
        "hostile/{group}.json: {} cases in {rounds} rounds, outcomes {outcomes:?}, {} submissions, {} comments, {} hunting queries",
        cases.len(),
        s.vmray_submissions.len(),
        s.comments.values().map(Vec::len).sum::<usize>(),
        s.hunting_queries.len()
    );
    for c in &cases {
        println!("  covered: {}", c.name);
    }
    assert!(
        problems.is_empty(),
        "hostile/{group}.json:\n{}",
        problems.join("\n")
    );
    cases.len()
}

#[test]
fn hostile_alerts() {
    run_group("alerts");
}

#[test]
fn hostile_urls() {
    run_group("urls");
}

#[test]
fn hostile_hunting() {
    run_group("hunting");
}

#[test]
fn hostile_vmray_results() {
    run_group("vmray");
}

#[test]
fn corpus_has_at_least_sixty_named_cases() {
    let mut n = 0;
    let mut names = std::collections::HashSet::new();
    for entry in std::fs::read_dir(support::root().join("tests/hostile")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "json") {
            let group = p.file_stem().unwrap().to_str().unwrap().to_string();
            let (cases, _) = load(&group);
            for c in &cases {
                assert!(
                    names.insert(c["name"].as_str().unwrap().to_string()),
                    "duplicate case name {}",
                    c["name"]
                );
            }
            n += cases.len();
        }
    }
    println!("hostile corpus: {n} cases");
    assert!(n >= 60, "only {n} hostile cases");
}
