mod common;

use common::*;
use serde_json::{json, Value};
use simulators::{Scenario, Simulators};

fn indicator(value: &str, kind: &str, action: &str) -> Value {
    json!({"indicatorValue": value, "indicatorType": kind, "action": action,
           "title": format!("VMRay: {value}"), "description": "from a VMRay analysis",
           "severity": "High", "expirationTime": "2030-01-03T00:00:00Z", "generateAlert": false,
           "application": "VMRay", "rbacGroupNames": []})
}

#[test]
fn single_indicator_validation_and_upsert() {
    let scenario = Scenario::default();
    let sims = Simulators::start(scenario.clone()).unwrap();
    let d = Client::defender(&sims, &scenario);

    let (status, body) = d.json(
        "POST",
        "/api/indicators",
        indicator("evil.example", "DomainName", "Block"),
    );
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(body["indicatorValue"], "evil.example");
    assert!(body["creationTimeDateTimeUtc"].is_string() && body["createdBy"].is_string());

    // Same value + type: updated in place, same id.
    let mut update = indicator("evil.example", "DomainName", "Warn");
    update["title"] = json!("updated");
    let (status, body) = d.json("POST", "/api/indicators", update);
    assert_eq!(status, 200);
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["action"], "Warn");

    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"indicatorValue": "x.example", "indicatorType": "DomainName", "action": "Block", "title": "t"}),
            "MissingRequiredParameter",
        ),
        (
            indicator("x.example", "Domain", "Block"),
            "InvalidRequestBody",
        ),
        (
            indicator("x.example", "DomainName", "AlertAndBlock"),
            "InvalidRequestBody",
        ),
        (
            indicator("x.example", "DomainName", "BlockAndRemediate"),
            "InvalidRequestBody",
        ),
        (
            indicator("x.example", "DomainName", "Audit"),
            "InvalidRequestBody",
        ),
        (indicator("not a url", "Url", "Block"), "InvalidUrl"),
        (
            indicator("http://x.example", "DomainName", "Block"),
            "InvalidDomainName",
        ),
        (
            indicator("10.0.0.0/8", "IpAddress", "Block"),
            "InvalidIpAddress",
        ),
        (indicator("abc", "FileSha256", "Block"), "InvalidHashValue"),
    ];
    for (body, code) in cases {
        let (status, resp) = d.json("POST", "/api/indicators", body.clone());
        assert_eq!(status, 400, "{body}");
        assert_eq!(resp["error"]["code"], code, "{body} → {resp}");
        assert!(resp["error"]["target"].is_string());
    }
    let mut audit = indicator("203.0.113.9", "IpAddress", "Audit");
    audit["generateAlert"] = json!(true);
    assert_eq!(d.json("POST", "/api/indicators", audit).0, 200);
    let sha = "a".repeat(64);
    assert_eq!(
        d.json(
            "POST",
            "/api/indicators",
            indicator(&sha, "FileSha256", "BlockAndRemediate")
        )
        .0,
        200
    );

    let (status, body) = d.get(&format!(
        "/api/indicators?$filter={}",
        enc("indicatorValue eq 'evil.example'")
    ));
    assert_eq!(status, 200);
    assert_eq!(body["value"].as_array().unwrap().len(), 1);
    assert_eq!(body["value"][0]["title"], "updated");
    let (_, body) = d.get(&format!(
        "/api/indicators?$filter={}",
        enc("indicatorValue eq 'evil.example' and indicatorType eq 'Url'")
    ));
    assert_eq!(body["value"].as_array().unwrap().len(), 0);
    let (_, body) = d.get("/api/indicators?$top=2&$skip=1");
    assert_eq!(body["value"].as_array().unwrap().len(), 2);
    assert_eq!(
        d.get(&format!("/api/indicators?$filter={}", enc("bogus gt 3")))
            .0,
        400
    );

    let state = sims.state();
    assert_eq!(state.indicators.len(), 3);
    assert_eq!(state.indicator_write_count("evil.example", "DomainName"), 2);
    let ind = state.indicator("evil.example").unwrap();
    assert_eq!(
        (
            ind.id.as_str(),
            ind.action.as_str(),
            ind.severity.as_deref()
        ),
        (id.as_str(), "Warn", Some("High"))
    );
    assert_eq!(
        ind.expiration_time.as_deref(),
        Some("2030-01-03T00:00:00.000Z")
    );
}

