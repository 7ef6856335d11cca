//! `analyze_user_reported_attachments`: attachments of user-reported mail go
//! from Graph mail (poller) through the store (chunks) to VMRay as files
//! (vmray component), and their results reach the alert.

mod support;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use simulators::{AttachmentSpec, Fault, FaultRule, Service, SimState};
use support::{scenario, Harness};

const ON: &[(&str, &str)] = &[("analyze_user_reported_attachments", "true")];
const HTML: &str =
    "<html><body><form action=\"http://phish.example/post\">Password:</form></body></html>";

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A user-reported alert naming one mail (by recipient and internetMessageId)
/// and the given URLs (in evidence, so no hunting is needed).
fn reported(id: &str, incident: &str, imid: &str, urls: &[&str]) -> Value {
    json!({"id": id, "incident_id": incident, "severity": "medium", "age_minutes": 10,
           "title": "Email reported by user as malware or phish",
           "evidence": [{"@odata.type": "#microsoft.graph.security.analyzedMessageEvidence",
                         "internetMessageId": imid, "recipientEmailAddress": "alice@contoso.example",
                         "subject": "Invoice", "urls": urls, "urlCount": urls.len()}]})
}

fn mail(imid: &str, attachments: Value) -> Value {
    json!({"network_message_id": format!("nm-{}", imid.len()), "internet_message_id": imid,
           "recipient": "alice@contoso.example", "subject": "Invoice", "attachments": attachments})
}

fn file_submissions(s: &SimState) -> Vec<(String, String, u64)> {
    s.vmray_submissions
        .iter()
        .filter(|x| x.url.is_none())
        .map(|x| {
            (
                x.filename.clone().unwrap_or_default(),
                x.file_sha256.clone().unwrap_or_default(),
                x.file_size.unwrap_or_default(),
            )
        })
        .collect()
}

fn mail_calls(s: &SimState) -> usize {
    s.calls_to("graph", "GET", "/v1.0/users/")
}

fn att_keys(h: &Harness) -> Vec<String> {
    h.app
        .kv_keys("default")
        .into_iter()
        .filter(|k| k.contains(":att:"))
        .collect()
}

#[test]
fn off_by_default_no_mail_calls() {
    let sc = scenario(json!({
        "alerts": [reported("off-1", "960", "<off-1@mail.example>", &["http://off.example/x"])],
        "mails": [mail("<off-1@mail.example>", json!([{"name": "invoice.html", "content_type": "text/html", "text": HTML}]))]
    }));
    let h = Harness::start(sc, &[]);
    h.run_until(5, |s| !s.comment_texts("off-1").is_empty());
    h.round();
    let s = h.sims.state();
    assert_eq!(mail_calls(&s), 0, "no Graph mail call with the setting off");
    assert!(file_submissions(&s).is_empty());
    assert_eq!(s.comment_texts("off-1").len(), 1);
    assert!(att_keys(&h).is_empty());
}

#[test]
fn attachment_and_url_analysed_and_file_reused_by_hash() {
    let sc = scenario(json!({
        "alerts": [reported("rep-1", "961", "<rep-1@mail.example>", &["http://phish.example/login"])],
        "mails": [mail("<rep-1@mail.example>", json!([{"name": "invoice.html", "content_type": "text/html", "text": HTML}]))],
        "vmray": {"urls": {"http://phish.example/login": {"verdict": "malicious"}},
                  "files": {"invoice.html": {"verdict": "malicious", "verdict_reason": "Phishing form",
                                             "threat_names": [{"name": "HTMLPhish", "sources": ["vti"]}]}}}
    }));
    let h = Harness::start(sc, ON);
    h.run_until(6, |s| s.comment_texts("rep-1").len() >= 2);
    let s = h.sims.state();
    let hash = sha256(HTML.as_bytes());
    assert_eq!(
        file_submissions(&s),
        vec![("invoice.html".to_string(), hash.clone(), HTML.len() as u64)],
        "one multipart submission whose bytes hash like the attachment's"
    );
    assert_eq!(s.vmray_submissions.len(), 2, "the URL and the file");
    let file_comment = s
        .comment_texts("rep-1")
        .into_iter()
        .find(|c| c.contains("File: invoice.html"))
        .unwrap_or_else(|| panic!("{:?}", s.comment_texts("rep-1")));
    assert!(
        file_comment.contains(&format!("SHA-256 {hash}")),
        "{file_comment}"
    );
    assert!(
        file_comment.contains("MALICIOUS") && file_comment.contains("HTMLPhish"),
        "{file_comment}"
    );
    assert!(
        s.comment_texts("rep-1")
            .iter()
            .any(|c| c.contains("hxxp://phish[.]example/login")),
        "the URL is analysed too"
    );
    let marker = file_comment.lines().next().unwrap().to_string();

    // Once written back, the poller deletes the stored bytes.
    h.round();
    assert!(att_keys(&h).is_empty(), "{:?}", att_keys(&h));

    // The same attachment in another alert's mail: reused, not submitted again.
    h.sims.add_mail(
        serde_json::from_value(mail(
            "<rep-2@mail.example>",
            json!([{"name": "copy-of-invoice.html", "content_type": "text/html", "text": HTML}]),
        ))
        .unwrap(),
    );
    // Listed after the cursor: just old enough, and the clock moves on.
    let mut rep2 = reported("rep-2", "962", "<rep-2@mail.example>", &[]);
    rep2["age_minutes"] = json!(5);
    h.sims.add_alert(serde_json::from_value(rep2).unwrap());
    h.advance(120);
    h.run_until(6, |s| !s.comment_texts("rep-2").is_empty());
    let s = h.sims.state();
    assert_eq!(file_submissions(&s).len(), 1, "reused by hash");
    let c2 = s.comment_texts("rep-2");
    assert_eq!(c2.len(), 1, "{c2:?}");
    assert_eq!(c2[0].lines().next().unwrap(), marker, "the same sample");
    assert!(c2[0].contains("File: invoice.html"), "{}", c2[0]);
}

