mod common;

use common::*;
use serde_json::json;
use simulators::{Scenario, Simulators};
use std::io::{BufRead, BufReader};

#[test]
fn state_and_clock_over_http_on_every_port() {
    let scenario = Scenario::demo();
    let sims = Simulators::start(scenario.clone()).unwrap();
    let g = Client::graph(&sims, &scenario);
    g.json(
        "POST",
        "/v1.0/security/alerts_v2/da-teams-4/comments",
        json!({"comment": "no URLs in Teams alerts"}),
    );
    for base in [
        sims.entra_url(),
        sims.graph_url(),
        sims.defender_url(),
        sims.vmray_url(),
    ] {
        let (status, state) = send("GET", &format!("{base}/_sim/state"), &[], Body::None);
        assert_eq!(status, 200);
        assert_eq!(
            state["comments"]["da-teams-4"][0]["comment"],
            "no URLs in Teams alerts"
        );
        assert_eq!(
            state["incidents"]["102"]["customTags"],
            json!(["existing-tag"])
        );
    }
    let offset_before = sims.clock().offset();
    let (status, body) = send(
        "POST",
        &format!("{}/_sim/advance", sims.vmray_url()),
        &[],
        Body::Json(json!({"seconds": 90})),
    );
    assert_eq!(status, 200);
    assert!(body["now"].is_string());
    assert_eq!(
        sims.clock().offset() - offset_before,
        chrono::Duration::seconds(90)
    );
    let (status, _) = send(
        "POST",
        &format!("{}/_sim/advance", sims.graph_url()),
        &[],
        Body::Json(json!({"minutes": 1})),
    );
    assert_eq!(status, 400);
    // /_sim calls are not in the call log.
    let state = sims.state();
    assert_eq!(state.calls_to("graph", "GET", "/_sim"), 0);
    assert_eq!(
        state.calls_to(
            "graph",
            "POST",
            "/v1.0/security/alerts_v2/da-teams-4/comments"
        ),
        1
    );
    let roundtrip: simulators::SimState =
        serde_json::from_value(serde_json::to_value(&state).unwrap()).unwrap();
    assert_eq!(
        roundtrip.comment_texts("da-teams-4"),
        vec!["no URLs in Teams alerts"]
    );
}

#[test]
fn demo_scenario_shape() {
    let demo = Scenario::demo();
    let text = serde_json::to_string(&demo).unwrap();
    let back = Scenario::from_json(&text).unwrap();
    assert_eq!(back.alerts.len(), 4);
    assert!(
        Scenario::from_json(r#"{"tenant_id": "t", "nonsense": 1}"#).is_err(),
        "unknown fields are rejected"
    );
    let minimal = Scenario::from_json(r#"{"alerts": [{"id": "a1", "incident_id": "7"}]}"#).unwrap();
    assert_eq!(
        minimal.alerts[0].service_source,
        "microsoftDefenderForOffice365"
    );

    let sims = Simulators::start(demo.clone()).unwrap();
    let g = Client::graph(&sims, &demo);
    let (_, alerts) = g.get("/v1.0/security/alerts_v2");
    assert_eq!(alerts["value"].as_array().unwrap().len(), 4);
    let (_, hunt) = g.json("POST", "/v1.0/security/runHuntingQuery", json!({"Query": "EmailUrlInfo | where NetworkMessageId == \"nm-demo-0001\" | project Url", "Timespan": "P1D"}));
    assert_eq!(hunt["results"].as_array().unwrap().len(), 2);
    assert_eq!(g.get("/v1.0/security/incidents/101").0, 200);
    sims.shutdown();
}

#[test]
fn shutdown_frees_the_ports() {
    let sims = Simulators::start(Scenario::default()).unwrap();
    let url = sims.graph_url();
    drop(sims);
    let err = ureq::get(&format!("{url}/_sim/state")).call();
    assert!(
        matches!(err, Err(ureq::Error::Transport(_))),
        "server still answers"
    );
}

#[test]
fn works_inside_a_caller_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sims = Simulators::start(Scenario::default()).unwrap();
        let url = format!("{}/_sim/state", sims.vmray_url());
        let status = tokio::task::spawn_blocking(move || send("GET", &url, &[], Body::None).0)
            .await
            .unwrap();
        assert_eq!(status, 200);
        drop(sims);
    });
    // Two at once from plain threads.
    let handles: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(|| Simulators::start(Scenario::default()).unwrap().graph_url()))
        .collect();
    let urls: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_ne!(urls[0], urls[1]);
}

#[test]
fn binary_prints_its_urls_and_serves() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_simulators"))
        .arg("--demo")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let urls: serde_json::Value = serde_json::from_str(&line).unwrap();
    for key in ["entra", "graph", "defender", "vmray"] {
        assert!(
            urls[key].as_str().unwrap().starts_with("http://127.0.0.1:"),
            "{line}"
        );
    }
    let (status, state) = send(
        "GET",
        &format!("{}/_sim/state", urls["vmray"].as_str().unwrap()),
        &[],
        Body::None,
    );
    assert_eq!(status, 200);
    assert!(state["calls"].is_array());
    child.kill().unwrap();
    child.wait().unwrap();
}
