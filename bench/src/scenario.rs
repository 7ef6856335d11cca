//! The benchmark's fixed scenarios, generated in code (deterministic: no
//! randomness, the same scenario every run).
//!
//! - `n` MDO alerts, all present at the start (a backlog the connector drains),
//!   10 minutes old, five alerts per incident, severities rotating.
//! - Each alert has one or two URLs (odd alerts two). Every fourth alert has
//!   its URLs only in advanced hunting (`analyzedMessageEvidence` with an empty
//!   `urls` list and a mail in `EmailUrlInfo`); the others in `urlEvidence`.
//! - URL reuse `r` %: that share of the URL slots repeats a URL an earlier
//!   alert already carried (a campaign); the others are new URLs. "Reused"
//!   means "seen in an earlier alert of the scenario", so VMRay already has (or
//!   is running) the analysis.
//! - Verdict mix per distinct URL (by its index): 20 % malicious (half of them
//!   drop a child file), 20 % suspicious, 60 % clean. Malicious URLs have 3 IOCs
//!   (URL, IP, domain) plus a file hash IOC when they drop a file; suspicious
//!   ones 2 (URL, IP); clean ones none.
//! - VMRay takes [`ANALYSIS_DELAY_SECS`] per analysis; no quotas, no faults,
//!   VMRay verdict quota and the Defender indicator cap set out of reach.

use serde_json::{json, Value};
use simulators::{
    DomainIocSpec, FileIocSpec, IocsSpec, IpIocSpec, SampleSpec, Scenario, UrlIocSpec,
};

/// Seconds VMRay needs for one analysis (two one-minute rounds).
pub const ANALYSIS_DELAY_SECS: u64 = 120;
/// Alerts per incident.
pub const ALERTS_PER_INCIDENT: usize = 5;

/// One benchmark scenario: its size and URL reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub alerts: usize,
    pub reuse_percent: u32,
}

impl Spec {
    pub fn name(&self) -> String {
        format!("{}-r{}", self.alerts, self.reuse_percent)
    }

    /// The six scenarios (`all`) or the two 10-alert ones (`small`).
    pub fn set(which: &str) -> Option<Vec<Spec>> {
        let sizes: &[usize] = match which {
            "small" => &[10],
            "all" => &[10, 1_000, 10_000],
            _ => return None,
        };
        Some(
            sizes
                .iter()
                .flat_map(|&alerts| {
                    [0, 60].map(|reuse_percent| Spec {
                        alerts,
                        reuse_percent,
                    })
                })
                .collect(),
        )
    }
}

/// A distinct URL of the scenario and what VMRay finds for it.
#[derive(Debug, Clone)]
pub struct GenUrl {
    pub url: String,
    pub verdict: &'static str,
    /// Child samples (dropped files).
    pub children: usize,
    /// IOCs of a verdict the connector turns into indicators (malicious, suspicious).
    pub indicator_iocs: usize,
}

#[derive(Debug, Clone)]
pub struct GenAlert {
    pub id: String,
    pub incident: String,
    /// Indexes into [`Generated::urls`].
    pub urls: Vec<usize>,
    pub via_hunting: bool,
}

/// The generated scenario, with the facts the vendor model and the report need.
#[derive(Debug, Clone)]
pub struct Generated {
    pub spec: Spec,
    pub alerts: Vec<GenAlert>,
    pub urls: Vec<GenUrl>,
    pub scenario: Scenario,
}

impl Generated {
    /// URL slots (occurrences) over all alerts.
    pub fn url_slots(&self) -> usize {
        self.alerts.iter().map(|a| a.urls.len()).sum()
    }

    /// URL slots that repeat an earlier alert's URL.
    pub fn reused_slots(&self) -> usize {
        self.url_slots() - self.urls.len()
    }
}

/// A small deterministic mixer (splitmix64), so "60 %" is spread evenly.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn hex64(seed: u64) -> String {
    (0..4)
        .map(|i| format!("{:016x}", mix(seed * 4 + i)))
        .collect()
}

fn new_url(u: usize) -> GenUrl {
    let url = format!("http://n{u}.bench.example/login?id={u}");
    let (verdict, children, indicator_iocs) = match u % 10 {
        0 => ("malicious", 1, 4),
        1 => ("malicious", 0, 3),
        2 | 3 => ("suspicious", 0, 2),
        _ => ("clean", 0, 0),
    };
    GenUrl {
        url,
        verdict,
        children,
        indicator_iocs,
    }
}

