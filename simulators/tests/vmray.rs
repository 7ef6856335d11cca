mod common;

use common::*;
use serde_json::{json, Value};
use simulators::{IocsSpec, PriorSubmissionSpec, SampleSpec, Scenario, Simulators, VmraySpec};

fn vmray_scenario() -> Scenario {
    Scenario::demo()
}

const DROPPER: &str = "http://dl.invoice-portal.example/invoice.zip";
const SHARED: &str = "https://cdn.shared-files.example/doc/8812";

#[test]
fn auth_is_required() {
    let sims = Simulators::start(Scenario::default()).unwrap();
    for auth in [
        None,
        Some("api_key wrong"),
        Some("Bearer sim-vmray-api-key"),
    ] {
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", *a)).collect();
        let (status, body) = send(
            "GET",
            &format!("{}/rest/system_info", sims.vmray_url()),
            &headers,
            Body::None,
        );
        assert_eq!(status, 401);
        assert_eq!(
            body,
            json!({"result": "error", "error_msg": "Authentication failed"})
        );
    }
    let v = Client::vmray(&sims, &Scenario::default());
    let (status, body) = v.get("/rest/system_info");
    assert_eq!(status, 200);
    assert_eq!(body["result"], "ok");
    assert_eq!(body["data"]["api_items_per_request"], 100);
}

