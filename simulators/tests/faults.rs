mod common;

use common::*;
use serde_json::{json, Value};
use simulators::{Fault, FaultRule, Scenario, Service, Simulators};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const SUBMIT: &str = "/rest/sample/submit";
const ALERTS: &str = "/v1.0/security/alerts_v2";
const COMMENTS: &str = "/v1.0/security/alerts_v2/da-teams-4/comments";

fn indicator(value: &str) -> Value {
    json!({"indicatorValue": value, "indicatorType": "DomainName", "action": "Block",
           "title": format!("VMRay: {value}"), "description": "from a VMRay analysis",
           "severity": "High", "generateAlert": false, "application": "VMRay"})
}

fn start() -> (Simulators, Scenario) {
    let scenario = Scenario::demo();
    (Simulators::start(scenario.clone()).unwrap(), scenario)
}

/// A request whose answer is kept as text: (status, Retry-After, body). `Err` = transport error.
fn text(
    method: &str,
    url: &str,
    auth: &str,
    body: Option<(&str, Vec<u8>)>,
) -> Result<(u16, Option<String>, String), String> {
    let req = ureq::request(method, url)
        .set("Authorization", auth)
        .timeout(Duration::from_secs(10));
    let result = match body {
        None => req.call(),
        Some((ct, bytes)) => req.set("Content-Type", ct).send_bytes(&bytes),
    };
    let resp = match result {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(e.to_string()),
    };
    let status = resp.status();
    let retry = resp.header("retry-after").map(str::to_string);
    let body = resp.into_string().map_err(|e| e.to_string())?;
    Ok((status, retry, body))
}

/// A hand-written HTTP/1.1 request on a fresh socket; returns every byte received until the
/// server closed (or the read timed out) and the error that ended the read, if any.
fn raw_http(
    base: &str,
    head: &str,
    body: &[u8],
    read_timeout: Duration,
) -> (Vec<u8>, Option<std::io::ErrorKind>) {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(read_timeout)).unwrap();
    let mut req = format!(
        "{head}\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    s.write_all(&req).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, None),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return (got, Some(e.kind())),
        }
    }
}

fn submit_form(url: &str) -> (&'static str, Vec<u8>) {
    (
        "application/x-www-form-urlencoded",
        format!("sample_url={}", enc(url)).into_bytes(),
    )
}

#[test]
fn status_faults_carry_retry_after_verbatim_and_the_service_body() {
    let (sims, scenario) = start();
    let v = Client::vmray(&sims, &scenario);
    sims.inject(
        FaultRule::new(
            Service::Vmray,
            Fault::Status {
                code: 429,
                retry_after: Some("2".into()),
            },
        )
        .method("POST")
        .path(SUBMIT),
    );
    let url = format!("{}{SUBMIT}", sims.vmray_url());
    let (status, retry, body) = text(
        "POST",
        &url,
        &v.auth,
        Some(submit_form("http://a.example/")),
    )
    .unwrap();
    assert_eq!((status, retry.as_deref()), (429, Some("2")));
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"result":"error","error_msg":"Request was throttled. Expected available in 2 seconds."})
    );
    assert!(sims.state().vmray_submissions.is_empty());
    // times = 1: the fault clears by itself.
    let (status, _, _) = text(
        "POST",
        &url,
        &v.auth,
        Some(submit_form("http://a.example/")),
    )
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(sims.state().vmray_submissions.len(), 1);

    // Fractional Retry-After text on Graph, and a 503 on Defender.
    let g = Client::graph(&sims, &scenario);
    sims.inject(FaultRule::new(
        Service::Graph,
        Fault::Status {
            code: 429,
            retry_after: Some("2.128".into()),
        },
    ));
    let (status, retry, body) = text("GET", &format!("{}{ALERTS}", g.base), &g.auth, None).unwrap();
    assert_eq!((status, retry.as_deref()), (429, Some("2.128")));
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "TooManyRequests");
    assert!(body["error"]["innerError"]["request-id"].is_string());

    let d = Client::defender(&sims, &scenario);
    sims.inject(FaultRule::new(
        Service::Defender,
        Fault::Status {
            code: 503,
            retry_after: None,
        },
    ));
    let (status, body) = d.json("POST", "/api/indicators", indicator("x.example"));
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "ServiceUnavailable");
    assert!(body["error"]["target"].is_string());
    assert!(sims.state().indicators.is_empty());
    assert_eq!(sims.state().fault_count("status"), 3);
}

