//! The fault matrix: every endpoint the connector calls × every fault that
//! makes sense for it (throttling with integer and fractional `Retry-After`,
//! 5xx, refused connections, answers that never come, truncated and garbled
//! bodies, VMRay errors inside a 200, partial indicator imports, tokens
//! expiring mid-tick, a revoked secret), and "the request reached the service
//! but the answer was lost" (`apply_then_fail`). Each case runs the connector
//! with the fault active for its first occurrence(s), then until it has
//! cleared: what was written must equal the fault-free run (nothing lost,
//! no submission, comment, indicator or tag duplicated), and the component
//! that met the fault must have logged it. The matrix is printed at the end.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use simulators::{Fault, FaultRule, Service};
use support::{normalized, rich_scenario, Harness, Written};

/// Rounds a case may take to converge after the fault (it usually needs 4–6).
const MAX_ROUNDS: usize = 14;

#[derive(Clone)]
struct Endpoint {
    name: &'static str,
    service: Service,
    method: &'static str,
    path: String,
    /// Which component calls it (whose log must name the fault).
    component: &'static str,
    /// Words a log line about this endpoint contains (any of them).
    words: &'static [&'static str],
    /// Idempotent (a repeated request after a lost answer is an upsert, not a duplicate).
    idempotent: bool,
    /// Rules that must fire first for the endpoint to be called at all.
    setup: Vec<FaultRule>,
}

struct Case {
    endpoint: Endpoint,
    label: String,
    rule: FaultRule,
    /// A response-shaping fault does not fire on a bodiless or error answer.
    may_not_fire: bool,
}

fn ep(
    name: &'static str,
    service: Service,
    method: &'static str,
    path: &str,
    component: &'static str,
    words: &'static [&'static str],
    idempotent: bool,
) -> Endpoint {
    Endpoint {
        name,
        service,
        method,
        path: path.to_string(),
        component,
        words,
        idempotent,
        setup: Vec::new(),
    }
}

fn endpoints(sample: u64, submission: u64) -> Vec<Endpoint> {
    const TOKEN: &[&str] = &["token", "entra", "oauth2"];
    let s = format!("/rest/sample/{sample}");
    let mut v = vec![
        ep(
            "entra token (poller)",
            Service::Entra,
            "POST",
            "/",
            "poller",
            TOKEN,
            true,
        ),
        ep(
            "alerts_v2 list",
            Service::Graph,
            "GET",
            "/v1.0/security/alerts_v2",
            "poller",
            &["alerts_v2", "alerts", "list"],
            true,
        ),
        ep(
            "runHuntingQuery",
            Service::Graph,
            "POST",
            "/v1.0/security/runHuntingQuery",
            "poller",
            &["hunting", "runHuntingQuery"],
            true,
        ),
        ep(
            "comment POST",
            Service::Graph,
            "POST",
            "/v1.0/security/alerts_v2/",
            "defender",
            &["comment"],
            false,
        ),
        ep(
            "incident GET",
            Service::Graph,
            "GET",
            "/v1.0/security/incidents/",
            "defender",
            &["incident"],
            true,
        ),
        ep(
            "incident PATCH",
            Service::Graph,
            "PATCH",
            "/v1.0/security/incidents/",
            "defender",
            &["incident", "tag"],
            true,
        ),
        ep(
            "indicators import",
            Service::Defender,
            "POST",
            "/api/indicators/import",
            "defender",
            &["indicator", "import"],
            true,
        ),
        ep(
            "VMRay submit",
            Service::Vmray,
            "POST",
            "/rest/sample/submit",
            "vmray",
            &["submit"],
            false,
        ),
        ep(
            "VMRay submission search",
            Service::Vmray,
            "GET",
            "/rest/submission/search",
            "vmray",
            &["search", "submission"],
            true,
        ),
        ep(
            "VMRay submission status",
            Service::Vmray,
            "GET",
            &format!("/rest/submission/{submission}"),
            "vmray",
            &["submission"],
            true,
        ),
        ep(
            "VMRay sample",
            Service::Vmray,
            "GET",
            &s,
            "vmray",
            &["sample"],
            true,
        ),
    ];
    // `/classifications` is not called: the sample record carries them.
    for (name, sub) in [
        ("VMRay threat_names", "threat_names"),
        ("VMRay vtis", "vtis"),
        ("VMRay iocs", "iocs"),
    ] {
        v.push(ep(
            name,
            Service::Vmray,
            "GET",
            &format!("{s}/{sub}"),
            "vmray",
            &["sample", "threat_names", "classifications", "vtis", "iocs"],
            true,
        ));
    }
    // Endpoints only called to reconcile after a lost answer.
    let mut alert_get = ep(
        "alert GET (comment reconcile)",
        Service::Graph,
        "GET",
        "/v1.0/security/alerts_v2/",
        "defender",
        &["alert", "comment"],
        true,
    );
    alert_get.setup.push(
        FaultRule::new(Service::Graph, Fault::ConnectionRefused)
            .method("POST")
            .path("/v1.0/security/alerts_v2/")
            .apply_then_fail(),
    );
    v.push(alert_get);
    let mut lookup = ep(
        "indicators look-up (reconcile)",
        Service::Defender,
        "GET",
        "/api/indicators",
        "defender",
        &["indicator", "look-up"],
        true,
    );
    // Three lost answers outlast the in-tick retries (defender_api_max_retry = 2).
    lookup.setup.push(
        FaultRule::new(Service::Defender, Fault::ConnectionRefused)
            .method("POST")
            .path("/api/indicators/import")
            .apply_then_fail()
            .times(3),
    );
    v.push(lookup);
    let mut entra_def = ep(
        "entra token (defender)",
        Service::Entra,
        "POST",
        "/",
        "defender",
        TOKEN,
        true,
    );
    // The poller's token requests pass; the defender's first one is faulted (see `cases`).
    entra_def.setup = Vec::new();
    v.push(entra_def);
    v
}