#[test]
fn submit_wait_and_read_results_with_children() {
    let mut scenario = vmray_scenario();
    scenario.vmray.analysis_delay_seconds = 120;
    let sims = Simulators::start(scenario.clone()).unwrap();
    let v = Client::vmray(&sims, &scenario);

    let (_, billing) = v.get("/rest/billing_info");
    let before = billing["data"]["verdict_remaining"].as_u64().unwrap();

    let (status, body) = v.form(
        "/rest/sample/submit",
        &[
            ("sample_url", DROPPER),
            ("comment", "alert da-url-click-2"),
            ("tags", "MDO,alert_da-url-click-2"),
            ("user_config", "{\"timeout\":120}"),
            ("max_jobs", "1"),
        ],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "ok");
    assert!(body["continuation_id"].is_null());
    let data = &body["data"];
    assert_eq!(data["errors"], json!([]));
    let sample_id = data["samples"][0]["sample_id"].as_u64().unwrap();
    let submission_id = data["submissions"][0]["submission_id"].as_u64().unwrap();
    assert_eq!(data["samples"][0]["sample_type"], "URL");
    assert_eq!(
        data["samples"][0]["sample_webif_url"],
        format!("{}/samples/{sample_id}", sims.vmray_url())
    );
    assert_eq!(data["submissions"][0]["submission_finished"], false);
    assert_eq!(data["jobs"][0]["job_sample_id"], sample_id);
    assert_eq!(data["jobs"][0]["job_status"], "queued");

    let (_, sub) = v.get(&format!("/rest/submission/{submission_id}"));
    assert_eq!(sub["data"]["submission_finished"], false);
    assert!(sub["data"]["submission_verdict"].is_null());
    let (_, sample) = v.get(&format!("/rest/sample/{sample_id}"));
    assert!(sample["data"]["sample_verdict"].is_null());
    let (_, iocs) = v.get(&format!("/rest/sample/{sample_id}/iocs"));
    assert_eq!(iocs["data"]["status"], "in_progress");
    assert_eq!(
        v.get(&format!("/rest/job/submission/{submission_id}")).1["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        v.get(&format!("/rest/analysis/submission/{submission_id}"))
            .1["data"],
        json!([])
    );

    sims.clock().advance_secs(121);
    let (_, sub) = v.get(&format!("/rest/submission/{submission_id}"));
    let sub = &sub["data"];
    assert_eq!(sub["submission_finished"], true);
    assert_eq!(sub["submission_status"], "success");
    assert_eq!(sub["submission_verdict"], "malicious");
    assert_eq!(sub["submission_sample_id"], sample_id);
    assert_eq!(
        v.get(&format!("/rest/job/submission/{submission_id}")).1["data"],
        json!([])
    );
    let (_, analyses) = v.get(&format!("/rest/analysis/submission/{submission_id}"));
    assert_eq!(analyses["data"][0]["analysis_verdict"], "malicious");
    assert_ne!(analyses["data"][0]["analysis_severity"], "error");

    let (_, sample) = v.get(&format!("/rest/sample/{sample_id}"));
    let s = &sample["data"];
    assert_eq!(s["sample_verdict"], "malicious");
    assert_eq!(s["sample_vti_score"], 85);
    assert_eq!(s["sample_url"], DROPPER);
    assert_eq!(s["sample_sha256hash"].as_str().unwrap().len(), 64);
    assert!(s["sample_verdict_reason_description"].is_string());
    let children = s["sample_child_sample_ids"].as_array().unwrap();
    assert_eq!(children.len(), 1);
    let child_id = children[0].as_u64().unwrap();

    let (_, names) = v.get(&format!("/rest/sample/{sample_id}/threat_names"));
    assert_eq!(
        names["data"]["sample_threat_names"][0],
        json!({"threat_name": "Lumma", "sources": ["vti", "yara"]})
    );
    assert_eq!(
        names["data"]["children_threat_names"][0]["threat_name"],
        "Lumma"
    );
    let (_, classes) = v.get(&format!("/rest/sample/{sample_id}/classifications"));
    assert_eq!(
        classes["data"]["sample_classifications"],
        json!([{"classification_name": "Downloader"}])
    );
    let (_, vtis) = v.get(&format!("/rest/sample/{sample_id}/vtis"));
    assert_eq!(vtis["data"]["status"], "finished");
    assert_eq!(vtis["data"]["threat_indicators"][0]["score"], 4);
    let (_, iocs) = v.get(&format!("/rest/sample/{sample_id}/iocs"));
    assert_eq!(iocs["data"]["status"], "finished");
    assert_eq!(iocs["data"]["iocs"]["urls"][0]["url"], DROPPER);
    assert_eq!(iocs["data"]["iocs"]["urls"][0]["ioc_type"], "url");
    assert_eq!(iocs["data"]["iocs"]["domains"][0]["verdict"], "suspicious");
    let (_, mal) = v.get(&format!("/rest/sample/{sample_id}/iocs/verdict/malicious"));
    assert_eq!(mal["data"]["iocs"]["urls"].as_array().unwrap().len(), 1);
    assert_eq!(mal["data"]["iocs"]["domains"].as_array().unwrap().len(), 0);
    assert_eq!(
        v.get(&format!("/rest/sample/{sample_id}/iocs/verdict/bogus"))
            .0,
        400
    );

    let (_, child) = v.get(&format!("/rest/sample/{child_id}"));
    let c = &child["data"];
    assert_eq!(c["sample_verdict"], "malicious");
    assert_eq!(c["sample_filename"], "invoice.exe");
    assert_ne!(c["sample_type"], "URL");
    assert_eq!(c["sample_parent_sample_ids"], json!([sample_id]));
    let (_, child_iocs) = v.get(&format!("/rest/sample/{child_id}/iocs"));
    let file = &child_iocs["data"]["iocs"]["files"][0];
    assert_eq!(file["ioc_type"], "file");
    assert_eq!(file["verdict"], "malicious");
    assert_eq!(file["hashes"][0]["sha256_hash"], c["sample_sha256hash"]);
    assert_eq!(file["hashes"][0]["md5_hash"].as_str().unwrap().len(), 32);
    let (_, mitre) = v.get(&format!("/rest/sample/{child_id}/mitre_attack"));
    assert_eq!(mitre["data"]["status"], "finished");

    assert_eq!(v.get("/rest/sample/1").0, 404);
    assert_eq!(v.get("/rest/sample/1").1["error_msg"], "No such element");
    assert_eq!(v.get("/rest/submission/1").0, 404);

    let (_, billing) = v.get("/rest/billing_info");
    assert_eq!(
        billing["data"]["verdict_remaining"].as_u64().unwrap(),
        before - 1
    );

    let state = sims.state();
    assert_eq!(state.vmray_submissions.len(), 1);
    let rec = &state.vmray_submissions[0];
    assert_eq!(
        (rec.submission_id, rec.sample_id),
        (submission_id, sample_id)
    );
    assert_eq!(rec.url.as_deref(), Some(DROPPER));
    assert_eq!(rec.tags, vec!["MDO", "alert_da-url-click-2"]);
    assert_eq!(rec.comment.as_deref(), Some("alert da-url-click-2"));
    assert_eq!(rec.user_config.as_deref(), Some("{\"timeout\":120}"));
}

#[test]
fn same_url_reuses_the_sample_and_search_finds_prior_analyses() {
    let sims = Simulators::start(vmray_scenario()).unwrap();
    let v = Client::vmray(&sims, &vmray_scenario());

    let q = |query: &str| v.get(&format!("/rest/submission/search?query={}", enc(query)));
    let (status, prior) = q(&format!("url == \"{SHARED}\""));
    assert_eq!(status, 200, "{prior}");
    let prior = prior["data"].as_array().unwrap().clone();
    assert_eq!(prior.len(), 1);
    assert_eq!(prior[0]["submission_finished"], true);
    assert_eq!(prior[0]["submission_url"], SHARED);
    let created = chrono::NaiveDateTime::parse_from_str(
        prior[0]["submission_created"].as_str().unwrap(),
        "%Y-%m-%dT%H:%M:%S",
    )
    .unwrap();
    let age = chrono::Utc::now().naive_utc() - created;
    assert!(
        age > chrono::Duration::hours(47) && age < chrono::Duration::hours(49),
        "{age}"
    );
    let prior_sample = prior[0]["submission_sample_id"].as_u64().unwrap();
    let (_, s) = v.get(&format!("/rest/sample/{prior_sample}"));
    assert_eq!(s["data"]["sample_verdict"], "suspicious");

    // Multipart submit of the same URL: same sample, new submission.
    let (ct, body) = multipart(&[("sample_url", SHARED), ("tags", "MDO")], None);
    let (status, resp) = v.raw("/rest/sample/submit", &ct, body);
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["data"]["samples"][0]["sample_id"], prior_sample);
    let (_, found) = q(&format!("url == \"{SHARED}\""));
    let found = found["data"].as_array().unwrap();
    assert_eq!(found.len(), 2);
    assert!(
        found[0]["submission_id"].as_u64() > found[1]["submission_id"].as_u64(),
        "newest first"
    );
    let (_, by_sample) = v.get(&format!("/rest/submission/sample/{prior_sample}"));
    assert_eq!(by_sample["data"].as_array().unwrap().len(), 2);

    let (_, like) = q("url like \"%shared-files%\"");
    assert_eq!(like["data"].as_array().unwrap().len(), 2);
    assert_eq!(q("url == \"http://never.example/\"").1["data"], json!([]));
    assert_eq!(q("colour == \"red\"").0, 400);
    assert_eq!(
        v.form("/rest/sample/submit", &[("comment", "no sample")]).0,
        400
    );
    assert_eq!(
        v.form("/rest/sample/submit", &[("sample_url", "not a url")])
            .0,
        400
    );
}