#[test]
fn skip_and_times_select_the_occurrences() {
    let (sims, scenario) = start();
    let g = Client::graph(&sims, &scenario);
    sims.inject(
        FaultRule::new(
            Service::Graph,
            Fault::Status {
                code: 500,
                retry_after: None,
            },
        )
        .method("get")
        .path(ALERTS)
        .skip(1)
        .times(2),
    );
    // Not matched: another method, another path.
    assert_eq!(g.json("POST", COMMENTS, json!({"comment": "x"})).0, 200);
    assert_eq!(g.get("/v1.0/security/incidents/101").0, 200);
    let statuses: Vec<u16> = (0..5).map(|_| g.get(ALERTS).0).collect();
    assert_eq!(statuses, vec![200, 500, 500, 200, 200]);
    let rules = sims.fault_rules();
    assert_eq!((rules[0].matched, rules[0].fired), (5, 2));

    let state = sims.state();
    let faults: Vec<Option<&str>> = state
        .calls
        .iter()
        .filter(|c| c.path == ALERTS)
        .map(|c| c.fault.as_deref())
        .collect();
    assert_eq!(
        faults,
        vec![None, Some("status"), Some("status"), None, None]
    );
    assert_eq!(state.faulted_calls().len(), 2);
    assert_eq!(state.faulted_calls()[0].status, 500);

    // Two rules on the same requests: both count every match, the first in its window fires.
    sims.clear_faults();
    let status = |code| Fault::Status {
        code,
        retry_after: None,
    };
    sims.inject(FaultRule::new(Service::Graph, status(502)).path(ALERTS));
    sims.inject(
        FaultRule::new(Service::Graph, status(504))
            .path(ALERTS)
            .skip(1),
    );
    let statuses: Vec<u16> = (0..3).map(|_| g.get(ALERTS).0).collect();
    assert_eq!(statuses, vec![502, 504, 200]);
}

#[test]
fn apply_then_fail_keeps_the_side_effect_and_plain_faults_do_not() {
    let (sims, scenario) = start();
    let g = Client::graph(&sims, &scenario);
    let fail = |apply: bool| {
        let rule = FaultRule::new(
            Service::Graph,
            Fault::Status {
                code: 500,
                retry_after: None,
            },
        )
        .method("POST")
        .path(COMMENTS);
        if apply {
            rule.apply_then_fail()
        } else {
            rule
        }
    };
    sims.inject(fail(false));
    assert_eq!(g.json("POST", COMMENTS, json!({"comment": "one"})).0, 500);
    assert!(sims.state().comment_texts("da-teams-4").is_empty());

    sims.inject(fail(true));
    assert_eq!(g.json("POST", COMMENTS, json!({"comment": "two"})).0, 500);
    assert_eq!(sims.state().comment_texts("da-teams-4"), vec!["two"]);

    // A lost submit response: the submission exists, the client saw only a reset.
    let v = Client::vmray(&sims, &scenario);
    sims.inject(
        FaultRule::new(Service::Vmray, Fault::ConnectionRefused)
            .path(SUBMIT)
            .apply_then_fail(),
    );
    let url = format!("{}{SUBMIT}", sims.vmray_url());
    let err = text(
        "POST",
        &url,
        &v.auth,
        Some(submit_form("http://lost.example/")),
    );
    assert!(err.is_err(), "{err:?}");
    let state = sims.state();
    assert_eq!(state.vmray_submissions.len(), 1);
    assert_eq!(
        state.vmray_submissions[0].url.as_deref(),
        Some("http://lost.example/")
    );
    assert_eq!(state.vmray_verdict_remaining, 9999);
    let last = state.calls.last().unwrap();
    assert_eq!(
        (last.status, last.fault.as_deref()),
        (0, Some("connection_refused"))
    );
}