fn sample_spec(u: usize, g: &GenUrl) -> SampleSpec {
    let ip = format!(
        "45.{}.{}.{}",
        1 + (u / 62_500) % 250,
        (u / 250) % 250,
        1 + u % 250
    );
    let host = format!("n{u}.bench.example");
    let mut s = SampleSpec {
        verdict: Some(g.verdict.to_string()),
        ..SampleSpec::default()
    };
    match g.verdict {
        "malicious" => {
            s.vti_score = Some(90);
            s.classifications = vec!["Phishing".into()];
            s.threat_names = vec![simulators::ThreatNameSpec {
                name: "Lumma".into(),
                sources: vec!["vti".into()],
            }];
            s.iocs = IocsSpec {
                urls: vec![UrlIocSpec {
                    url: g.url.clone(),
                    verdict: "malicious".into(),
                }],
                ips: vec![IpIocSpec {
                    ip,
                    verdict: "malicious".into(),
                    domains: vec![host.clone()],
                }],
                domains: vec![DomainIocSpec {
                    domain: host,
                    verdict: "malicious".into(),
                    ip_addresses: vec![],
                }],
                files: vec![],
            };
            if g.children > 0 {
                let sha = hex64(u as u64);
                s.iocs.files.push(FileIocSpec {
                    filename: format!("payload{u}.exe"),
                    verdict: "malicious".into(),
                    sha256: Some(sha.clone()),
                    ..FileIocSpec::default()
                });
                s.children = vec![SampleSpec {
                    verdict: Some("malicious".into()),
                    filename: Some(format!("payload{u}.exe")),
                    sha256: Some(sha),
                    ..SampleSpec::default()
                }];
            }
        }
        "suspicious" => {
            s.vti_score = Some(55);
            s.iocs = IocsSpec {
                urls: vec![UrlIocSpec {
                    url: g.url.clone(),
                    verdict: "suspicious".into(),
                }],
                ips: vec![IpIocSpec {
                    ip,
                    verdict: "suspicious".into(),
                    domains: vec![],
                }],
                ..IocsSpec::default()
            };
        }
        _ => {}
    }
    s
}

/// Builds the scenario of `spec`.
pub fn generate(spec: Spec) -> Generated {
    let mut urls: Vec<GenUrl> = Vec::new();
    let mut alerts = Vec::with_capacity(spec.alerts);
    let mut alert_json = Vec::with_capacity(spec.alerts);
    let mut mails = Vec::new();
    let severities = ["low", "medium", "high", "informational"];
    let mut slot = 0u64;
    for i in 0..spec.alerts {
        let id = format!("bench-{i:05}");
        let incident = format!("{}", 9_000 + i / ALERTS_PER_INCIDENT);
        let count = 1 + i % 2;
        let mut mine = Vec::new();
        for _ in 0..count {
            slot += 1;
            let reuse = !urls.is_empty() && mix(slot) % 100 < u64::from(spec.reuse_percent);
            let mut u = if reuse {
                (mix(slot ^ 0xABCD) % urls.len() as u64) as usize
            } else {
                urls.push(new_url(urls.len()));
                urls.len() - 1
            };
            if mine.contains(&u) {
                urls.push(new_url(urls.len()));
                u = urls.len() - 1;
            }
            mine.push(u);
        }
        let via_hunting = i % 4 == 3;
        let evidence: Vec<Value> = if via_hunting {
            let nm = format!("{:08x}-0000-4000-8000-{:012x}", i, i);
            mails.push(json!({"network_message_id": nm,
                "urls": mine.iter().map(|&u| json!({"url": urls[u].url})).collect::<Vec<_>>()}));
            vec![
                json!({"@odata.type": "#microsoft.graph.security.analyzedMessageEvidence",
                        "networkMessageId": nm, "urls": [], "urlCount": mine.len()}),
            ]
        } else {
            mine.iter()
                .map(|&u| json!({"@odata.type": "#microsoft.graph.security.urlEvidence", "url": urls[u].url}))
                .collect()
        };
        alert_json.push(
            json!({"id": id, "incident_id": incident, "severity": severities[i % 4],
                               "age_minutes": 10, "evidence": evidence}),
        );
        alerts.push(GenAlert {
            id,
            incident,
            urls: mine,
            via_hunting,
        });
    }
    let mut scenario = Scenario::from_json(
        &json!({
            "alerts": alert_json,
            "mails": mails,
            "indicator_cap": 10_000_000,
            "vmray": {"analysis_delay_seconds": ANALYSIS_DELAY_SECS, "verdict_quota": 10_000_000},
        })
        .to_string(),
    )
    .expect("generated scenario parses");
    for (u, g) in urls.iter().enumerate() {
        scenario.vmray.urls.insert(g.url.clone(), sample_spec(u, g));
    }
    Generated {
        spec,
        alerts,
        urls,
        scenario,
    }
}
