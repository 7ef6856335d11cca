mod common;

use common::*;
use serde_json::{json, Value};
use simulators::{AlertSpec, MailSpec, MailUrlSpec, Scenario, Simulators};

fn alert(id: &str, incident: &str, age: i64, severity: &str) -> AlertSpec {
    AlertSpec {
        id: id.into(),
        incident_id: incident.into(),
        severity: severity.into(),
        age_minutes: age,
        evidence: vec![
            json!({"@odata.type": "#microsoft.graph.security.analyzedMessageEvidence",
                              "networkMessageId": format!("nm-{id}"), "urls": [], "urlCount": 1}),
        ],
        ..Default::default()
    }
}

fn token_form<'a>(s: &'a Scenario, secret: &'a str, scope: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("client_id", s.client_id.as_str()),
        ("client_secret", secret),
        ("grant_type", "client_credentials"),
        ("scope", scope),
    ]
}

#[test]
fn tokens_and_their_failures() {
    let scenario = Scenario::default();
    let sims = Simulators::start(scenario.clone()).unwrap();
    let url = format!(
        "{}/{}/oauth2/v2.0/token",
        sims.entra_url(),
        scenario.tenant_id
    );

    let (status, body) = send(
        "POST",
        &url,
        &[],
        Body::Form(&token_form(&scenario, &scenario.client_secret, GRAPH)),
    );
    assert_eq!(status, 200);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    let t1 = body["access_token"].as_str().unwrap().to_string();
    let (_, body) = send(
        "POST",
        &url,
        &[],
        Body::Form(&token_form(&scenario, &scenario.client_secret, GRAPH)),
    );
    assert_ne!(
        body["access_token"].as_str().unwrap(),
        t1,
        "tokens are random"
    );

    let (status, body) = send(
        "POST",
        &url,
        &[],
        Body::Form(&token_form(&scenario, "wrong", GRAPH)),
    );
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(body["error_codes"], json!([7000215]));
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .starts_with("AADSTS7000215"));
    assert!(body["trace_id"].is_string() && body["correlation_id"].is_string());

    let (status, body) = send(
        "POST",
        &url,
        &[],
        Body::Form(&token_form(
            &scenario,
            &scenario.client_secret,
            "https://graph.microsoft.com/SecurityAlert.Read.All",
        )),
    );
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_scope");

    let other_tenant = format!(
        "{}/99999999-0000-0000-0000-000000000000/oauth2/v2.0/token",
        sims.entra_url()
    );
    let (status, body) = send(
        "POST",
        &other_tenant,
        &[],
        Body::Form(&token_form(&scenario, &scenario.client_secret, GRAPH)),
    );
    assert_eq!(status, 400);
    assert_eq!(body["error_codes"], json!([90002]));

    let mut wrong_client = token_form(&scenario, &scenario.client_secret, GRAPH);
    wrong_client[0].1 = "22222222-2222-2222-2222-222222222222";
    let (status, body) = send("POST", &url, &[], Body::Form(&wrong_client));
    assert_eq!(status, 400);
    assert_eq!(body["error"], "unauthorized_client");

    // A Graph token works on Graph, not on Defender, and expires with the clock.
    let (status, _) = send(
        "GET",
        &format!("{}/v1.0/security/alerts_v2", sims.graph_url()),
        &[("Authorization", &format!("Bearer {t1}"))],
        Body::None,
    );
    assert_eq!(status, 200);
    let (status, body) = send(
        "GET",
        &format!("{}/api/indicators", sims.defender_url()),
        &[("Authorization", &format!("Bearer {t1}"))],
        Body::None,
    );
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "Unauthorized");
    assert!(body["error"]["target"].is_string());
    sims.clock().advance_secs(3600);
    let (status, body) = send(
        "GET",
        &format!("{}/v1.0/security/alerts_v2", sims.graph_url()),
        &[("Authorization", &format!("Bearer {t1}"))],
        Body::None,
    );
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    assert!(body["error"]["innerError"]["request-id"].is_string());
    let (status, _) = send(
        "GET",
        &format!("{}/v1.0/security/alerts_v2", sims.graph_url()),
        &[],
        Body::None,
    );
    assert_eq!(status, 401);

    let state = sims.state();
    assert_eq!(state.calls_to("entra", "POST", "/"), 6);
    assert_eq!(
        state.calls_to("graph", "GET", "/v1.0/security/alerts_v2"),
        3
    );
    assert!(state
        .calls
        .iter()
        .any(|c| c.status == 401 && c.path == "/api/indicators"));
}

