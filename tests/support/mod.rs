//! The end-to-end harness: the simulators, and the real `.wasm` components on
//! the test host, wired the way a user wires them with `SPIN_VARIABLE_*`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use simulators::{Scenario, SimState, Simulators};
use test_host::{App, AppConfig, KvBackend};

pub const COMPONENTS: [&str; 3] = ["poller", "vmray", "defender"];

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fails with the command to run when the components were not built.
pub fn require_wasm(dir: &str) {
    for c in COMPONENTS {
        let p = root()
            .join(dir)
            .join(format!("wasm32-wasip2/release/{c}.wasm"));
        assert!(
            p.exists(),
            "{} is missing: build the components first (scripts/test.sh does)",
            p.display()
        );
    }
}

pub struct Harness {
    pub sims: Simulators,
    pub app: App,
    pub vars: HashMap<String, String>,
}

/// Variables pointing every component at the simulators.
pub fn sim_vars(sims: &Simulators, scenario: &Scenario) -> HashMap<String, String> {
    let mut v = sims.spin_variables(scenario);
    v.insert("log_level".into(), "debug".into());
    v
}

impl Harness {
    pub fn start(scenario: Scenario, extra: &[(&str, &str)]) -> Harness {
        Self::start_with(scenario, extra, "spin.toml", KvBackend::Memory)
    }

    pub fn start_with(
        scenario: Scenario,
        extra: &[(&str, &str)],
        manifest: &str,
        kv: KvBackend,
    ) -> Harness {
        require_wasm(if manifest == "spin-http.toml" {
            "target/http-only"
        } else {
            "target"
        });
        let sims = Simulators::start(scenario.clone()).expect("simulators start");
        let mut vars = sim_vars(&sims, &scenario);
        for (k, v) in extra {
            vars.insert(k.to_string(), v.to_string());
        }
        let app = App::load(
            &root().join(manifest),
            AppConfig {
                variables: vars.clone(),
                kv,
                wasm_dir: None,
            },
        )
        .expect("manifest loads");
        Harness { sims, app, vars }
    }

    /// One cron tick of one component; a trap or host failure fails the test.
    pub fn tick(&self, component: &str) -> Result<(), String> {
        self.app
            .cron_tick(component, self.app.now_unix_secs())
            .unwrap_or_else(|e| panic!("{component} trapped: {e:#}"))
    }

    /// One round: poller, vmray, defender, each once; every tick must succeed.
    pub fn round(&self) {
        for c in COMPONENTS {
            if let Err(e) = self.tick(c) {
                panic!("{c} tick failed: {e}\n{}", self.log_text());
            }
        }
    }

    /// Rounds until `done` holds (at most `max`); returns the rounds used.
    pub fn run_until(&self, max: usize, done: impl Fn(&SimState) -> bool) -> usize {
        for n in 1..=max {
            self.round();
            if done(&self.sims.state()) {
                return n;
            }
        }
        panic!("not done after {max} rounds\n{}", self.log_text());
    }