fn status(code: u16, ra: Option<&str>) -> Fault {
    Fault::Status {
        code,
        retry_after: ra.map(str::to_string),
    }
}

fn cases(sample: u64, submission: u64, entra_calls_by_poller: u32) -> Vec<Case> {
    let mut out = Vec::new();
    for e in endpoints(sample, submission) {
        let base = |f: Fault| {
            let mut r = FaultRule::new(e.service, f).method(e.method).path(&e.path);
            if e.name == "entra token (defender)" {
                r = r.skip(entra_calls_by_poller);
            }
            r
        };
        let mut add = |label: &str, rule: FaultRule, may_not_fire: bool| {
            out.push(Case {
                endpoint: e.clone(),
                label: label.to_string(),
                rule,
                may_not_fire,
            })
        };
        add("429 Retry-After 1", base(status(429, Some("1"))), false);
        add(
            "429 Retry-After 0.25",
            base(status(429, Some("0.25"))),
            false,
        );
        add("500 (x4)", base(status(500, None)).times(4), false);
        add("503", base(status(503, None)), false);
        add(
            "refused (x4)",
            base(Fault::ConnectionRefused).times(4),
            false,
        );
        add("timeout 1 s", base(Fault::Timeout { seconds: 1.0 }), false);
        for (label, f) in [
            ("truncated body", Fault::TruncatedBody),
            ("malformed JSON", Fault::MalformedJson),
            ("missing fields", Fault::MissingFields),
            ("wrong types", Fault::WrongTypes),
        ] {
            add(label, base(f), true);
        }
        if e.service != Service::Entra && e.setup.is_empty() {
            add(
                "lost answer (refused)",
                base(Fault::ConnectionRefused).apply_then_fail(),
                false,
            );
            add(
                "lost answer (500)",
                base(status(500, None)).apply_then_fail(),
                false,
            );
        }
        match (e.service, e.name) {
            (Service::Vmray, "VMRay submit") => {
                add("errors[] in 200", base(Fault::VmrayErrorsInOk), false);
                add(
                    "lost answer (timeout)",
                    base(Fault::Timeout { seconds: 1.0 }).apply_then_fail(),
                    false,
                );
            }
            (Service::Defender, "indicators import") => {
                add(
                    "partial import failure",
                    base(Fault::PartialImportFailure),
                    false,
                );
                add(
                    "lost answer (refused x3)",
                    base(Fault::ConnectionRefused).apply_then_fail().times(3),
                    false,
                );
                add("token expires mid-tick", base(Fault::ExpireTokens), false);
            }
            (Service::Graph, _) if e.setup.is_empty() => {
                add("token expires mid-tick", base(Fault::ExpireTokens), false);
            }
            (Service::Entra, _) => {
                add(
                    "revoked secret (401 invalid_client)",
                    base(Fault::RevokedSecret),
                    false,
                );
            }
            _ => {}
        }
    }
    out
}

