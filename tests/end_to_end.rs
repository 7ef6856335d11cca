//! One alert, one URL known only through advanced hunting, all the way
//! through the real components: poll → submit → result → comment, indicator,
//! incident tag; and a second run writes nothing more.

mod support;

use simulators::Scenario;
use support::{written, Harness};

const URL: &str = "http://evil.example/login";
const ALERT: &str = "a-e2e-1";

fn scenario() -> Scenario {
    Scenario::from_json(
        r##"{
        "alerts": [{"id": "a-e2e-1", "incident_id": "501", "title": "Email reported by user as malware or phish",
                    "severity": "medium", "age_minutes": 10,
                    "evidence": [{"@odata.type": "#microsoft.graph.security.analyzedMessageEvidence",
                                  "networkMessageId": "0c1e7b0a-aaaa-bbbb-cccc-000000000001", "urls": [], "urlCount": 1}]}],
        "mails": [{"network_message_id": "0c1e7b0a-aaaa-bbbb-cccc-000000000001",
                   "urls": [{"url": "http://evil.example/login", "location": "Body", "age_hours": 1}]}],
        "incidents": [{"id": "501", "custom_tags": ["Phish campaign 7"]}],
        "vmray": {"analysis_delay_seconds": 0, "urls": {"http://evil.example/login": {
            "verdict": "malicious", "verdict_reason": "Phishing page", "vti_score": 92,
            "classifications": ["Phishing"], "threat_names": [{"name": "Lumma", "sources": ["vti"]}],
            "vtis": [{"category": "Heuristics", "operation": "Detected phishing page", "classifications": ["Phishing"], "score": 4}],
            "iocs": {"urls": [{"url": "http://evil.example/login", "verdict": "malicious"}],
                     "domains": [{"domain": "evil.example", "verdict": "malicious"}],
                     "ips": [{"ip": "203.0.113.9", "verdict": "suspicious"}]}}}}
    }"##,
    )
    .expect("scenario parses")
}

#[test]
fn one_alert_flows_through_and_a_second_run_writes_nothing() {
    let h = Harness::start(scenario(), &[]);
    h.run_until(6, |s| {
        !s.comment_texts(ALERT).is_empty() && !s.incidents["501"].patches.is_empty()
    });
    let s = h.sims.state();

    // One submission, of the URL only hunting knew.
    assert_eq!(s.vmray_submissions.len(), 1, "{:?}", s.vmray_submissions);
    assert_eq!(s.vmray_submissions[0].url.as_deref(), Some(URL));
    assert!(s.vmray_submissions[0].tags.contains(&"MDO".to_string()));
    assert_eq!(
        s.calls_to("graph", "POST", "/v1.0/security/runHuntingQuery"),
        1
    );

    // One comment naming the verdict and the report link.
    let comments = s.comment_texts(ALERT);
    assert_eq!(comments.len(), 1, "{comments:?}");
    let sample_id = s.vmray_submissions[0].sample_id;
    assert!(
        comments[0].starts_with(&format!(
            "[VMRay connector] sample {sample_id} · submission "
        )),
        "{}",
        comments[0]
    );
    assert!(
        comments[0].contains("Verdict: MALICIOUS"),
        "{}",
        comments[0]
    );
    assert!(
        comments[0].contains(&format!("/samples/{sample_id}")),
        "{}",
        comments[0]
    );
    assert!(comments[0].contains("Lumma"));

    // One indicator per malicious/suspicious IOC, with the configured actions.
    let find = |ty: &str, value: &str| {
        s.indicators
            .iter()
            .find(|i| i.indicator_type == ty && i.indicator_value == value)
            .cloned()
    };
    let url_ind = find("Url", URL).expect("URL indicator");
    assert_eq!(
        (url_ind.action.as_str(), url_ind.severity.as_deref()),
        ("Block", Some("High"))
    );
    assert_eq!(
        find("DomainName", "evil.example")
            .expect("domain indicator")
            .action,
        "Block"
    );
    let ip = find("IpAddress", "203.0.113.9").expect("IP indicator");
    assert_eq!(
        (ip.action.as_str(), ip.generate_alert),
        ("Audit", true),
        "suspicious IP: Audit, which forces generateAlert"
    );
    assert_eq!(s.indicators.len(), 3);
    assert!(s.indicators.iter().all(|i| i.description.contains(ALERT)));

    // The incident tagged with the verdict, others' tags kept.
    let tags = &s.incidents["501"].custom_tags;
    assert_eq!(
        tags,
        &vec![
            "Phish campaign 7".to_string(),
            "VMRay: malicious".into(),
            "VMRay threat: Lumma".into()
        ]
    );

    // A second run of ticks writes nothing more.
    let before = written(&s);
    for _ in 0..3 {
        h.round();
    }
    let after = h.sims.state();
    assert_eq!(written(&after), before);
    assert_eq!(after.calls_to("vmray", "POST", "/rest/sample/submit"), 1);
}

#[test]
fn logs_are_structured_with_run_ids_and_carry_no_secret() {
    let h = Harness::start(scenario(), &[]);
    h.run_until(6, |s| !s.comment_texts(ALERT).is_empty());
    for c in support::COMPONENTS {
        let events = h.events(c);
        assert!(
            events.iter().any(|e| e["event"] == "tick_start"),
            "{c} logged no tick_start"
        );
        assert!(
            events
                .iter()
                .all(|e| e["run"].as_str().is_some_and(|r| r.len() == 16)),
            "{c}: every line has a run id"
        );
    }
    let names: Vec<String> = h
        .events("vmray")
        .iter()
        .map(|e| e["event"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        names.contains(&"url_submitted".to_string())
            && names.contains(&"analysis_finished".to_string()),
        "{names:?}"
    );
    let text = h.log_text();
    for secret in [&h.vars["client_secret"], &h.vars["vmray_api_key"]] {
        assert!(!text.contains(secret.as_str()), "a secret reached the logs");
    }
}