#[test]
fn file_submissions_defaults_and_runtime_specs() {
    let scenario = Scenario {
        vmray: VmraySpec {
            default_verdict: "clean".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let sims = Simulators::start(scenario.clone()).unwrap();
    let v = Client::vmray(&sims, &scenario);

    let (ct, body) = multipart(
        &[("comment", "attachment")],
        Some(("sample_file", "invoice.html", b"<html>hi</html>")),
    );
    let (status, resp) = v.raw("/rest/sample/submit", &ct, body);
    assert_eq!(status, 200, "{resp}");
    let sample = &resp["data"]["samples"][0];
    use sha2::Digest;
    let expected: String = sha2::Sha256::digest(b"<html>hi</html>")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        sample["sample_sha256hash"],
        expected.as_str(),
        "real SHA-256 of the file"
    );
    assert_eq!(sample["sample_filename"], "invoice.html");
    let id = sample["sample_id"].as_u64().unwrap();
    let (_, s) = v.get(&format!("/rest/sample/{id}"));
    assert_eq!(
        s["data"]["sample_verdict"], "clean",
        "delay 0: finished at once"
    );
    let (_, iocs) = v.get(&format!("/rest/sample/{id}/iocs"));
    assert_eq!(iocs["data"]["iocs"]["files"], json!([]));

    // A URL without a spec gets the default verdict; set_url_sample changes it.
    let (_, resp) = v.form(
        "/rest/sample/submit",
        &[("sample_url", "http://later.example/")],
    );
    let id = resp["data"]["samples"][0]["sample_id"].as_u64().unwrap();
    assert_eq!(
        v.get(&format!("/rest/sample/{id}")).1["data"]["sample_verdict"],
        "clean"
    );
    sims.set_url_sample(
        "http://later.example/",
        SampleSpec {
            verdict: Some("suspicious".into()),
            iocs: IocsSpec {
                ips: vec![simulators::IpIocSpec {
                    ip: "203.0.113.9".into(),
                    verdict: "suspicious".into(),
                    domains: vec![],
                }],
                ..Default::default()
            },
            children: vec![SampleSpec {
                url: Some("http://later.example/stage2".into()),
                verdict: Some("malicious".into()),
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    let (_, s) = v.get(&format!("/rest/sample/{id}"));
    assert_eq!(s["data"]["sample_verdict"], "suspicious");
    let child = s["data"]["sample_child_sample_ids"][0].as_u64().unwrap();
    let (_, c) = v.get(&format!("/rest/sample/{child}"));
    assert_eq!(c["data"]["sample_type"], "URL");
    assert_eq!(c["data"]["sample_url"], "http://later.example/stage2");
    assert_eq!(
        v.get(&format!("/rest/sample/{id}/iocs")).1["data"]["iocs"]["ips"][0]["ip_address"],
        "203.0.113.9"
    );
    assert_eq!(sims.state().vmray_submissions.len(), 2);
}

#[test]
fn per_url_delay_and_prior_only_scenarios() {
    let slow = SampleSpec {
        verdict: Some("malicious".into()),
        analysis_delay_seconds: Some(600),
        ..Default::default()
    };
    let scenario = Scenario {
        vmray: VmraySpec {
            urls: [("http://slow.example/".to_string(), slow.clone())]
                .into_iter()
                .collect(),
            prior_submissions: vec![PriorSubmissionSpec {
                url: "http://old.example/".into(),
                age_days: 6.0,
                sample: slow,
                ..Default::default()
            }],
            ..Default::default()
        },
        ..Default::default()
    };
    let sims = Simulators::start(scenario.clone()).unwrap();
    let v = Client::vmray(&sims, &scenario);
    let (_, fast) = v.form(
        "/rest/sample/submit",
        &[("sample_url", "http://fast.example/")],
    );
    let (_, slow) = v.form(
        "/rest/sample/submit",
        &[("sample_url", "http://slow.example/")],
    );
    let sub = |r: &Value| {
        r["data"]["submissions"][0]["submission_id"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(
        v.get(&format!("/rest/submission/{}", sub(&fast))).1["data"]["submission_finished"],
        true
    );
    assert_eq!(
        v.get(&format!("/rest/submission/{}", sub(&slow))).1["data"]["submission_finished"],
        false
    );
    sims.clock().advance_secs(300);
    assert_eq!(
        v.get(&format!("/rest/submission/{}", sub(&slow))).1["data"]["submission_status"],
        "in_progress"
    );
    sims.clock().advance_secs(300);
    assert_eq!(
        v.get(&format!("/rest/submission/{}", sub(&slow))).1["data"]["submission_finished"],
        true
    );
    let (_, old) = v.get(&format!(
        "/rest/submission/search?query={}",
        enc("url == \"http://old.example/\"")
    ));
    assert_eq!(old["data"][0]["submission_finished"], true);
}