#[test]
fn earlier_vmray_analysis_of_the_file_is_found_by_hash() {
    let sc = scenario(json!({
        "alerts": [reported("prior-1", "963", "<prior-1@mail.example>", &[])],
        "mails": [mail("<prior-1@mail.example>", json!([{"name": "old.html", "content_type": "text/html", "text": HTML}]))],
        "vmray": {"prior_submissions": [{"url": "", "age_days": 2,
            "file": {"name": "old.html", "text": HTML}, "sample": {"verdict": "suspicious"}}]}
    }));
    let h = Harness::start(sc, ON);
    h.run_until(6, |s| !s.comment_texts("prior-1").is_empty());
    let s = h.sims.state();
    assert!(
        file_submissions(&s).is_empty(),
        "found by hash, not submitted"
    );
    assert!(s.calls_to("vmray", "GET", "/rest/sample/sha256/") >= 1);
    assert!(s.calls_to("vmray", "GET", "/rest/submission/sample/") >= 1);
    let c = &s.comment_texts("prior-1")[0];
    assert!(
        c.contains("An earlier VMRay analysis of this file was reused") && c.contains("SUSPICIOUS"),
        "{c}"
    );
}

#[test]
fn removed_mail_is_noted_once_without_retrying() {
    // No URL, no network message id (so no hunting): only the attachments count.
    let sc = scenario(json!({
        "alerts": [{"id": "gone-1", "incident_id": "964", "severity": "medium", "age_minutes": 10,
                    "title": "Email reported by user as malware or phish",
                    "evidence": [{"@odata.type": "#microsoft.graph.security.analyzedMessageEvidence",
                                  "internetMessageId": "<gone-1@mail.example>",
                                  "recipientEmailAddress": "alice@contoso.example", "urls": [], "urlCount": 0}]},
                   // Bob has no mailbox the simulator knows: Graph answers 404.
                   {"id": "gone-2", "incident_id": "964", "severity": "medium", "age_minutes": 10,
                    "title": "Email reported by user as malware or phish",
                    "evidence": [{"@odata.type": "#microsoft.graph.security.analyzedMessageEvidence",
                                  "internetMessageId": "<gone-2@mail.example>",
                                  "recipientEmailAddress": "bob@contoso.example",
                                  "urls": ["http://still.example/"], "urlCount": 1}]}],
        "mails": [{"network_message_id": "nm-g1", "internet_message_id": "<gone-1@mail.example>",
                   "recipient": "alice@contoso.example", "removed": true,
                   "attachments": [{"name": "invoice.html", "text": HTML}]}]
    }));
    let h = Harness::start(sc, ON);
    h.run_until(6, |s| {
        !s.comment_texts("gone-1").is_empty() && s.comment_texts("gone-2").len() >= 2
    });
    let calls = mail_calls(&h.sims.state());
    for _ in 0..3 {
        h.round();
        h.advance(600);
    }
    let s = h.sims.state();
    assert_eq!(mail_calls(&s), calls, "no retry loop");
    assert_eq!(calls, 2, "one look-up per mail");
    let c = s.comment_texts("gone-1");
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(
        c[0].starts_with("[VMRay connector] no URL") && c[0].contains("removed or quarantined"),
        "{}",
        c[0]
    );
    let c2 = s.comment_texts("gone-2");
    assert!(
        c2.iter().any(|t| t
            .contains("VMRay could not analyse attachment mail <gone-2@mail.example>")
            && t.contains("removed or quarantined")
            && t.contains("submit the file")),
        "{c2:?}"
    );
    assert!(file_submissions(&s).is_empty());
}

