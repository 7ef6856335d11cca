//! Kill a tick at each recorded state transition (the test host traps the
//! component instead of applying its next key-value write), then run ticks to
//! completion: what the simulators recorded must equal an uninterrupted run —
//! nothing lost, nothing written or submitted twice.

mod support;

use simulators::{Scenario, SimState};
use support::{written, Harness, Written, COMPONENTS};

fn scenario() -> Scenario {
    Scenario::from_json(
        r##"{
        "alerts": [
          {"id": "crash-1", "incident_id": "801", "severity": "high", "age_minutes": 10,
           "evidence": [{"@odata.type": "#microsoft.graph.security.analyzedMessageEvidence",
                         "networkMessageId": "11111111-0000-0000-0000-00000000c001", "urls": [], "urlCount": 1}]},
          {"id": "crash-2", "incident_id": "801", "severity": "medium", "age_minutes": 9,
           "evidence": [{"@odata.type": "#microsoft.graph.security.urlEvidence", "url": "http://drop.example/get"}]},
          {"id": "crash-3", "incident_id": "802", "title": "Teams message reported", "severity": "low", "age_minutes": 8, "evidence": []}
        ],
        "mails": [{"network_message_id": "11111111-0000-0000-0000-00000000c001",
                   "urls": [{"url": "http://drop.example/get", "age_hours": 2}]}],
        "incidents": [{"id": "801", "custom_tags": ["keep-me"]}],
        "vmray": {"urls": {"http://drop.example/get": {
            "verdict": "malicious", "vti_score": 80, "threat_names": [{"name": "Emotet", "sources": ["vti"]}],
            "iocs": {"urls": [{"url": "http://drop.example/get", "verdict": "malicious"}],
                     "ips": [{"ip": "198.51.100.7", "verdict": "suspicious"}]},
            "children": [{"filename": "payload.exe", "verdict": "malicious",
                          "sha256": "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8",
                          "iocs": {"files": [{"filename": "payload.exe", "verdict": "malicious",
                                              "sha256": "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"}]}}]}}}
    }"##,
    )
    .unwrap()
}

/// The uninterrupted schedule: rounds of poller, vmray, defender.
const ROUNDS: usize = 4;

fn schedule() -> Vec<&'static str> {
    (0..ROUNDS).flat_map(|_| COMPONENTS).collect()
}

/// What was written, with the run-specific parts (ports, dates) taken out.
fn normalized(h: &Harness, s: &SimState) -> Written {
    let mut w = written(s);
    let vmray = h.sims.vmray_url();
    for (_, text) in w.comments.iter_mut() {
        *text = text
            .lines()
            .filter(|l| !l.contains("Analysis date:"))
            .collect::<Vec<_>>()
            .join("\n")
            .replace(&vmray, "<vmray>");
    }
    w
}

fn finish(h: &Harness) {
    for _ in 0..ROUNDS + 2 {
        h.round();
    }
}

#[test]
fn a_tick_killed_at_any_transition_changes_nothing_in_the_end() {
    let base = Harness::start(scenario(), &[]);
    finish(&base);
    let baseline = normalized(&base, &base.sims.state());
    assert_eq!(
        baseline.submissions,
        vec!["http://drop.example/get".to_string()]
    );
    assert_eq!(baseline.comments.len(), 3, "{:#?}", baseline.comments);
    assert!(baseline.indicators.len() >= 3);
    drop(base);

    let mut kills = 0;
    for (t, victim) in schedule().into_iter().enumerate() {
        for w in 0.. {
            let h = Harness::start(scenario(), &[]);
            for c in &schedule()[..t] {
                h.tick(c).unwrap_or_else(|e| panic!("{c}: {e}"));
            }
            h.app.set_trap_after_kv_writes(Some(w));
            let outcome = h.app.cron_tick(victim, h.app.now_unix_secs());
            if matches!(outcome, Ok(Ok(()))) {
                break; // the tick made fewer than w+1 writes: every point of it was tried
            }
            assert!(
                outcome.is_err(),
                "tick {t} ({victim}) should have trapped, got {outcome:?}"
            );
            kills += 1;
            finish(&h);
            let got = normalized(&h, &h.sims.state());
            assert_eq!(
                got,
                baseline,
                "killed {victim} (tick {t}) before its write #{}",
                w + 1
            );
        }
    }
    println!(
        "crash test: {kills} kills over {} ticks, every run converged to the uninterrupted result",
        schedule().len()
    );
    assert!(kills >= 15, "only {kills} transitions were exercised");
}