#[test]
fn connection_refused_answers_nothing() {
    let (sims, scenario) = start();
    let d = Client::defender(&sims, &scenario);
    sims.inject(
        FaultRule::new(Service::Defender, Fault::ConnectionRefused)
            .method("POST")
            .path("/api/indicators"),
    );
    let body = serde_json::to_vec(&indicator("refused.example")).unwrap();
    let (got, _) = raw_http(
        &sims.defender_url(),
        &format!(
            "POST /api/indicators HTTP/1.1\r\nAuthorization: {}\r\nContent-Type: application/json",
            d.auth
        ),
        &body,
        Duration::from_secs(5),
    );
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    assert!(sims.state().indicators.is_empty());
    // The client sees a transport error, not a status.
    sims.inject(FaultRule::new(Service::Defender, Fault::ConnectionRefused));
    let err = text("GET", &format!("{}/api/indicators", d.base), &d.auth, None);
    assert!(err.is_err(), "{err:?}");
    // And the next call works.
    assert_eq!(
        d.json("POST", "/api/indicators", indicator("ok.example")).0,
        200
    );
    assert_eq!(sims.state().fault_count("connection_refused"), 2);
}

#[test]
fn timeout_keeps_silent_then_drops() {
    let (sims, scenario) = start();
    let g = Client::graph(&sims, &scenario);
    sims.inject(FaultRule::new(Service::Graph, Fault::Timeout { seconds: 1.5 }).path(COMMENTS));
    let body = br#"{"comment":"slow"}"#;
    let head = format!(
        "POST {COMMENTS} HTTP/1.1\r\nAuthorization: {}\r\nContent-Type: application/json",
        g.auth
    );
    // A client with a short timeout gives up.
    let (got, err) = raw_http(&sims.graph_url(), &head, body, Duration::from_millis(400));
    assert!(got.is_empty());
    assert!(matches!(
        err,
        Some(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
    ));
    // A patient one gets no answer either: the connection is dropped after 1.5 s.
    sims.inject(FaultRule::new(Service::Graph, Fault::Timeout { seconds: 1.5 }).path(COMMENTS));
    let started = Instant::now();
    let (got, err) = raw_http(&sims.graph_url(), &head, body, Duration::from_secs(10));
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    assert!(!matches!(
        err,
        Some(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
    ));
    assert!(started.elapsed() >= Duration::from_millis(1400));
    assert!(sims.state().comment_texts("da-teams-4").is_empty());
    assert_eq!(sims.state().fault_count("timeout"), 2);
}

#[test]
fn truncated_body_sends_half_of_the_announced_length() {
    let (sims, scenario) = start();
    let v = Client::vmray(&sims, &scenario);
    let (ct, form) = submit_form("http://half.example/");
    let head = format!(
        "POST {SUBMIT} HTTP/1.1\r\nAuthorization: {}\r\nContent-Type: {ct}",
        v.auth
    );
    let rule = FaultRule::new(Service::Vmray, Fault::TruncatedBody).path(SUBMIT);
    sims.inject(rule.clone());
    let (got, _) = raw_http(&sims.vmray_url(), &head, &form, Duration::from_secs(5));
    let text = String::from_utf8_lossy(&got).to_string();
    let (head_part, body_part) = text.split_once("\r\n\r\n").unwrap();
    assert!(head_part.starts_with("HTTP/1.1 200 OK"), "{head_part}");
    let length: usize = head_part
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(length > 100);
    assert_eq!(body_part.len(), length / 2);
    assert!(body_part.starts_with("{"));
    assert!(serde_json::from_str::<Value>(body_part).is_err());
    assert!(sims.state().vmray_submissions.is_empty());
    // ureq sees an error reading the body.
    sims.inject(rule.clone());
    let url = format!("{}{SUBMIT}", sims.vmray_url());
    assert!(text_err(
        "POST",
        &url,
        &v.auth,
        submit_form("http://half.example/")
    ));
    assert!(sims.state().vmray_submissions.is_empty());
    // With apply_then_fail the submission exists.
    sims.inject(rule.apply_then_fail());
    let (got, _) = raw_http(&sims.vmray_url(), &head, &form, Duration::from_secs(5));
    assert!(!got.is_empty());
    assert_eq!(sims.state().vmray_submissions.len(), 1);
    assert_eq!(sims.state().fault_count("truncated_body"), 3);
}

/// Whether reading the answer fails (transport error or a short body).
fn text_err(method: &str, url: &str, auth: &str, body: (&str, Vec<u8>)) -> bool {
    match text(method, url, auth, Some(body)) {
        Err(_) => true,
        Ok((_, _, body)) => serde_json::from_str::<Value>(&body).is_err(),
    }
}

#[test]
fn malformed_json_is_a_200_that_does_not_parse() {
    let (sims, scenario) = start();
    let g = Client::graph(&sims, &scenario);
    sims.inject(FaultRule::new(Service::Graph, Fault::MalformedJson).path(COMMENTS));
    let (status, _, body) = text(
        "POST",
        &format!("{}{COMMENTS}", g.base),
        &g.auth,
        Some(("application/json", br#"{"comment":"lost"}"#.to_vec())),
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(serde_json::from_str::<Value>(&body).is_err(), "{body}");
    assert!(sims.state().comment_texts("da-teams-4").is_empty());
    // Error answers are not garbled (nothing to garble): the rule's occurrence passes.
    sims.inject(FaultRule::new(Service::Graph, Fault::MalformedJson));
    let (status, body) = g.get("/v1.0/security/incidents/nope");
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "NotFound");
    assert_eq!(sims.state().fault_count("malformed_json"), 1);
}

#[test]
fn missing_fields_per_endpoint() {
    let (sims, scenario) = start();
    // Entra: no access_token.
    sims.inject(FaultRule::new(Service::Entra, Fault::MissingFields));
    let url = format!(
        "{}/{}/oauth2/v2.0/token",
        sims.entra_url(),
        scenario.tenant_id
    );
    let form = [
        ("client_id", scenario.client_id.as_str()),
        ("client_secret", scenario.client_secret.as_str()),
        ("grant_type", "client_credentials"),
        ("scope", GRAPH),
    ];
    let (status, body) = send("POST", &url, &[], Body::Form(&form));
    assert_eq!(status, 200);
    assert!(body.get("access_token").is_none(), "{body}");
    assert_eq!(body["token_type"], "Bearer");

    // Graph list: no value.
    let g = Client::graph(&sims, &scenario);
    sims.inject(FaultRule::new(Service::Graph, Fault::MissingFields).path(ALERTS));
    let (status, body) = g.get(ALERTS);
    assert_eq!(status, 200);
    assert!(body.get("value").is_none(), "{body}");
    assert!(body.get("@odata.context").is_some());

    // VMRay submit: no submissions / samples, and nothing stored.
    let v = Client::vmray(&sims, &scenario);
    sims.inject(FaultRule::new(Service::Vmray, Fault::MissingFields).path(SUBMIT));
    let (status, body) = v.form(SUBMIT, &[("sample_url", "http://m.example/")]);
    assert_eq!(status, 200);
    assert_eq!(body["result"], "ok");
    assert!(body["data"].get("submissions").is_none(), "{body}");
    assert!(body["data"].get("samples").is_none());
    assert!(body["data"]["jobs"].is_array());
    assert!(sims.state().vmray_submissions.is_empty());

    // Defender single indicator: no id, nothing stored.
    let d = Client::defender(&sims, &scenario);
    sims.inject(FaultRule::new(Service::Defender, Fault::MissingFields));
    let (status, body) = d.json("POST", "/api/indicators", indicator("m.example"));
    assert_eq!(status, 200);
    assert!(body.get("id").is_none());
    assert_eq!(body["indicatorValue"], "m.example");
    assert!(sims.state().indicators.is_empty());
    assert_eq!(
        sims.state()
            .indicator_write_count("m.example", "DomainName"),
        0
    );
    assert_eq!(sims.state().fault_count("missing_fields"), 4);
}

#[test]
fn wrong_types_swap_every_field_type() {
    let (sims, scenario) = start();
    let d = Client::defender(&sims, &scenario);
    sims.inject(FaultRule::new(Service::Defender, Fault::WrongTypes).method("POST"));
    let (status, body) = d.json("POST", "/api/indicators", indicator("w.example"));
    assert_eq!(status, 200);
    assert!(body["id"].is_number(), "{body}");
    assert_eq!(body["indicatorValue"], json!("w.example".len()));
    assert_eq!(body["generateAlert"], "false");
    assert!(body["rbacGroupNames"].is_object());
    assert!(body["@odata.context"].is_string());
    assert!(sims.state().indicators.is_empty());

    let g = Client::graph(&sims, &scenario);
    sims.inject(FaultRule::new(Service::Graph, Fault::WrongTypes).path(ALERTS));
    let (status, body) = g.get(ALERTS);
    assert_eq!(status, 200);
    assert!(body["value"].is_object(), "{body}");
    assert!(body["value"]["0"]["id"].is_number());

    let v = Client::vmray(&sims, &scenario);
    sims.inject(FaultRule::new(Service::Vmray, Fault::WrongTypes).path(SUBMIT));
    let (_, body) = v.form(SUBMIT, &[("sample_url", "http://w.example/")]);
    assert_eq!(body["result"], "ok");
    assert!(body["data"]["submissions"].is_object());
    assert!(body["data"]["submissions"]["0"]["submission_id"].is_string());
    assert!(sims.state().vmray_submissions.is_empty());

    // apply_then_fail: garbled answer, but the indicator is stored.
    sims.inject(FaultRule::new(Service::Defender, Fault::WrongTypes).apply_then_fail());
    let (_, body) = d.json("POST", "/api/indicators", indicator("w2.example"));
    assert!(body["id"].is_number());
    assert!(sims.state().indicator("w2.example").is_some());
}

#[test]
fn vmray_errors_in_a_200_create_nothing() {
    let (sims, scenario) = start();
    let v = Client::vmray(&sims, &scenario);
    // Only the submit endpoint matches, whatever the prefix.
    sims.inject(FaultRule::new(Service::Vmray, Fault::VmrayErrorsInOk));
    assert_eq!(v.get("/rest/system_info").0, 200);
    assert_eq!(sims.fault_rules()[0].matched, 0);
    let (status, body) = v.form(SUBMIT, &[("sample_url", "http://e.example/")]);
    assert_eq!(status, 200);
    assert_eq!(body["result"], "ok");
    assert!(body["data"]["errors"][0]["error_msg"].is_string());
    for k in ["submissions", "samples", "jobs"] {
        assert_eq!(body["data"][k], json!([]));
    }
    let state = sims.state();
    assert!(state.vmray_submissions.is_empty());
    assert_eq!(state.vmray_verdict_remaining, 10000);
    assert_eq!(state.fault_count("vmray_errors_in_ok"), 1);
}

#[test]
fn partial_import_failure_stores_only_the_others() {
    let (sims, scenario) = start();
    let d = Client::defender(&sims, &scenario);
    sims.inject(FaultRule::new(Service::Defender, Fault::PartialImportFailure).times(2));
    // Single indicators are not affected.
    assert_eq!(
        d.json("POST", "/api/indicators", indicator("single.example"))
            .0,
        200
    );
    let batch = json!({"Indicators": [indicator("p0.example"), indicator("p1.example"),
                                      indicator("p2.example"), indicator("p3.example")]});
    let (status, body) = d.json("POST", "/api/indicators/import", batch);
    assert_eq!(status, 200);
    let items = body["value"].as_array().unwrap();
    let failed: Vec<bool> = items
        .iter()
        .map(|i| i["isFailed"].as_bool().unwrap())
        .collect();
    assert_eq!(failed, vec![false, true, false, true]);
    assert_eq!(items[1]["indicator"], "p1.example");
    assert!(items[1]["failureReason"].as_str().unwrap().contains(':'));
    assert!(items[2]["id"].is_string());
    let state = sims.state();
    for (value, stored) in [
        ("p0.example", true),
        ("p1.example", false),
        ("p2.example", true),
        ("p3.example", false),
    ] {
        assert_eq!(state.indicator(value).is_some(), stored, "{value}");
    }
    // A single-item batch fails its only item.
    let (_, body) = d.json(
        "POST",
        "/api/indicators/import",
        json!({"Indicators": [indicator("only.example")]}),
    );
    assert_eq!(body["value"][0]["isFailed"], true);
    assert!(sims.state().indicator("only.example").is_none());
    assert_eq!(sims.state().fault_count("partial_import_failure"), 2);
}

#[test]
fn expire_tokens_and_revoked_secret() {
    let (sims, scenario) = start();
    let g = Client::graph(&sims, &scenario);
    let d = Client::defender(&sims, &scenario);
    assert_eq!(g.get(ALERTS).0, 200);
    sims.inject(FaultRule::new(Service::Graph, Fault::ExpireTokens));
    let (status, body) = g.get(ALERTS);
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("expired"));
    // The rule is spent, but every token issued so far is expired now.
    assert_eq!(g.get(ALERTS).0, 401);
    let (status, body) = d.get("/api/indicators");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("Unauthorized"))
    );
    // A new token works.
    assert_eq!(Client::graph(&sims, &scenario).get(ALERTS).0, 200);

    sims.inject(FaultRule::new(Service::Entra, Fault::RevokedSecret).times(2));
    let url = format!(
        "{}/{}/oauth2/v2.0/token",
        sims.entra_url(),
        scenario.tenant_id
    );
    let form = [
        ("client_id", scenario.client_id.as_str()),
        ("client_secret", scenario.client_secret.as_str()),
        ("grant_type", "client_credentials"),
        ("scope", GRAPH),
    ];
    for _ in 0..2 {
        let (status, body) = send("POST", &url, &[], Body::Form(&form));
        assert_eq!(status, 401);
        assert_eq!(body["error"], "invalid_client");
        assert_eq!(body["error_codes"], json!([7000215]));
    }
    assert_eq!(send("POST", &url, &[], Body::Form(&form)).0, 200);
    let state = sims.state();
    assert_eq!(state.fault_count("expire_tokens"), 1);
    assert_eq!(state.fault_count("revoked_secret"), 2);
}

#[test]
fn faults_over_http_on_any_port() {
    let (sims, scenario) = start();
    let v = Client::vmray(&sims, &scenario);
    let rule = json!({"service": "vmray", "method": "POST", "path_prefix": SUBMIT,
                      "fault": {"kind": "status", "code": 503, "retry_after": "1.5"}});
    let (status, _) = send(
        "POST",
        &format!("{}/_sim/faults", sims.entra_url()),
        &[],
        Body::Json(rule),
    );
    assert_eq!(status, 200);
    let url = format!("{}{SUBMIT}", sims.vmray_url());
    let (status, retry, _) = text(
        "POST",
        &url,
        &v.auth,
        Some(submit_form("http://h.example/")),
    )
    .unwrap();
    assert_eq!((status, retry.as_deref()), (503, Some("1.5")));

    let (_, listed) = send(
        "GET",
        &format!("{}/_sim/faults", sims.graph_url()),
        &[],
        Body::None,
    );
    assert_eq!(listed["rules"][0]["fired"], 1);
    assert_eq!(listed["rules"][0]["rule"]["times"], 1);

    // Nonsense is refused: unknown kind, unknown field, a fault for another service.
    for bad in [
        json!({"service": "vmray", "fault": {"kind": "explode"}}),
        json!({"service": "vmray", "fault": {"kind": "timeout"}, "color": "red"}),
        json!({"service": "graph", "fault": {"kind": "revoked_secret"}}),
        json!({"service": "graph", "fault": {"kind": "expire_tokens"}, "apply_then_fail": true}),
        json!({"service": "graph", "fault": {"kind": "status", "code": 200}}),
    ] {
        let (status, body) = send(
            "POST",
            &format!("{}/_sim/faults", sims.graph_url()),
            &[],
            Body::Json(bad.clone()),
        );
        assert_eq!(status, 400, "{bad} → {body}");
    }
    assert!(sims
        .try_inject(FaultRule::new(Service::Graph, Fault::VmrayErrorsInOk))
        .is_err());

    // DELETE clears every rule.
    let rule = json!({"service": "vmray", "fault": {"kind": "status", "code": 500}, "times": 100});
    send(
        "POST",
        &format!("{}/_sim/faults", sims.vmray_url()),
        &[],
        Body::Json(rule),
    );
    assert_eq!(v.get("/rest/system_info").0, 500);
    let (status, _) = send(
        "DELETE",
        &format!("{}/_sim/faults", sims.defender_url()),
        &[],
        Body::None,
    );
    assert_eq!(status, 200);
    assert_eq!(v.get("/rest/system_info").0, 200);
    assert!(sims.fault_rules().is_empty());
}