#[test]
fn token_lifetime_is_configurable() {
    let scenario = Scenario {
        token_lifetime_seconds: 60,
        ..Default::default()
    };
    let sims = Simulators::start(scenario.clone()).unwrap();
    let g = Client::graph(&sims, &scenario);
    assert_eq!(g.get("/v1.0/security/alerts_v2").0, 200);
    sims.clock().advance_secs(61);
    assert_eq!(g.get("/v1.0/security/alerts_v2").0, 401);
}

fn all_ids(g: &Client, first: &str) -> Vec<String> {
    let mut url = first.to_string();
    let mut ids = vec![];
    loop {
        let (status, body) = g.get(&url);
        assert_eq!(status, 200, "{body}");
        ids.extend(
            body["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["id"].as_str().unwrap().to_string()),
        );
        match body["@odata.nextLink"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    ids.sort();
    ids
}

#[test]
fn alerts_filter_and_paging() {
    let mut alerts: Vec<AlertSpec> = (1..=5)
        .map(|i| alert(&format!("a{i}"), "201", i * 10, "medium"))
        .collect();
    alerts.push(alert("h1", "202", 5, "high"));
    alerts.push(AlertSpec {
        service_source: "microsoftDefenderForEndpoint".into(),
        ..alert("mde", "203", 5, "high")
    });
    let scenario = Scenario {
        alerts,
        alert_page_size: 2,
        ..Default::default()
    };
    let sims = Simulators::start(scenario.clone()).unwrap();
    let g = Client::graph(&sims, &scenario);

    let filter = enc("serviceSource eq 'microsoftDefenderForOffice365'");
    let mut url = format!("/v1.0/security/alerts_v2?$filter={filter}&$top=1000");
    let mut ids = vec![];
    let mut pages = 0;
    loop {
        let (status, body) = g.get(&url);
        assert_eq!(status, 200, "{body}");
        pages += 1;
        for a in body["value"].as_array().unwrap() {
            assert_eq!(a["@odata.type"], "#microsoft.graph.security.alert");
            assert_eq!(a["serviceSource"], "microsoftDefenderForOffice365");
            assert!(a["comments"].is_array() && a["evidence"].is_array());
            ids.push(a["id"].as_str().unwrap().to_string());
        }
        match body["@odata.nextLink"].as_str() {
            Some(next) => {
                assert!(next.starts_with(&sims.graph_url()) && next.contains("$skiptoken="));
                url = next.to_string();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    ids.sort();
    assert_eq!(ids, vec!["a1", "a2", "a3", "a4", "a5", "h1"]);

    // Time filter: only alerts younger than 25 minutes; combined with severity.
    let since = (chrono::Utc::now() - chrono::Duration::minutes(25))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let filter = enc(&format!(
        "serviceSource eq 'microsoftDefenderForOffice365' and lastUpdateDateTime gt {since}"
    ));
    let got = all_ids(
        &g,
        &format!("/v1.0/security/alerts_v2?$filter={filter}&$top=50"),
    );
    assert_eq!(got, vec!["a1", "a2", "h1"]);
    let filter = enc(&format!(
        "createdDateTime ge {since} and severity eq 'high'"
    ));
    let got = all_ids(&g, &format!("/v1.0/security/alerts_v2?$filter={filter}"));
    assert_eq!(got, vec!["h1", "mde"]);

    // gt with an alert's own timestamp excludes that alert.
    let (_, one) = g.get("/v1.0/security/alerts_v2/a1");
    let stamp = one["lastUpdateDateTime"].as_str().unwrap().to_string();
    let filter = enc(&format!("lastUpdateDateTime gt {stamp}"));
    let got = all_ids(&g, &format!("/v1.0/security/alerts_v2?$filter={filter}"));
    assert!(!got.contains(&"a1".to_string()) && got.contains(&"h1".to_string()));
    // $top below the page size makes smaller pages.
    let (_, body) = g.get("/v1.0/security/alerts_v2?$top=1");
    assert_eq!(body["value"].as_array().unwrap().len(), 1);
    assert!(body["@odata.nextLink"].is_string());

    for bad in [
        "title eq 'x'",
        "severity eq 'catastrophic'",
        "contains(title,'x')",
        "lastUpdateDateTime gt '2026-01-01T00:00:00Z'",
        "severity eq 'high' or status eq 'new'",
    ] {
        let (status, body) = g.get(&format!("/v1.0/security/alerts_v2?$filter={}", enc(bad)));
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["error"]["code"], "BadRequest");
    }
    let (status, _) = g.get("/v1.0/security/alerts_v2?$skiptoken=bogus");
    assert_eq!(status, 400);
    let (status, body) = g.get("/v1.0/security/alerts_v2/nope");
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "NotFound");
}

#[test]
fn comments_and_incidents() {
    let scenario = Scenario {
        alerts: vec![
            alert("a1", "301", 10, "medium"),
            alert("a2", "301", 10, "low"),
        ],
        incidents: vec![simulators::IncidentSpec {
            id: "301".into(),
            custom_tags: vec!["existing-tag".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let sims = Simulators::start(scenario.clone()).unwrap();
    let g = Client::graph(&sims, &scenario);
    let body = json!({"@odata.type": "microsoft.graph.security.alertComment", "comment": "VMRay sample 4711 · submission 9001\nmalicious"});
    let (status, resp) = g.json("POST", "/v1.0/security/alerts_v2/a1/comments", body);
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["value"].as_array().unwrap().len(), 1);
    let (status, resp) = g.json(
        "POST",
        "/v1.0/security/alerts_v2/a1/comments",
        json!({"@odata.type": "microsoft.graph.security.alertComment", "comment": "second"}),
    );
    assert_eq!(status, 200);
    let comments = resp["value"].as_array().unwrap();
    assert_eq!(comments.len(), 2);
    assert_eq!(comments[1]["comment"], "second");
    assert!(
        comments[1]["createdByDisplayName"].is_string()
            && comments[1]["createdDateTime"].is_string()
    );
    let (status, resp) = g.json(
        "POST",
        "/v1.0/security/alerts_v2/nope/comments",
        json!({"comment": "x"}),
    );
    assert_eq!(status, 404);
    assert_eq!(resp["error"]["code"], "NotFound");
    let (_, a1) = g.get("/v1.0/security/alerts_v2/a1");
    assert_eq!(a1["comments"].as_array().unwrap().len(), 2);

    let (status, inc) = g.get("/v1.0/security/incidents/301");
    assert_eq!(status, 200);
    assert_eq!(inc["customTags"], json!(["existing-tag"]));
    for key in [
        "id",
        "displayName",
        "status",
        "severity",
        "systemTags",
        "incidentWebUrl",
        "lastUpdateDateTime",
    ] {
        assert!(inc.get(key).is_some(), "{key}");
    }
    let (status, inc) = g.json(
        "PATCH",
        "/v1.0/security/incidents/301",
        json!({"customTags": ["existing-tag", "VMRay: malicious"], "comment": "ignored"}),
    );
    assert_eq!(status, 200, "{inc}");
    assert_eq!(
        inc["customTags"],
        json!(["existing-tag", "VMRay: malicious"])
    );
    let (status, _) = g.json(
        "PATCH",
        "/v1.0/security/incidents/301",
        json!({"customTags": "notalist"}),
    );
    assert_eq!(status, 400);
    assert_eq!(
        g.json(
            "PATCH",
            "/v1.0/security/incidents/999",
            json!({"customTags": []})
        )
        .0,
        404
    );

    let state = sims.state();
    assert_eq!(
        state.comment_texts("a1"),
        vec!["VMRay sample 4711 · submission 9001\nmalicious", "second"]
    );
    assert!(state.comment_texts("a2").is_empty());
    assert_eq!(
        state.custom_tags("301"),
        vec!["existing-tag", "VMRay: malicious"]
    );
    assert_eq!(
        state.incidents["301"].patches.len(),
        1,
        "the invalid PATCH is not recorded"
    );
    assert_eq!(
        state.calls_to("graph", "POST", "/v1.0/security/alerts_v2/"),
        3
    );
}

fn hunt(g: &Client, query: &str, timespan: Option<&str>) -> (u16, Value) {
    let mut body = json!({"Query": query});
    if let Some(t) = timespan {
        body["Timespan"] = json!(t);
    }
    g.json("POST", "/v1.0/security/runHuntingQuery", body)
}

fn urls_of(body: &Value) -> Vec<String> {
    let mut v: Vec<String> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Url"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn hunting_with_timespan_and_late_urls() {
    let url = |u: &str, age: f64| MailUrlSpec {
        url: u.into(),
        location: "Body".into(),
        age_hours: age,
        visible_after_minutes: None,
    };
    let scenario = Scenario {
        mails: vec![
            MailSpec {
                network_message_id: "nm1".into(),
                urls: vec![
                    url("http://fresh.example/a", 2.0),
                    url("http://old.example/b", 60.0),
                ],
                ..Default::default()
            },
            MailSpec {
                network_message_id: "nm\"2".into(),
                urls: vec![url("http://quoted.example/", 1.0)],
                ..Default::default()
            },
            MailSpec {
                network_message_id: "nm3".into(),
                urls: vec![MailUrlSpec {
                    visible_after_minutes: Some(10),
                    ..url("http://late.example/", 0.0)
                }],
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let sims = Simulators::start(scenario.clone()).unwrap();
    let g = Client::graph(&sims, &scenario);
    let q = r#"EmailUrlInfo | where NetworkMessageId in ("nm1","nm\"2","nm3") | project NetworkMessageId, Url, UrlDomain, UrlLocation"#;

    let (status, body) = hunt(&g, q, Some("P1D"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        urls_of(&body),
        vec!["http://fresh.example/a", "http://quoted.example/"]
    );
    let schema: Vec<&str> = body["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        schema,
        vec!["NetworkMessageId", "Url", "UrlDomain", "UrlLocation"]
    );
    let row = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["Url"] == "http://fresh.example/a")
        .unwrap();
    assert_eq!(row["NetworkMessageId"], "nm1");
    assert_eq!(row["UrlDomain"], "fresh.example");
    assert_eq!(row["UrlLocation"], "Body");

    assert_eq!(urls_of(&hunt(&g, q, Some("P3D")).1).len(), 3);
    assert_eq!(
        urls_of(&hunt(&g, q, Some("PT90M")).1),
        vec!["http://quoted.example/"]
    );
    assert_eq!(urls_of(&hunt(&g, q, None).1).len(), 3);
    assert_eq!(
        urls_of(
            &hunt(
                &g,
                r#"EmailUrlInfo | where NetworkMessageId == "nm1""#,
                None
            )
            .1
        )
        .len(),
        2
    );

    // URLs that arrive late: one scheduled, one added at run time.
    sims.clock().advance_secs(11 * 60);
    sims.add_mail(MailSpec {
        network_message_id: "nm1".into(),
        urls: vec![url("http://added.example/", 0.0)],
        ..Default::default()
    });
    let (_, body) = hunt(&g, q, Some("P1D"));
    assert!(urls_of(&body).contains(&"http://late.example/".to_string()));
    assert!(urls_of(&body).contains(&"http://added.example/".to_string()));

    for bad in [
        "EmailEvents | take 1",
        "EmailUrlInfo | take 10",
        r#"EmailUrlInfo | where Url == "x""#,
        r#"EmailUrlInfo | where NetworkMessageId in ("a""#,
    ] {
        let (status, body) = hunt(&g, bad, None);
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["error"]["code"], "BadRequest");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(hunt(&g, q, Some("one day")).0, 400);
}

#[test]
fn alerts_added_while_running_and_raw_alerts() {
    let scenario = Scenario::default();
    let sims = Simulators::start(scenario.clone()).unwrap();
    let g = Client::graph(&sims, &scenario);
    assert_eq!(
        g.get("/v1.0/security/alerts_v2").1["value"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    sims.add_alert(alert("late", "401", 1, "high"));
    sims.add_alert(AlertSpec {
        raw: Some(json!({"id": "raw1", "title": 42, "evidence": "not-a-list"})),
        ..Default::default()
    });
    let (_, body) = g.get(&format!(
        "/v1.0/security/alerts_v2?$filter={}",
        enc("serviceSource eq 'microsoftDefenderForOffice365'")
    ));
    let values = body["value"].as_array().unwrap();
    assert_eq!(values.len(), 2);
    let raw = values.iter().find(|a| a["id"] == "raw1").unwrap();
    assert_eq!(raw["title"], 42);
    assert_eq!(raw["evidence"], "not-a-list");
    assert_eq!(
        g.get("/v1.0/security/incidents/401").0,
        200,
        "incident created for the alert"
    );
}
