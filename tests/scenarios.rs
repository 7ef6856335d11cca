//! The connector's behaviour, scenario by scenario, asserted on what the
//! simulators recorded.

mod support;

use std::time::Duration;

use serde_json::json;
use simulators::SimState;
use support::{all_commented, mail_alert, scenario, url_alert, Harness};

fn submitted(s: &SimState) -> Vec<String> {
    let mut v: Vec<String> = s
        .vmray_submissions
        .iter()
        .filter_map(|x| x.url.clone())
        .collect();
    v.sort();
    v
}

#[test]
fn alerts_sharing_urls_get_one_submission_per_url() {
    let urls = [
        "http://a.example/1",
        "http://b.example/2",
        "http://c.example/3",
    ];
    let alerts: Vec<_> = (0..6)
        .map(|i| {
            url_alert(
                &format!("share-{i}"),
                &format!("{}", 900 + i % 3),
                &[urls[i % 3], urls[(i + 1) % 3]],
            )
        })
        .collect();
    let h = Harness::start(
        scenario(json!({"alerts": alerts, "vmray": {"default_verdict": "suspicious"}})),
        &[],
    );
    let ids: Vec<String> = (0..6).map(|i| format!("share-{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    h.run_until(5, |s| ids.iter().all(|a| s.comment_texts(a).len() == 2));
    let s = h.sims.state();
    assert_eq!(
        submitted(&s),
        urls.to_vec(),
        "one submission per distinct URL"
    );
    // Every alert carrying a URL names the same sample for it.
    let marker_of = |alert: &str, url: &str| {
        s.comment_texts(alert)
            .into_iter()
            .find(|c| {
                c.contains(
                    &url.replace("http://", "hxxp://")
                        .replace(".example", "[.]example"),
                )
            })
            .map(|c| c.lines().next().unwrap().to_string())
    };
    assert_eq!(marker_of("share-0", urls[1]), marker_of("share-1", urls[1]));
    h.round();
    assert_eq!(h.sims.state().vmray_submissions.len(), 3);
}

#[test]
fn urls_that_reach_hunting_late_are_picked_up() {
    let sc = scenario(json!({
        "alerts": [mail_alert("late-1", "950", "22222222-0000-0000-0000-0000000000a1")],
        "mails": [{"network_message_id": "22222222-0000-0000-0000-0000000000a1",
                   "urls": [{"url": "http://late.example/x", "age_hours": 0.5, "visible_after_minutes": 2}]}],
        "vmray": {"urls": {"http://late.example/x": {"verdict": "malicious"}}}
    }));
    let h = Harness::start(sc, &[]);
    h.run_minutes_until(12, |s| all_commented(s, &["late-1"]));
    let s = h.sims.state();
    assert_eq!(submitted(&s), vec!["http://late.example/x"]);
    assert!(s.comment_texts("late-1")[0].contains("MALICIOUS"));
    assert!(
        s.calls_to("graph", "POST", "/v1.0/security/runHuntingQuery") >= 2,
        "retried on a later tick"
    );
}

#[test]
fn urls_that_never_arrive_are_annotated_once() {
    let sc = scenario(
        json!({"alerts": [mail_alert("never-1", "951", "22222222-0000-0000-0000-0000000000a2")]}),
    );
    let h = Harness::start(sc, &[]);
    h.run_minutes_until(30, |s| all_commented(s, &["never-1"]));
    for _ in 0..3 {
        h.round();
    }
    let s = h.sims.state();
    let c = s.comment_texts("never-1");
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(
        c[0].starts_with("[VMRay connector] no URL") && c[0].contains("after 6 tries"),
        "{}",
        c[0]
    );
    assert_eq!(
        s.calls_to("graph", "POST", "/v1.0/security/runHuntingQuery"),
        6
    );
    assert!(s.vmray_submissions.is_empty());
}

#[test]
fn excluded_and_non_http_urls_are_never_submitted() {
    let sc = scenario(json!({"alerts": [
        url_alert("excl-1", "952", &["javascript:alert(1)", "data:text/html,hi", "https://wiki.contoso.example/page",
                                     "https://eur01.safelinks.protection.outlook.com/?url=http%3A%2F%2Fwrapped.example%2Fa&data=x", "ftp://files.example/x"]),
        url_alert("excl-2", "952", &["file:///etc/passwd", "https://portal.contoso.example/"])
    ]}));
    let h = Harness::start(
        sc,
        &[(
            "url_exclusion_patterns",
            "*.contoso.example, re:^https://docs\\.example/",
        )],
    );
    h.run_until(5, |s| all_commented(s, &["excl-1", "excl-2"]));
    let s = h.sims.state();
    assert_eq!(
        submitted(&s),
        vec!["http://wrapped.example/a"],
        "Safe Links unwrapped; excluded and non-http dropped"
    );
    let c = &s.comment_texts("excl-2")[0];
    assert!(
        c.starts_with("[VMRay connector] no URL") && c.contains("excluded"),
        "{c}"
    );
    assert!(
        c.contains("matches url_exclusion_patterns") && c.contains("is not http or https"),
        "{c}"
    );
}

/// Prior analyses 6 and 8 days old and one from a quarter of an hour ago,
/// under resubmit windows of 7, 1 and 0 days.
#[test]
fn resubmit_window_edges() {
    for (days, expected) in [
        ("7", vec!["http://eight.example/"]),
        ("1", vec!["http://eight.example/", "http://six.example/"]),
        (
            "0",
            vec![
                "http://eight.example/",
                "http://fresh.example/",
                "http://six.example/",
            ],
        ),
    ] {
        let sc = scenario(json!({
            "alerts": [url_alert("win-1", "953", &["http://six.example/", "http://eight.example/", "http://fresh.example/"])],
            "vmray": {"prior_submissions": [
                {"url": "http://six.example/", "age_days": 6.0, "sample": {"verdict": "suspicious"}},
                {"url": "http://eight.example/", "age_days": 8.0, "sample": {"verdict": "malicious"}},
                {"url": "http://fresh.example/", "age_days": 0.01, "sample": {"verdict": "clean"}}]}
        }));
        let h = Harness::start(sc, &[("vmray_resubmit_after_days", days)]);
        h.run_until(5, |s| s.comment_texts("win-1").len() == 3);
        let s = h.sims.state();
        assert_eq!(submitted(&s), expected, "resubmit window {days} days");
        let reused = s
            .comment_texts("win-1")
            .iter()
            .filter(|c| c.contains("earlier VMRay analysis of this URL was reused"))
            .count();
        assert_eq!(reused, 3 - expected.len(), "window {days}");
    }
}

#[test]
fn child_samples_are_reported_with_their_own_iocs() {
    let sha = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";
    let sc = scenario(json!({
        "alerts": [url_alert("child-1", "954", &["http://dropper.example/get"])],
        "vmray": {"urls": {"http://dropper.example/get": {"verdict": "malicious",
            "iocs": {"urls": [{"url": "http://dropper.example/get", "verdict": "malicious"}]},
            "children": [
                {"filename": "stage2.exe", "sha256": sha, "verdict": "malicious",
                 "threat_names": [{"name": "Qakbot", "sources": ["vti", "yara"]}],
                 "iocs": {"files": [{"filename": "stage2.exe", "verdict": "malicious", "sha256": sha}],
                          "ips": [{"ip": "192.0.2.10", "verdict": "malicious"}]}},
                {"url": "http://dropper.example/next", "verdict": "suspicious",
                 "iocs": {"domains": [{"domain": "c2.dropper.example", "verdict": "suspicious"}]}}]}}}
    }));
    let h = Harness::start(sc, &[]);
    h.run_until(5, |s| all_commented(s, &["child-1"]));
    let s = h.sims.state();
    let c = &s.comment_texts("child-1")[0];
    assert!(
        c.contains("Child samples (2)")
            && c.contains("File: stage2.exe")
            && c.contains("hxxp://dropper[.]example/next"),
        "{c}"
    );
    let kinds: Vec<(String, String)> = s
        .indicators
        .iter()
        .map(|i| (i.indicator_type.clone(), i.indicator_value.clone()))
        .collect();
    for (t, v) in [
        ("FileSha256", sha),
        ("IpAddress", "192.0.2.10"),
        ("DomainName", "c2.dropper.example"),
        ("Url", "http://dropper.example/get"),
    ] {
        assert!(
            kinds.contains(&(t.to_string(), v.to_string())),
            "missing {t} {v}: {kinds:?}"
        );
    }
    assert!(s.incidents["954"]
        .custom_tags
        .contains(&"VMRay threat: Qakbot".to_string()));
}

#[test]
fn verdict_mixes_tag_the_most_severe_and_never_downgrade() {
    let sc = scenario(json!({
        "alerts": [
            url_alert("mix-1", "960", &["http://bad.example/", "http://fine.example/"]),
            url_alert("mix-2", "961", &["http://iffy.example/", "http://fine.example/"]),
            url_alert("mix-3", "962", &["http://fine.example/"]),
            url_alert("mix-4", "963", &["http://unknown.example/"])],
        "incidents": [{"id": "960", "custom_tags": ["Tier 2", "VMRay: suspicious"]}],
        "vmray": {"default_verdict": "clean", "urls": {
            "http://bad.example/": {"verdict": "malicious"}, "http://iffy.example/": {"verdict": "suspicious"},
            "http://unknown.example/": {"verdict": "not_available"}}}
    }));
    let h = Harness::start(sc, &[]);
    h.run_until(5, |s| {
        all_commented(s, &["mix-1", "mix-2", "mix-3", "mix-4"])
    });
    let s = h.sims.state();
    assert_eq!(
        s.incidents["960"].custom_tags,
        vec!["Tier 2", "VMRay: malicious"]
    );
    assert_eq!(s.incidents["961"].custom_tags, vec!["VMRay: suspicious"]);
    assert_eq!(s.incidents["962"].custom_tags, vec!["VMRay: clean"]);
    assert!(
        s.incidents["963"].custom_tags.is_empty(),
        "no verdict, no tag"
    );
    // A later clean alert on the malicious incident changes nothing.
    h.sims.add_alert(
        serde_json::from_value(url_alert("mix-5", "960", &["http://fine.example/"])).unwrap(),
    );
    let patches = s.incidents["960"].patches.len();
    h.run_until(4, |s| all_commented(s, &["mix-5"]));
    let s = h.sims.state();
    assert_eq!(
        s.incidents["960"].custom_tags,
        vec!["Tier 2", "VMRay: malicious"]
    );
    assert_eq!(
        s.incidents["960"].patches.len(),
        patches,
        "nothing to change, nothing written"
    );
}

fn ioc_scenario() -> serde_json::Value {
    json!({
        "alerts": [url_alert("ind-1", "970", &["http://mal.example/"]), url_alert("ind-2", "971", &["http://sus.example/"])],
        "vmray": {"urls": {
            "http://mal.example/": {"verdict": "malicious", "iocs": {
                "files": [{"filename": "a.exe", "verdict": "malicious", "sha256": "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"},
                          {"filename": "b.exe", "verdict": "malicious", "sha1": "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8"},
                          {"filename": "c.exe", "verdict": "malicious", "md5": "0cc175b9c0f1b6a831c399e269772661"}],
                "urls": [{"url": "http://mal.example/p", "verdict": "malicious"}],
                "domains": [{"domain": "mal.example", "verdict": "malicious"}],
                "ips": [{"ip": "203.0.113.50", "verdict": "malicious"}]}},
            "http://sus.example/": {"verdict": "suspicious", "iocs": {
                "files": [{"filename": "d.exe", "verdict": "suspicious", "sha256": "3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d"}],
                "urls": [{"url": "http://sus.example/q", "verdict": "suspicious"}],
                "domains": [{"domain": "sus.example", "verdict": "suspicious"}],
                "ips": [{"ip": "2001:db8::50", "verdict": "suspicious"}, {"ip": "198.51.100.99", "verdict": "clean"}]}}}}
    })
}

#[test]
fn every_indicator_action_and_type() {
    for action in ["Allowed", "Audit", "Warn", "Block", "BlockAndRemediate"] {
        let url_ip = if action == "BlockAndRemediate" {
            "Block"
        } else {
            action
        };
        let h = Harness::start(
            scenario(ioc_scenario()),
            &[
                ("indicator_action_malicious_file", action),
                ("indicator_action_suspicious_file", action),
                ("indicator_action_malicious_url_ip", url_ip),
                ("indicator_action_suspicious_url_ip", url_ip),
            ],
        );
        h.run_until(5, |s| all_commented(s, &["ind-1", "ind-2"]));
        let s = h.sims.state();
        let mut got: Vec<(String, String, bool, String)> = s
            .indicators
            .iter()
            .map(|i| {
                (
                    i.indicator_type.clone(),
                    i.action.clone(),
                    i.generate_alert,
                    i.severity.clone().unwrap_or_default(),
                )
            })
            .collect();
        got.sort();
        let audit = |a: &str| a == "Audit";
        let mut want: Vec<(String, String, bool, String)> = [
            ("FileSha256", action, "High"),
            ("FileSha1", action, "High"),
            ("FileMd5", action, "High"),
            ("Url", url_ip, "High"),
            ("DomainName", url_ip, "High"),
            ("IpAddress", url_ip, "High"),
            ("FileSha256", action, "Medium"),
            ("Url", url_ip, "Medium"),
            ("DomainName", url_ip, "Medium"),
            ("IpAddress", url_ip, "Medium"),
        ]
        .iter()
        .map(|(t, a, sev)| (t.to_string(), a.to_string(), audit(a), sev.to_string()))
        .collect();
        want.sort();
        assert_eq!(got, want, "action {action}: the clean IP gets no indicator");
    }
}

#[test]
fn indicator_settings_choose_verdicts_and_alerting() {
    let h = Harness::start(
        scenario(ioc_scenario()),
        &[
            ("vmray_sample_verdict", "suspicious"),
            ("indicator_generate_alert", "true"),
            ("indicator_expiration_days", "3"),
        ],
    );
    h.run_until(5, |s| all_commented(s, &["ind-1", "ind-2"]));
    let s = h.sims.state();
    assert_eq!(s.indicators.len(), 4, "only suspicious IOCs");
    assert!(s
        .indicators
        .iter()
        .all(|i| i.generate_alert && i.severity.as_deref() == Some("Medium")));
    let exp = s.indicators[0].expiration_time.clone().unwrap();
    let exp = chrono::DateTime::parse_from_rfc3339(&exp).unwrap();
    let days = (exp.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_hours();
    assert!((70..=73).contains(&days), "expires in 3 days, got {days} h");

    let off = Harness::start(
        scenario(ioc_scenario()),
        &[
            ("create_indicators", "false"),
            ("add_tags_to_incident", "false"),
        ],
    );
    off.run_until(5, |s| all_commented(s, &["ind-1", "ind-2"]));
    let s = off.sims.state();
    assert!(s.indicators.is_empty() && s.incidents.values().all(|i| i.patches.is_empty()));
}

#[test]
fn bad_settings_stop_the_component_naming_the_variable() {
    let h = Harness::start(
        scenario(ioc_scenario()),
        &[("indicator_action_malicious_url_ip", "BlockAndRemediate")],
    );
    let err = h.tick("defender").unwrap_err();
    assert!(
        err.contains("indicator_action_malicious_url_ip") && err.contains("BlockAndRemediate"),
        "{err}"
    );
    let h = Harness::start(
        scenario(ioc_scenario()),
        &[("vmray_base_url", "http://vmray.example.com")],
    );
    let err = h.tick("vmray").unwrap_err();
    assert!(err.contains("vmray_base_url"), "{err}");
    assert!(h.sims.state().calls.is_empty());
}

#[test]
fn teams_alerts_get_one_no_url_comment() {
    let sc = scenario(
        json!({"alerts": [{"id": "teams-1", "incident_id": "980", "title": "Malicious Teams message detected",
                                         "severity": "high", "age_minutes": 10, "evidence": []}]}),
    );
    let h = Harness::start(sc, &[]);
    h.run_until(3, |s| all_commented(s, &["teams-1"]));
    for _ in 0..3 {
        h.round();
    }
    let c = h.sims.state().comment_texts("teams-1");
    assert_eq!(c.len(), 1);
    assert!(c[0].contains("Teams"), "{}", c[0]);
}

#[test]
fn long_alert_lists_are_paged() {
    let alerts: Vec<_> = (0..8)
        .map(|i| url_alert(&format!("page-{i}"), "990", &["http://paged.example/"]))
        .collect();
    let h = Harness::start(
        scenario(json!({"alert_page_size": 3, "alerts": alerts})),
        &[],
    );
    let ids: Vec<String> = (0..8).map(|i| format!("page-{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    h.run_until(5, |s| all_commented(s, &ids));
    let s = h.sims.state();
    assert!(
        s.calls_to("graph", "GET", "/v1.0/security/alerts_v2") >= 3,
        "followed @odata.nextLink"
    );
    assert_eq!(s.vmray_submissions.len(), 1);
}

#[test]
fn severities_and_minimum_age_are_honoured() {
    let mut young = url_alert("young-1", "991", &["http://young.example/"]);
    young["age_minutes"] = json!(1);
    let mut low = url_alert("low-1", "991", &["http://low.example/"]);
    low["severity"] = json!("low");
    let h = Harness::start(
        scenario(json!({"alerts": [young, low]})),
        &[
            ("alert_severities", "medium,high"),
            ("minimum_alert_age_minutes", "5"),
        ],
    );
    h.round();
    h.round();
    assert!(
        h.sims.state().comments.is_empty(),
        "too young, and a severity not chosen"
    );
    h.run_minutes_until(8, |s| all_commented(s, &["young-1"]));
    assert!(h.sims.state().comment_texts("low-1").is_empty());
}

#[test]
fn analyses_that_take_too_long_are_given_up_and_said_so() {
    let sc = scenario(
        json!({"alerts": [url_alert("slow-1", "992", &["http://slow.example/"])],
                             "vmray": {"urls": {"http://slow.example/": {"verdict": "malicious", "analysis_delay_seconds": 7200}}}}),
    );
    let h = Harness::start(sc, &[("vmray_analysis_timeout_minutes", "5")]);
    h.run_minutes_until(10, |s| all_commented(s, &["slow-1"]));
    let c = &h.sims.state().comment_texts("slow-1")[0];
    assert!(
        c.contains("did not finish within 5 minutes") && c.contains("What you can do"),
        "{c}"
    );
}

#[test]
fn dry_run_reads_everything_and_writes_nothing() {
    let sc = scenario(json!({
        "alerts": [url_alert("dry-1", "993", &["http://known.example/", "http://new.example/"])],
        "vmray": {"prior_submissions": [{"url": "http://known.example/", "age_days": 1.0,
                   "sample": {"verdict": "malicious", "iocs": {"domains": [{"domain": "known.example", "verdict": "malicious"}]}}}]}
    }));
    let h = Harness::start(sc, &[("dry_run", "true")]);
    for _ in 0..4 {
        h.round();
    }
    let s = h.sims.state();
    assert!(s.vmray_submissions.is_empty() && s.comments.is_empty() && s.indicators.is_empty());
    assert!(s.incidents.values().all(|i| i.patches.is_empty()));
    assert!(
        s.calls_to("vmray", "GET", "/rest/submission/search") >= 1,
        "still reads"
    );
    let events: Vec<String> = ["vmray", "defender"]
        .iter()
        .flat_map(|c| h.events(c))
        .filter_map(|e| e["event"].as_str().map(str::to_string))
        .collect();
    for e in [
        "dry_run_would_submit",
        "dry_run_would_comment",
        "dry_run_would_write_indicator",
        "dry_run_would_tag",
    ] {
        assert!(events.iter().any(|x| x == e), "no {e} in {events:?}");
    }
}

#[test]
fn submissions_carry_tags_and_the_alert_id_when_asked() {
    let h = Harness::start(
        scenario(json!({"alerts": [url_alert("tag-1", "994", &["http://tagged.example/"])]})),
        &[
            ("vmray_submission_tags", "MDO,SOC-7"),
            ("add_alert_id_tags", "true"),
        ],
    );
    h.run_until(4, |s| all_commented(s, &["tag-1"]));
    let s = h.sims.state();
    assert_eq!(s.vmray_submissions[0].tags, vec!["MDO", "SOC-7", "tag-1"]);
    let _ = Duration::from_secs(0);
}
