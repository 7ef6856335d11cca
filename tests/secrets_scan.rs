//! No secret leaves the connector: across a demo run, runs with failing
//! authentication, a run under 401/500 faults and HTTP-tick runs, every log
//! line, comment, tag, incident PATCH, indicator field, VMRay submission field,
//! store value, tick error and HTTP tick response is searched for
//! `client_secret`, `vmray_api_key`, `tick_token` and every bearer token the
//! Entra simulator issued. Also: the tick route refuses missing, short and
//! malformed tokens.

mod support;

use simulators::{Fault, FaultRule, Scenario, Service};
use support::{leaks, outputs, Harness, COMPONENTS};
use test_host::KvBackend;

const TICK_TOKEN: &str = "tick-token-secret-0123456789abcdef";
const DEMO_ALERTS: [&str; 4] = [
    "da-user-reported-1",
    "da-url-click-2",
    "da-url-removed-3",
    "da-teams-4",
];

/// The secrets of a run: configured values and every issued access token.
fn secrets(h: &Harness) -> Vec<String> {
    let mut s = vec![
        h.vars["client_secret"].clone(),
        h.vars["vmray_api_key"].clone(),
        TICK_TOKEN.to_string(),
    ];
    s.extend(h.sims.state().issued_tokens);
    s
}

/// Ticks every component `rounds` times, keeping each tick's error text
/// (a trap still fails the test).
fn rounds_collecting_errors(h: &Harness, rounds: usize) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    for _ in 0..rounds {
        for c in COMPONENTS {
            if let Err(e) = h.tick(c) {
                errors.push((format!("{c} tick error"), e));
            }
        }
    }
    errors
}

fn assert_clean(h: &Harness, extra: Vec<(String, String)>, what: &str) -> usize {
    let mut out = outputs(h);
    out.extend(extra);
    let secrets = secrets(h);
    let found = leaks(&out, &secrets);
    assert!(found.is_empty(), "{what}:\n{}", found.join("\n"));
    println!(
        "{what}: {} outputs scanned for {} secrets ({} issued bearer tokens): clean",
        out.len(),
        secrets.len(),
        secrets.len() - 3
    );
    out.len()
}

#[test]
fn a_demo_run_leaks_no_secret() {
    let h = Harness::start(Scenario::demo(), &[]);
    h.run_until(8, |s| support::all_commented(s, &DEMO_ALERTS));
    assert!(
        h.sims.state().issued_tokens.len() >= 2,
        "the scan must include real bearer tokens"
    );
    assert_clean(&h, vec![], "demo run");
}

#[test]
fn failing_authentication_leaks_no_secret() {
    // The connector holds wrong secrets: Entra answers 401 invalid_client,
    // VMRay 401; the wrong values are as secret as right ones.
    let h = Harness::start(
        Scenario::demo(),
        &[
            ("client_secret", "wrong-client-secret-0123456789"),
            ("vmray_api_key", "wrong-vmray-api-key-0123456789"),
        ],
    );
    let errors = rounds_collecting_errors(&h, 3);
    assert!(
        errors.iter().any(|(c, _)| c.starts_with("poller")),
        "the poller cannot list alerts without a token: {errors:?}"
    );
    let text = h.log_text();
    assert!(
        text.contains("401") || errors.iter().any(|(_, e)| e.contains("401")),
        "the failure is reported: {errors:?}"
    );
    let extra = errors;
    // The scenario's real values too: nothing may echo them either.
    let scenario = Scenario::demo();
    let mut out = outputs(&h);
    out.extend(extra);
    let mut all = secrets(&h);
    all.push(scenario.client_secret.clone());
    all.push(scenario.vmray_api_key.clone());
    let found = leaks(&out, &all);
    assert!(found.is_empty(), "{}", found.join("\n"));
    println!(
        "failing auth: {} outputs scanned for {} secrets: clean",
        out.len(),
        all.len()
    );
}

#[test]
fn vmray_key_rejected_mid_run_leaks_no_secret() {
    // Entra works, VMRay refuses the key: the poller takes alerts in, the
    // VMRay side fails on every call, the defender has nothing to write.
    let h = Harness::start(
        Scenario::demo(),
        &[("vmray_api_key", "rejected-vmray-key-0123456789")],
    );
    let errors = rounds_collecting_errors(&h, 3);
    assert!(!h.sims.state().issued_tokens.is_empty());
    assert!(h.sims.state().vmray_submissions.is_empty());
    assert_clean(&h, errors, "VMRay key rejected");
}