#[test]
fn one_mib_attachment_is_chunked_in_the_store() {
    let big = AttachmentSpec {
        name: "big.bin".into(),
        size: Some(1024 * 1024),
        list_content: false,
        ..AttachmentSpec::default()
    };
    let bytes = big.content();
    let sc = scenario(json!({
        "alerts": [reported("big-1", "965", "<big-1@mail.example>", &[])],
        "mails": [mail("<big-1@mail.example>", json!([serde_json::to_value(&big).unwrap()]))]
    }));
    let h = Harness::start(sc, ON);
    h.tick("poller").unwrap();
    let keys = att_keys(&h);
    let hash = sha256(&bytes);
    let chunks: Vec<&String> = keys
        .iter()
        .filter(|k| k.contains(&format!("{hash}:")))
        .collect();
    assert_eq!(chunks.len(), 4, "{keys:?}");
    assert_eq!(keys.len(), 5, "meta record + 4 chunks: {keys:?}");
    let mut total = 0;
    for k in &keys {
        let v = h.app.kv_get("default", k).unwrap();
        assert!(v.len() <= 256 * 1024, "{k}: {} bytes", v.len());
        if chunks.contains(&k) {
            total += v.len();
        }
    }
    assert_eq!(total, bytes.len());
    assert_eq!(
        h.sims.state().calls_to(
            "graph",
            "GET",
            "/v1.0/users/alice@contoso.example/messages/"
        ),
        2,
        "the listing, then `$value` for the bytes the listing left out"
    );
    h.run_until(6, |s| !s.comment_texts("big-1").is_empty());
    let s = h.sims.state();
    assert_eq!(
        file_submissions(&s),
        vec![("big.bin".to_string(), hash, bytes.len() as u64)]
    );
}

#[test]
fn item_and_reference_attachments_are_skipped_with_a_note() {
    let sc = scenario(json!({
        "alerts": [reported("item-1", "966", "<item-1@mail.example>", &["http://item.example/"])],
        "mails": [mail("<item-1@mail.example>", json!([
            {"name": "Fwd: urgent", "kind": "item"},
            {"name": "Q4 report", "kind": "reference"}]))]
    }));
    let h = Harness::start(sc, ON);
    h.run_until(6, |s| s.comment_texts("item-1").len() >= 3);
    let s = h.sims.state();
    let c = s.comment_texts("item-1");
    assert!(
        c.iter()
            .any(|t| t.contains("attachment Fwd: urgent") && t.contains("itemAttachment")),
        "{c:?}"
    );
    assert!(c.iter().any(|t| t.contains("referenceAttachment")), "{c:?}");
    assert!(
        c.iter().any(|t| t.contains("hxxp://item[.]example/")),
        "{c:?}"
    );
    assert!(file_submissions(&s).is_empty());
    assert_eq!(s.vmray_submissions.len(), 1);
}

#[test]
fn missing_mail_read_is_logged_and_urls_still_processed() {
    let sc = scenario(json!({
        "alerts": [reported("deny-1", "967", "<deny-1@mail.example>", &["http://deny.example/"])],
        "mails": [mail("<deny-1@mail.example>", json!([{"name": "invoice.html", "text": HTML}]))]
    }));
    let h = Harness::start(sc, ON);
    h.sims.inject(
        FaultRule::new(
            Service::Graph,
            Fault::Status {
                code: 403,
                retry_after: None,
            },
        )
        .path("/v1.0/users/")
        .times(100),
    );
    h.run_until(6, |s| s.comment_texts("deny-1").len() >= 2);
    h.round();
    let s = h.sims.state();
    assert_eq!(mail_calls(&s), 1, "a 403 is not retried");
    assert!(file_submissions(&s).is_empty());
    let c = s.comment_texts("deny-1");
    assert!(
        c.iter().any(|t| t.contains("hxxp://deny[.]example/")),
        "{c:?}"
    );
    assert!(c.iter().any(|t| t.contains("Mail.Read")), "{c:?}");
    let errors: Vec<String> = h
        .problems("poller")
        .into_iter()
        .filter(|l| l.contains("attachments_forbidden"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", h.log_text());
    assert!(
        errors[0].contains("\"level\":\"error\"") && errors[0].contains("Mail.Read"),
        "{}",
        errors[0]
    );
}