#[test]
fn import_batches_and_the_tenant_cap() {
    let scenario = Scenario {
        indicator_cap: 4,
        ..Default::default()
    };
    let sims = Simulators::start(scenario.clone()).unwrap();
    let d = Client::defender(&sims, &scenario);

    let batch = json!({"Indicators": [
        indicator("a.example", "DomainName", "Block"),
        indicator("http://b.example/x", "Url", "Block"),
        indicator("bad value", "Url", "Block"),
        indicator("198.51.100.1", "IpAddress", "Block"),
    ]});
    let (status, body) = d.json("POST", "/api/indicators/import", batch);
    assert_eq!(status, 200, "{body}");
    let items = body["value"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert_eq!(items[0]["isFailed"], false);
    assert_eq!(items[0]["indicator"], "a.example");
    assert!(items[0]["id"].is_string());
    assert!(items[0]["failureReason"].is_null());
    assert_eq!(items[2]["isFailed"], true);
    assert!(items[2]["failureReason"]
        .as_str()
        .unwrap()
        .contains("InvalidUrl"));
    assert_eq!(sims.state().indicators.len(), 3);

    let too_many: Vec<Value> = (0..501)
        .map(|i| indicator(&format!("h{i}.example"), "DomainName", "Block"))
        .collect();
    let (status, body) = d.json(
        "POST",
        "/api/indicators/import",
        json!({"Indicators": too_many}),
    );
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "MaximumBatchSizeExceeded");
    assert_eq!(
        d.json("POST", "/api/indicators/import", json!({"indicators": []}))
            .0,
        400
    );

    // Cap 4: one more fits, the next fails; updates of existing ones still work.
    let (_, body) = d.json(
        "POST",
        "/api/indicators/import",
        json!({"Indicators": [
            indicator("c.example", "DomainName", "Block"),
            indicator("d.example", "DomainName", "Block"),
            indicator("a.example", "DomainName", "Warn"),
        ]}),
    );
    let items = body["value"].as_array().unwrap();
    assert_eq!(items[0]["isFailed"], false);
    assert_eq!(items[1]["isFailed"], true);
    assert!(items[1]["failureReason"]
        .as_str()
        .unwrap()
        .contains("limit"));
    assert_eq!(items[2]["isFailed"], false);
    let (status, body) = d.json(
        "POST",
        "/api/indicators",
        indicator("e.example", "DomainName", "Block"),
    );
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("15000")
            || body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("maximum 4")
    );

    let state = sims.state();
    assert_eq!(state.indicators.len(), 4);
    assert_eq!(state.indicator_write_count("a.example", "DomainName"), 2);
    assert_eq!(state.indicator_write_count("d.example", "DomainName"), 0);
    assert_eq!(
        state.calls_to("defender", "POST", "/api/indicators/import"),
        4
    );
}

#[test]
fn indicators_need_a_securitycenter_token() {
    let scenario = Scenario::default();
    let sims = Simulators::start(scenario.clone()).unwrap();
    let graph_token = token(&sims, &scenario, GRAPH);
    let url = format!("{}/api/indicators", sims.defender_url());
    for auth in [
        None,
        Some("Bearer nonsense".to_string()),
        Some(format!("Bearer {graph_token}")),
    ] {
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        let (status, body) = send(
            "POST",
            &url,
            &headers,
            Body::Json(indicator("a.example", "DomainName", "Block")),
        );
        assert_eq!(status, 401);
        assert_eq!(body["error"]["code"], "Unauthorized");
    }
    assert!(sims.state().indicators.is_empty());
}