#[test]
fn faults_401_and_500_leak_no_secret() {
    let h = Harness::start(Scenario::demo(), &[]);
    for (service, code, path) in [
        (Service::Graph, 401, "/v1.0/security/alerts_v2"),
        (Service::Graph, 500, "/v1.0/security/runHuntingQuery"),
        (Service::Vmray, 401, "/rest/sample/submit"),
        (Service::Vmray, 500, "/rest/submission"),
        (Service::Defender, 401, "/api/indicators"),
        (Service::Defender, 500, "/api/indicators/import"),
        (Service::Graph, 500, "/v1.0/security/incidents"),
        (Service::Entra, 500, "/"),
    ] {
        h.sims.inject(
            FaultRule::new(
                service,
                Fault::Status {
                    code,
                    retry_after: None,
                },
            )
            .path(path)
            .times(3),
        );
    }
    h.sims
        .inject(FaultRule::new(Service::Graph, Fault::ExpireTokens).path("/v1.0/security/alerts"));
    let mut errors = rounds_collecting_errors(&h, 4);
    h.sims.clear_faults();
    for _ in 0..8 {
        errors.extend(rounds_collecting_errors(&h, 1));
        if support::all_commented(&h.sims.state(), &DEMO_ALERTS) {
            break;
        }
    }
    let s = h.sims.state();
    assert!(
        !s.faulted_calls().is_empty(),
        "the faults fired: {:?}",
        h.sims.fault_rules()
    );
    assert!(
        support::all_commented(&s, &DEMO_ALERTS),
        "the run recovers after the faults"
    );
    assert!(
        s.issued_tokens.len() >= 3,
        "expired tokens were replaced: {}",
        s.issued_tokens.len()
    );
    assert_clean(&h, errors, "401/500 faults");
}

fn http_harness(token: Option<&str>) -> Harness {
    let extra: Vec<(&str, &str)> = token.map(|t| ("tick_token", t)).into_iter().collect();
    Harness::start_with(
        Scenario::demo(),
        &extra,
        "spin-http.toml",
        KvBackend::Memory,
    )
}

#[test]
fn http_ticks_leak_no_secret() {
    let h = http_harness(Some(TICK_TOKEN));
    let bearer = format!("Bearer {TICK_TOKEN}");
    let mut bodies = Vec::new();
    for _ in 0..6 {
        for c in COMPONENTS {
            let r = h
                .app
                .http(
                    "POST",
                    &format!("/tick/{c}"),
                    &[("authorization", &bearer)],
                    b"",
                )
                .unwrap();
            assert_eq!(r.status, 200, "{}", r.body_text());
            bodies.push((format!("{c} tick response"), r.body_text()));
        }
    }
    assert!(support::all_commented(&h.sims.state(), &DEMO_ALERTS));
    // Refused ticks: their answers must not echo what was presented or configured.
    for header in [
        format!("Bearer {TICK_TOKEN}x"),
        format!("bearer {TICK_TOKEN}"),
        TICK_TOKEN.to_string(),
    ] {
        let r = h
            .app
            .http("POST", "/tick/poller", &[("authorization", &header)], b"")
            .unwrap();
        assert_eq!(r.status, 401, "{header}");
        bodies.push(("refused tick response".into(), r.body_text()));
    }
    assert_clean(&h, bodies, "HTTP ticks");
}

#[test]
fn tick_route_refuses_missing_short_and_malformed_tokens() {
    let h = http_harness(Some(TICK_TOKEN));
    let short = &TICK_TOKEN[..15];
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("no header", vec![]),
        ("empty bearer", vec![("authorization", "Bearer ".into())]),
        (
            "15-character prefix of the token",
            vec![("authorization", format!("Bearer {short}"))],
        ),
        (
            "token without scheme",
            vec![("authorization", TICK_TOKEN.into())],
        ),
        (
            "lower-case scheme",
            vec![("authorization", format!("bearer {TICK_TOKEN}"))],
        ),
        (
            "trailing space",
            vec![("authorization", format!("Bearer {TICK_TOKEN} "))],
        ),
        (
            "two spaces",
            vec![("authorization", format!("Bearer  {TICK_TOKEN}"))],
        ),
        (
            "Basic scheme",
            vec![("authorization", format!("Basic {TICK_TOKEN}"))],
        ),
        (
            "last byte differs",
            vec![(
                "authorization",
                format!("Bearer {}X", &TICK_TOKEN[..TICK_TOKEN.len() - 1]),
            )],
        ),
    ];
    for c in COMPONENTS {
        for (what, headers) in &cases {
            let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = h.app.http("POST", &format!("/tick/{c}"), &hs, b"").unwrap();
            assert_eq!(r.status, 401, "{c}: {what}");
        }
    }
    assert!(h.sims.state().calls.is_empty(), "refused ticks did no work");
    println!("tick route: {} refusal cases × 3 components", cases.len());

    // No tick_token at all: the app does not load (as with Spin), naming it.
    let sims = simulators::Simulators::start(Scenario::demo()).unwrap();
    let vars = support::sim_vars(&sims, &Scenario::demo());
    let err = test_host::App::load(
        &support::root().join("spin-http.toml"),
        test_host::AppConfig {
            variables: vars,
            kv: KvBackend::Memory,
            wasm_dir: None,
        },
    )
    .err()
    .expect("spin-http.toml needs tick_token");
    assert!(format!("{err:#}").contains("tick_token"), "{err:#}");

    // An empty configured token refuses everything, even an empty presented one.
    let h = http_harness(Some(""));
    for c in COMPONENTS {
        for header in ["Bearer ", "Bearer", &format!("Bearer {TICK_TOKEN}")] {
            let r = h
                .app
                .http(
                    "POST",
                    &format!("/tick/{c}"),
                    &[("authorization", header)],
                    b"",
                )
                .unwrap();
            assert_eq!(
                r.status, 401,
                "{c} with an empty configured token, {header:?}"
            );
        }
    }
    assert!(h.sims.state().calls.is_empty());
}
