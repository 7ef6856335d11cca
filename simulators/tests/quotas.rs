mod common;

use common::*;
use serde_json::{json, Value};
use simulators::{Fault, FaultRule, Quotas, Scenario, Service, Simulators};
use std::time::Duration;

fn hunt() -> Value {
    json!({"Query": "EmailUrlInfo | where NetworkMessageId == \"nm-demo-0001\""})
}

fn retry_after(url: &str, auth: &str, body: Value) -> (u16, Option<String>, Value) {
    let r = ureq::post(url).set("Authorization", auth).send_json(body);
    let resp = match r {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    let status = resp.status();
    let retry = resp.header("retry-after").map(str::to_string);
    (status, retry, resp.into_json().unwrap())
}

#[test]
fn hunting_quota_refuses_the_46th_call_and_frees_after_a_minute() {
    let scenario = Scenario::demo();
    let sims = Simulators::start(scenario.clone()).unwrap();
    sims.set_quotas(Quotas::documented());
    let g = Client::graph(&sims, &scenario);
    let url = format!("{}/v1.0/security/runHuntingQuery", g.base);
    let (status, _, _) = retry_after(&url, &g.auth, hunt());
    assert_eq!(status, 200);
    // The slot of the first call frees 60 s after it; 20.5 s of them pass now.
    sims.clock().advance(Duration::from_millis(20_500));
    for i in 1..45 {
        let (status, _, body) = retry_after(&url, &g.auth, hunt());
        assert_eq!(status, 200, "call {i}: {body}");
    }
    let (status, retry, body) = retry_after(&url, &g.auth, hunt());
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "TooManyRequests");
    let retry: f64 = retry.unwrap().parse().unwrap();
    assert!((30.0..=39.5).contains(&retry), "{retry}");
    // Graph's other calls have their own quota.
    assert_eq!(g.get("/v1.0/security/alerts_v2").0, 200);

    let state = sims.state();
    assert_eq!(state.throttled_count("graph"), 1);
    assert_eq!(state.fault_count("quota"), 1);
    assert_eq!(state.calls.last().unwrap().status, 200);

    // 40 s later the first call has left the window: one more call fits, not two.
    sims.clock().advance(Duration::from_secs(40));
    assert_eq!(retry_after(&url, &g.auth, hunt()).0, 200);
    assert_eq!(retry_after(&url, &g.auth, hunt()).0, 429);
    // After a whole minute every slot is free again.
    sims.clock().advance(Duration::from_secs(60));
    for _ in 0..45 {
        assert_eq!(retry_after(&url, &g.auth, hunt()).0, 200);
    }
    assert_eq!(sims.state().throttled_count("graph"), 2);
}

#[test]
fn graph_quota_of_150_covers_alerts_comments_and_incidents() {
    let scenario = Scenario::demo();
    let sims = Simulators::start(scenario.clone()).unwrap();
    sims.set_quotas(Quotas {
        graph_per_minute: Some(150),
        ..Default::default()
    });
    let g = Client::graph(&sims, &scenario);
    for i in 0..150 {
        let status = match i % 3 {
            0 => g.get("/v1.0/security/alerts_v2").0,
            1 => g.get("/v1.0/security/incidents/101").0,
            _ => {
                g.json(
                    "POST",
                    "/v1.0/security/alerts_v2/da-teams-4/comments",
                    json!({"comment": format!("c{i}")}),
                )
                .0
            }
        };
        assert_eq!(status, 200, "call {i}");
    }
    // The refused comment is not stored.
    let (status, _) = g.json(
        "POST",
        "/v1.0/security/alerts_v2/da-teams-4/comments",
        json!({"comment": "refused"}),
    );
    assert_eq!(status, 429);
    let texts = sims.state().comment_texts("da-teams-4");
    assert_eq!(texts.len(), 50);
    assert!(!texts.contains(&"refused".to_string()));
    // Entra has no quota.
    Client::graph(&sims, &scenario);
    sims.clock().advance_secs(60);
    assert_eq!(g.get("/v1.0/security/alerts_v2").0, 200);
}