/// Run one case; `Ok(note)` or `Err(why)`.
fn run_case(case: &Case, baseline: &Written) -> Result<String, String> {
    let h = Harness::start(rich_scenario(), &[]);
    for r in &case.endpoint.setup {
        h.sims.inject(r.clone());
    }
    h.sims.inject(case.rule.clone());
    let mut converged_at = None;
    let mut errors = Vec::new();
    for n in 1..=MAX_ROUNDS {
        errors.extend(h.round_lenient());
        let got = normalized(&h, &h.sims.state());
        if got == *baseline || (case.endpoint.idempotent && same_but_counts(&got, baseline)) {
            converged_at = Some(n);
            break;
        }
    }
    // Two more rounds: nothing may be written afterwards.
    let at_convergence = normalized(&h, &h.sims.state());
    h.round_lenient();
    h.round_lenient();
    let state = h.sims.state();
    let got = normalized(&h, &state);
    let fired: u64 = h
        .sims
        .fault_rules()
        .iter()
        .skip(case.endpoint.setup.len())
        .map(|r| r.fired)
        .sum();
    if fired == 0 {
        return if case.may_not_fire {
            Ok("n/a (answer has no body to garble)".into())
        } else {
            Err("the fault never fired (wrong path or never called)".into())
        };
    }
    let Some(rounds) = converged_at else {
        return Err(format!(
            "did not converge in {MAX_ROUNDS} rounds\n got: {got:#?}\n want: {baseline:#?}\n errors: {errors:#?}"
        ));
    };
    if got != at_convergence {
        return Err(format!(
            "wrote more after converging:\n{got:#?}\n vs {at_convergence:#?}"
        ));
    }
    // Duplicates of any kind would differ from the baseline; check the
    // repeatable counts explicitly for non-idempotent endpoints.
    if !case.endpoint.idempotent && got != *baseline {
        return Err(format!("counts differ: {got:#?} vs {baseline:#?}"));
    }
    let mut subs: Vec<&String> = got.submissions.iter().collect();
    subs.dedup();
    if subs.len() != got.submissions.len() {
        return Err(format!("duplicate submission: {:?}", got.submissions));
    }
    // The log names the fault.
    let problems = h.problems(case.endpoint.component);
    let status_word = match &case.rule.fault {
        Fault::Status { code, .. } => Some(code.to_string()),
        _ => None,
    };
    let named = problems.iter().any(|l| {
        let l = l.to_lowercase();
        case.endpoint
            .words
            .iter()
            .any(|w| l.contains(&w.to_lowercase()))
            || status_word.as_deref().is_some_and(|s| l.contains(s))
    });
    if !named {
        return Err(format!(
            "no warn/error line of {} names the fault; its problems: {problems:#?}",
            case.endpoint.component
        ));
    }
    Ok(format!("pass ({rounds} rounds, fired {fired}x)"))
}

/// Equal except for how often upserts (indicator import, incident PATCH) were sent.
fn same_but_counts(a: &Written, b: &Written) -> bool {
    a.comments == b.comments
        && a.indicators == b.indicators
        && a.tags == b.tags
        && a.submissions == b.submissions
        && a.indicator_writes >= b.indicator_writes
        && a.tag_patches >= b.tag_patches
}

#[test]
fn every_endpoint_survives_every_fault() {
    let base = Harness::start(rich_scenario(), &[]);
    for _ in 0..6 {
        base.round();
    }
    let state = base.sims.state();
    let baseline = normalized(&base, &state);
    assert_eq!(baseline.comments.len(), 3, "{baseline:#?}");
    let sub = &state.vmray_submissions[0];
    let entra_by_poller = state
        .calls
        .iter()
        .take_while(|c| c.service != Service::Vmray)
        .filter(|c| c.service == Service::Entra)
        .count() as u32;
    // The poller's first tick takes one token; the defender's first token
    // request comes after the poller's ticks of the first round.
    let entra_by_poller = entra_by_poller.max(1);
    drop(base);

    let cases = cases(sub.sample_id, sub.submission_id, entra_by_poller);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Result<String, String>)>> = Mutex::new(Vec::new());
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(case) = cases.get(i) else { break };
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_case(case, &baseline)
                }))
                .unwrap_or_else(|p| {
                    Err(p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panicked".into()))
                });
                results.lock().unwrap().push((i, r));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _)| *i);
    let mut table = String::from("\nfault matrix (endpoint × fault → result)\n");
    let mut failures = Vec::new();
    let mut passed = 0;
    for (i, r) in &results {
        let c = &cases[*i];
        let cell = match r {
            Ok(note) => {
                passed += 1;
                note.clone()
            }
            Err(e) => {
                failures.push(format!(
                    "{} × {}: {}",
                    c.endpoint.name,
                    c.label,
                    e.chars().take(4000).collect::<String>()
                ));
                "FAIL".into()
            }
        };
        table.push_str(&format!(
            "  {:<32} {:<36} {}\n",
            c.endpoint.name, c.label, cell
        ));
    }
    table.push_str(&format!(
        "{passed}/{} cases passed in {:.1} s\n",
        cases.len(),
        started.elapsed().as_secs_f64()
    ));
    eprintln!("{table}");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