    /// Rounds with a minute of simulated time between them, until `done`.
    pub fn run_minutes_until(&self, max: usize, done: impl Fn(&SimState) -> bool) -> usize {
        for n in 1..=max {
            self.round();
            if done(&self.sims.state()) {
                return n;
            }
            self.advance(60);
        }
        panic!("not done after {max} rounds\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        self.app.logs().iter().map(|l| format!("{l}\n")).collect()
    }

    /// Parsed JSON log lines of one component.
    pub fn events(&self, component: &str) -> Vec<serde_json::Value> {
        self.app
            .logs()
            .iter()
            .filter(|l| l.component == component)
            .filter_map(|l| serde_json::from_str(&l.line).ok())
            .collect()
    }
}

/// What the connector wrote, for "same state" and "nothing more" comparisons.
#[derive(Debug, PartialEq, Eq)]
pub struct Written {
    pub comments: Vec<(String, String)>,
    pub indicators: Vec<(String, String, String)>,
    pub indicator_writes: u64,
    pub tag_patches: usize,
    pub tags: Vec<(String, Vec<String>)>,
    pub submissions: Vec<String>,
}

pub fn written(s: &SimState) -> Written {
    let mut comments: Vec<(String, String)> = s
        .comments
        .iter()
        .flat_map(|(a, cs)| cs.iter().map(move |c| (a.clone(), c.comment.clone())))
        .collect();
    comments.sort();
    let mut indicators: Vec<(String, String, String)> = s
        .indicators
        .iter()
        .map(|i| {
            (
                i.indicator_type.clone(),
                i.indicator_value.clone(),
                i.action.clone(),
            )
        })
        .collect();
    indicators.sort();
    let mut submissions: Vec<String> = s
        .vmray_submissions
        .iter()
        .filter_map(|x| x.url.clone())
        .collect();
    submissions.sort();
    Written {
        comments,
        indicators,
        indicator_writes: s.indicator_writes.iter().map(|w| w.count).sum(),
        tag_patches: s.incidents.values().map(|i| i.patches.len()).sum(),
        tags: s
            .incidents
            .values()
            .map(|i| (i.id.clone(), i.custom_tags.clone()))
            .collect(),
        submissions,
    }
}

pub fn manifest_text(name: &str) -> String {
    std::fs::read_to_string(root().join(name)).expect("manifest readable")
}

/// An alert whose URLs are in `urlEvidence`.
pub fn url_alert(id: &str, incident: &str, urls: &[&str]) -> serde_json::Value {
    let evidence: Vec<serde_json::Value> = urls
        .iter()
        .map(|u| serde_json::json!({"@odata.type": "#microsoft.graph.security.urlEvidence", "url": u}))
        .collect();
    serde_json::json!({"id": id, "incident_id": incident, "severity": "medium", "age_minutes": 10, "evidence": evidence})
}

/// An alert whose URLs only advanced hunting knows (one mail).
pub fn mail_alert(id: &str, incident: &str, network_message_id: &str) -> serde_json::Value {
    serde_json::json!({"id": id, "incident_id": incident, "severity": "medium", "age_minutes": 10,
        "evidence": [{"@odata.type": "#microsoft.graph.security.analyzedMessageEvidence",
                      "networkMessageId": network_message_id, "urls": [], "urlCount": 1}]})
}

pub fn scenario(v: serde_json::Value) -> Scenario {
    Scenario::from_json(&v.to_string()).expect("scenario parses")
}

/// Has every listed alert got at least one comment?
pub fn all_commented(s: &SimState, alerts: &[&str]) -> bool {
    alerts.iter().all(|a| !s.comment_texts(a).is_empty())
}

/// The crash suite's scenario: hunting, `urlEvidence`, an alert without URLs,
/// an incident with someone else's tag, a malicious URL with IOCs and a child
/// file. Touches every endpoint the connector uses.
pub fn rich_scenario() -> Scenario {
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

/// What was written, with the run-specific parts (ports, analysis dates) taken out.
pub fn normalized(h: &Harness, s: &SimState) -> Written {
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

impl Harness {
    /// One round in which a tick may fail (return `Err`) but never trap;
    /// returns the failures as `component: error`.
    pub fn round_lenient(&self) -> Vec<String> {
        let mut errs = Vec::new();
        for c in COMPONENTS {
            if let Err(e) = self.tick(c) {
                errs.push(format!("{c}: {e}"));
            }
        }
        errs
    }

    /// Advance both clocks (simulators and guests) by `secs`.
    pub fn advance(&self, secs: u64) {
        self.sims.clock().advance_secs(secs);
        self.app.advance_clock(std::time::Duration::from_secs(secs));
    }

    /// Warn and error lines of one component, raw.
    pub fn problems(&self, component: &str) -> Vec<String> {
        self.app
            .logs()
            .iter()
            .filter(|l| l.component == component)
            .filter(|l| {
                l.line.contains("\"level\":\"warn\"") || l.line.contains("\"level\":\"error\"")
            })
            .map(|l| l.line.clone())
            .collect()
    }
}

/// Everything the connector put out during a run, labelled: log lines, alert
/// comments, incident tags and PATCH bodies, indicator fields, VMRay
/// submission fields and the shared store's values. Secret scans search it.
pub fn outputs(h: &Harness) -> Vec<(String, String)> {
    let s = h.sims.state();
    let mut out: Vec<(String, String)> = h
        .app
        .logs()
        .iter()
        .map(|l| (format!("log of {}", l.component), l.line.clone()))
        .collect();
    for (alert, cs) in &s.comments {
        for c in cs {
            out.push((format!("comment on {alert}"), c.comment.clone()));
        }
    }
    for inc in s.incidents.values() {
        out.push((format!("tags of {}", inc.id), inc.custom_tags.join("\n")));
        for p in &inc.patches {
            out.push((format!("PATCH of incident {}", inc.id), p.to_string()));
        }
    }
    for i in &s.indicators {
        let text = format!(
            "{}\n{}\n{}\n{:?}",
            i.indicator_value, i.title, i.description, i.recommended_actions
        );
        out.push((format!("indicator {}", i.id), text));
    }
    for sub in &s.vmray_submissions {
        let text = format!(
            "{:?}\n{:?}\n{}\n{:?}\n{:?}",
            sub.url,
            sub.filename,
            sub.tags.join(","),
            sub.comment,
            sub.user_config
        );
        out.push((format!("VMRay submission {}", sub.submission_id), text));
    }
    for k in h.app.kv_keys("default") {
        let v = h.app.kv_get("default", &k).unwrap_or_default();
        out.push((
            format!("store key {k}"),
            format!("{k}\n{}", String::from_utf8_lossy(&v)),
        ));
    }
    out
}

/// Where any of `secrets` (each at least 8 characters) appears in `outputs`.
pub fn leaks(outputs: &[(String, String)], secrets: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for secret in secrets {
        assert!(secret.len() >= 8, "scan for a real secret, not {secret:?}");
        for (what, text) in outputs {
            if text.contains(secret.as_str()) {
                found.push(format!("{what} contains a secret ({}…)", &secret[..4]));
            }
        }
    }
    found
}

/// The same outcome: the same comments, indicators, submissions and incident
/// tag *sets*; upserts (indicator import, incident PATCH with the full tag
/// list) may have been re-sent after a crash, which duplicates nothing.
pub fn equivalent(got: &Written, want: &Written) -> bool {
    let tagsets = |w: &Written| -> Vec<(String, Vec<String>)> {
        w.tags
            .iter()
            .map(|(i, t)| {
                let mut t = t.clone();
                t.sort();
                (i.clone(), t)
            })
            .collect()
    };
    got.comments == want.comments
        && got.indicators == want.indicators
        && got.submissions == want.submissions
        && tagsets(got) == tagsets(want)
        && got.indicator_writes >= want.indicator_writes
        && got.tag_patches >= want.tag_patches
}