#[test]
fn quotas_from_the_scenario_and_over_http() {
    let scenario = Scenario::from_json(
        r#"{"quotas": {"indicator_import_per_minute": 2, "vmray_per_minute": 1}}"#,
    )
    .unwrap();
    assert_eq!(scenario.quotas.indicator_import_per_minute, Some(2));
    assert!(Scenario::from_json(r#"{"quotas": {"graph_per_hour": 1}}"#).is_err());
    let sims = Simulators::start(scenario.clone()).unwrap();

    let d = Client::defender(&sims, &scenario);
    let batch = |v: &str| {
        json!({"Indicators": [{"indicatorValue": v, "indicatorType": "DomainName",
               "action": "Block", "title": "t", "description": "d", "severity": "High"}]})
    };
    assert_eq!(
        d.json("POST", "/api/indicators/import", batch("i1.example"))
            .0,
        200
    );
    assert_eq!(
        d.json("POST", "/api/indicators/import", batch("i2.example"))
            .0,
        200
    );
    let (status, body) = d.json("POST", "/api/indicators/import", batch("i3.example"));
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "TooManyRequests");
    assert!(sims.state().indicator("i3.example").is_none());
    // Single indicators have their own (here unlimited) quota.
    assert_eq!(d.get("/api/indicators").0, 200);

    let v = Client::vmray(&sims, &scenario);
    assert_eq!(v.get("/rest/system_info").0, 200);
    let (status, body) = v.form(
        "/rest/sample/submit",
        &[("sample_url", "http://q.example/")],
    );
    assert_eq!(status, 429);
    assert_eq!(body["result"], "error");
    assert!(body["error_msg"]
        .as_str()
        .unwrap()
        .starts_with("Request was throttled. Expected available in "));
    assert!(sims.state().vmray_submissions.is_empty());
    let state = sims.state();
    assert_eq!(state.throttled_count("defender"), 1);
    assert_eq!(state.throttled_count("vmray"), 1);

    // Lift the VMRay quota over HTTP.
    let (status, _) = send(
        "POST",
        &format!("{}/_sim/quotas", sims.graph_url()),
        &[],
        Body::Json(json!({"vmray_per_minute": null})),
    );
    assert_eq!(status, 200);
    let (_, q) = send(
        "GET",
        &format!("{}/_sim/quotas", sims.vmray_url()),
        &[],
        Body::None,
    );
    assert_eq!(q["vmray_per_minute"], Value::Null);
    assert_eq!(q["indicator_import_per_minute"], Value::Null);
    assert_eq!(
        v.form(
            "/rest/sample/submit",
            &[("sample_url", "http://q.example/")]
        )
        .0,
        200
    );
    let (_, state) = send(
        "GET",
        &format!("{}/_sim/state", sims.vmray_url()),
        &[],
        Body::None,
    );
    assert_eq!(state["throttled"], json!({"defender": 1, "vmray": 1}));
}

#[test]
fn a_faulted_request_takes_no_quota_slot() {
    let scenario = Scenario::demo();
    let sims = Simulators::start(scenario.clone()).unwrap();
    sims.set_quotas(Quotas {
        vmray_per_minute: Some(1),
        ..Default::default()
    });
    let v = Client::vmray(&sims, &scenario);
    sims.inject(FaultRule::new(
        Service::Vmray,
        Fault::Status {
            code: 500,
            retry_after: None,
        },
    ));
    assert_eq!(v.get("/rest/system_info").0, 500);
    sims.inject(FaultRule::new(Service::Vmray, Fault::MissingFields));
    let (status, body) = v.get("/rest/system_info");
    assert_eq!(status, 200);
    assert!(body.get("data").is_none());
    assert_eq!(v.get("/rest/system_info").0, 200);
    assert_eq!(v.get("/rest/system_info").0, 429);
    // With apply_then_fail the request needs a slot: refused by the quota, not faulted.
    sims.inject(
        FaultRule::new(
            Service::Vmray,
            Fault::Status {
                code: 503,
                retry_after: None,
            },
        )
        .apply_then_fail(),
    );
    assert_eq!(v.get("/rest/system_info").0, 429);
    let state = sims.state();
    assert_eq!(state.fault_count("quota"), 2);
    assert_eq!(state.fault_count("status"), 1);
    assert_eq!(state.fault_count("missing_fields"), 1);
}
