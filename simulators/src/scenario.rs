//! The scenario: the world the simulators start with (JSON, serde).

use crate::quotas::Quotas;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Everything the four simulators serve. All fields are optional in JSON.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub vmray_api_key: String,
    /// Lifetime of issued access tokens.
    pub token_lifetime_seconds: u64,
    /// Largest page `GET /security/alerts_v2` returns (`$top` may ask for less).
    pub alert_page_size: usize,
    /// Display name written as `createdByDisplayName` on comments the connector posts.
    pub app_display_name: String,
    /// Posting a comment bumps the alert's `lastUpdateDateTime` (what Defender does).
    pub comment_updates_alert: bool,
    /// Indicator cap of the tenant (Defender: 15,000, not raisable).
    pub indicator_cap: usize,
    pub alerts: Vec<AlertSpec>,
    pub mails: Vec<MailSpec>,
    pub incidents: Vec<IncidentSpec>,
    pub vmray: VmraySpec,
    /// Rate quotas (sliding minute on the simulated clock); all unlimited by default.
    pub quotas: Quotas,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            tenant_id: "00000000-0000-0000-0000-0000000000aa".into(),
            client_id: "11111111-1111-1111-1111-111111111111".into(),
            client_secret: "sim-client-secret".into(),
            vmray_api_key: "sim-vmray-api-key".into(),
            token_lifetime_seconds: 3599,
            alert_page_size: 100,
            app_display_name: "MDO VMRay Connector".into(),
            comment_updates_alert: true,
            indicator_cap: 15_000,
            alerts: vec![],
            mails: vec![],
            incidents: vec![],
            vmray: VmraySpec::default(),
            quotas: Quotas::default(),
        }
    }
}

/// One Defender alert.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertSpec {
    pub id: String,
    pub incident_id: String,
    pub title: String,
    pub description: String,
    pub severity: String,
    pub status: String,
    pub category: String,
    /// Minutes before the clock at start (or at `add_alert` time) the alert was created.
    pub age_minutes: i64,
    pub service_source: String,
    pub detection_source: Option<String>,
    /// Evidence objects, served as given (missing common fields get defaults).
    pub evidence: Vec<Value>,
    /// A raw alert object served as-is (hostile-input tests); overrides everything else
    /// except `id` bookkeeping (its own `id` field is used when present).
    pub raw: Option<Value>,
}

impl Default for AlertSpec {
    fn default() -> Self {
        AlertSpec {
            id: String::new(),
            incident_id: String::new(),
            title: "Email reported by user as malware or phish".into(),
            description: String::new(),
            severity: "medium".into(),
            status: "new".into(),
            category: "InitialAccess".into(),
            age_minutes: 10,
            service_source: "microsoftDefenderForOffice365".into(),
            detection_source: None,
            evidence: vec![],
            raw: None,
        }
    }
}

/// The URLs of one mail as advanced hunting (`EmailUrlInfo`) knows them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailSpec {
    pub network_message_id: String,
    pub urls: Vec<MailUrlSpec>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailUrlSpec {
    pub url: String,
    /// Body, Header, Attachment, QRCode …
    pub location: String,
    /// Age of the `EmailUrlInfo` row (its Timestamp) relative to the clock at start.
    pub age_hours: f64,
    /// The row only becomes visible to hunting this many minutes after start
    /// (URLs that reach Graph late).
    pub visible_after_minutes: Option<i64>,
}

impl Default for MailUrlSpec {
    fn default() -> Self {
        MailUrlSpec {
            url: String::new(),
            location: "Body".into(),
            age_hours: 1.0,
            visible_after_minutes: None,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IncidentSpec {
    pub id: String,
    pub display_name: Option<String>,
    pub status: Option<String>,
    pub severity: Option<String>,
    pub custom_tags: Vec<String>,
    pub system_tags: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VmraySpec {
    /// Seconds between submission and a finished analysis.
    pub analysis_delay_seconds: u64,
    /// Verdict of every URL or file without its own spec.
    pub default_verdict: String,
    /// Sample specs by submitted URL (exact string).
    pub urls: BTreeMap<String, SampleSpec>,
    /// Sample specs of submitted files, by SHA-256 (lower-case hex) or file name.
    pub files: BTreeMap<String, SampleSpec>,
    /// Analyses that exist before the run starts.
    pub prior_submissions: Vec<PriorSubmissionSpec>,
    pub verdict_quota: u64,
    pub version: String,
}

impl Default for VmraySpec {
    fn default() -> Self {
        VmraySpec {
            analysis_delay_seconds: 0,
            default_verdict: "clean".into(),
            urls: BTreeMap::new(),
            files: BTreeMap::new(),
            prior_submissions: vec![],
            verdict_quota: 10_000,
            version: "2026.2.1".into(),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PriorSubmissionSpec {
    pub url: String,
    pub age_days: f64,
    pub tags: Vec<String>,
    pub comment: String,
    pub sample: SampleSpec,
}

/// What VMRay finds for one sample. Everything is optional.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SampleSpec {
    /// malicious, suspicious, clean, not_available (default: the scenario's default_verdict)
    pub verdict: Option<String>,
    pub verdict_reason: Option<String>,
    pub vti_score: Option<i64>,
    pub classifications: Vec<String>,
    pub threat_names: Vec<ThreatNameSpec>,
    pub vtis: Vec<VtiSpec>,
    pub iocs: IocsSpec,
    pub mitre_attack_techniques: Vec<Value>,
    /// Child samples (a downloaded file, an embedded URL …).
    pub children: Vec<SampleSpec>,
    /// Per-sample override of the analysis delay.
    pub analysis_delay_seconds: Option<u64>,
    /// For children: the child's URL …
    pub url: Option<String>,
    /// … or its file name and hashes.
    pub filename: Option<String>,
    pub sha256: Option<String>,
    pub sha1: Option<String>,
    pub md5: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ThreatNameSpec {
    pub name: String,
    pub sources: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct VtiSpec {
    pub category: String,
    pub operation: String,
    pub classifications: Vec<String>,
    pub score: i64,
}

impl Default for VtiSpec {
    fn default() -> Self {
        VtiSpec {
            category: "Heuristics".into(),
            operation: String::new(),
            classifications: vec![],
            score: 1,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IocsSpec {
    pub files: Vec<FileIocSpec>,
    pub urls: Vec<UrlIocSpec>,
    pub ips: Vec<IpIocSpec>,
    pub domains: Vec<DomainIocSpec>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FileIocSpec {
    pub filename: String,
    pub verdict: String,
    pub sha256: Option<String>,
    pub sha1: Option<String>,
    pub md5: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UrlIocSpec {
    pub url: String,
    pub verdict: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IpIocSpec {
    pub ip: String,
    pub verdict: String,
    pub domains: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DomainIocSpec {
    pub domain: String,
    pub verdict: String,
    pub ip_addresses: Vec<String>,
}

impl Scenario {
    /// Parses a scenario from JSON text.
    pub fn from_json(text: &str) -> anyhow::Result<Scenario> {
        Ok(serde_json::from_str(text)?)
    }

    /// Reads a scenario file.
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Scenario> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read scenario {}: {e}", path.display()))?;
        Self::from_json(&text)
            .map_err(|e| anyhow::anyhow!("invalid scenario {}: {e}", path.display()))
    }

    /// The built-in demo: four MDO alert kinds over two incidents, malicious / suspicious /
    /// clean URLs, a URL that drops a file (child sample with a file-hash IOC) and one
    /// prior analysis two days old.
    pub fn demo() -> Scenario {
        const PHISH: &str = "http://login-micros0ft.example/verify?user=alice";
        const NEWSLETTER: &str = "https://news.contoso.example/weekly";
        const DROPPER: &str = "http://dl.invoice-portal.example/invoice.zip";
        const SHARED: &str = "https://cdn.shared-files.example/doc/8812";
        let dropped_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let dropped_sha1 = "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3";
        let dropped_md5 = "098f6bcd4621d373cade4e832627b4f6";

        let message = |nm: &str, subject: &str, urls: Vec<&str>| {
            json!({
                "@odata.type": "#microsoft.graph.security.analyzedMessageEvidence",
                "networkMessageId": nm,
                "internetMessageId": format!("<{nm}@mail.example>"),
                "subject": subject,
                "senderIp": "198.51.100.7",
                "recipientEmailAddress": "alice@contoso.example",
                "p1Sender": {"emailAddress": "billing@invoice-portal.example", "displayName": "Billing", "domainName": "invoice-portal.example"},
                "p2Sender": {"emailAddress": "billing@invoice-portal.example", "displayName": "Billing", "domainName": "invoice-portal.example"},
                "deliveryAction": "delivered",
                "deliveryLocation": "inbox",
                "urls": urls,
                "urlCount": if urls.is_empty() { 1 } else { urls.len() },
                "attachmentsCount": 0,
                "threats": ["Phish"],
                "threatDetectionMethods": ["urlDetonationReputation"],
                "language": "en",
                "verdict": "suspicious",
                "remediationStatus": "none",
                "roles": [],
                "tags": []
            })
        };

        let mut urls = BTreeMap::new();
        urls.insert(
            PHISH.to_string(),
            SampleSpec {
                verdict: Some("malicious".into()),
                verdict_reason: Some("Detected phishing page impersonating Microsoft".into()),
                vti_score: Some(92),
                classifications: vec!["Phishing".into()],
                threat_names: vec![ThreatNameSpec {
                    name: "Phishing.Generic".into(),
                    sources: vec!["vti".into()],
                }],
                vtis: vec![VtiSpec {
                    category: "Heuristics".into(),
                    operation: "Detected phishing page".into(),
                    classifications: vec!["Phishing".into()],
                    score: 5,
                }],
                iocs: IocsSpec {
                    urls: vec![UrlIocSpec {
                        url: PHISH.into(),
                        verdict: "malicious".into(),
                    }],
                    domains: vec![DomainIocSpec {
                        domain: "login-micros0ft.example".into(),
                        verdict: "malicious".into(),
                        ip_addresses: vec!["203.0.113.9".into()],
                    }],
                    ips: vec![IpIocSpec {
                        ip: "203.0.113.9".into(),
                        verdict: "malicious".into(),
                        domains: vec!["login-micros0ft.example".into()],
                    }],
                    ..Default::default()
                },
                mitre_attack_techniques: vec![
                    json!({"technique_id": "T1566.002", "technique": "Spearphishing Link", "tactics": ["Initial Access"]}),
                ],
                ..Default::default()
            },
        );
        urls.insert(
            DROPPER.to_string(),
            SampleSpec {
                verdict: Some("malicious".into()),
                verdict_reason: Some("Downloads a malicious executable".into()),
                vti_score: Some(85),
                classifications: vec!["Downloader".into()],
                threat_names: vec![
                    ThreatNameSpec {
                        name: "Lumma".into(),
                        sources: vec!["vti".into(), "yara".into()],
                    },
                    ThreatNameSpec {
                        name: "Trojan.Agent".into(),
                        sources: vec!["av".into()],
                    },
                ],
                vtis: vec![VtiSpec {
                    category: "Network Connection".into(),
                    operation: "Downloads an executable file".into(),
                    classifications: vec!["Downloader".into()],
                    score: 4,
                }],
                iocs: IocsSpec {
                    urls: vec![UrlIocSpec {
                        url: DROPPER.into(),
                        verdict: "malicious".into(),
                    }],
                    domains: vec![DomainIocSpec {
                        domain: "dl.invoice-portal.example".into(),
                        verdict: "suspicious".into(),
                        ip_addresses: vec![],
                    }],
                    ..Default::default()
                },
                children: vec![SampleSpec {
                    filename: Some("invoice.exe".into()),
                    sha256: Some(dropped_sha256.into()),
                    sha1: Some(dropped_sha1.into()),
                    md5: Some(dropped_md5.into()),
                    verdict: Some("malicious".into()),
                    verdict_reason: Some("Lumma stealer".into()),
                    vti_score: Some(100),
                    classifications: vec!["Spyware".into()],
                    threat_names: vec![ThreatNameSpec {
                        name: "Lumma".into(),
                        sources: vec!["vti".into(), "config_extractors".into()],
                    }],
                    iocs: IocsSpec {
                        files: vec![FileIocSpec {
                            filename: "invoice.exe".into(),
                            verdict: "malicious".into(),
                            sha256: Some(dropped_sha256.into()),
                            sha1: Some(dropped_sha1.into()),
                            md5: Some(dropped_md5.into()),
                        }],
                        ips: vec![IpIocSpec {
                            ip: "192.0.2.44".into(),
                            verdict: "malicious".into(),
                            domains: vec![],
                        }],
                        ..Default::default()
                    },
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        let shared_spec = SampleSpec {
            verdict: Some("suspicious".into()),
            verdict_reason: Some("Page requests credentials".into()),
            vti_score: Some(55),
            classifications: vec!["Phishing".into()],
            vtis: vec![VtiSpec {
                category: "Heuristics".into(),
                operation: "Page contains a login form".into(),
                classifications: vec!["Phishing".into()],
                score: 3,
            }],
            iocs: IocsSpec {
                urls: vec![UrlIocSpec {
                    url: SHARED.into(),
                    verdict: "suspicious".into(),
                }],
                ..Default::default()
            },
            ..Default::default()
        };
        urls.insert(SHARED.to_string(), shared_spec.clone());
        urls.insert(
            NEWSLETTER.to_string(),
            SampleSpec {
                verdict: Some("clean".into()),
                vti_score: Some(0),
                ..Default::default()
            },
        );

        Scenario {
            alerts: vec![
                AlertSpec {
                    id: "da-user-reported-1".into(),
                    incident_id: "101".into(),
                    title: "Email reported by user as malware or phish".into(),
                    severity: "medium".into(),
                    age_minutes: 30,
                    evidence: vec![
                        message("nm-demo-0001", "Your mailbox is almost full", vec![]),
                        json!({"@odata.type": "#microsoft.graph.security.mailboxEvidence",
                               "primaryAddress": "alice@contoso.example", "displayName": "Alice",
                               "verdict": "unknown", "remediationStatus": "none", "roles": [], "tags": []}),
                    ],
                    ..Default::default()
                },
                AlertSpec {
                    id: "da-url-click-2".into(),
                    incident_id: "102".into(),
                    title: "A potentially malicious URL click was detected".into(),
                    severity: "high".into(),
                    age_minutes: 25,
                    evidence: vec![
                        json!({"@odata.type": "#microsoft.graph.security.urlEvidence", "url": DROPPER,
                               "verdict": "suspicious", "remediationStatus": "none", "roles": [], "tags": []}),
                        json!({"@odata.type": "#microsoft.graph.security.userEvidence",
                               "userAccount": {"accountName": "bob", "userPrincipalName": "bob@contoso.example"},
                               "verdict": "unknown", "remediationStatus": "none", "roles": [], "tags": []}),
                    ],
                    ..Default::default()
                },
                AlertSpec {
                    id: "da-url-removed-3".into(),
                    incident_id: "101".into(),
                    title: "Email messages containing malicious URL removed after delivery".into(),
                    severity: "informational".into(),
                    age_minutes: 20,
                    evidence: vec![message(
                        "nm-demo-0003",
                        "Shared document",
                        vec![PHISH, SHARED],
                    )],
                    ..Default::default()
                },
                AlertSpec {
                    id: "da-teams-4".into(),
                    incident_id: "102".into(),
                    title: "Teams message reported by user as security risk".into(),
                    severity: "low".into(),
                    age_minutes: 15,
                    evidence: vec![json!({
                        "@odata.type": "#microsoft.graph.security.userEvidence",
                        "userAccount": {"accountName": "carol", "userPrincipalName": "carol@contoso.example"},
                        "verdict": "unknown", "remediationStatus": "none", "roles": ["contextual"], "tags": []
                    })],
                    ..Default::default()
                },
            ],
            mails: vec![
                MailSpec {
                    network_message_id: "nm-demo-0001".into(),
                    urls: vec![
                        MailUrlSpec {
                            url: PHISH.into(),
                            location: "Body".into(),
                            age_hours: 0.6,
                            visible_after_minutes: None,
                        },
                        MailUrlSpec {
                            url: NEWSLETTER.into(),
                            location: "Body".into(),
                            age_hours: 0.6,
                            visible_after_minutes: None,
                        },
                    ],
                },
                MailSpec {
                    network_message_id: "nm-demo-0003".into(),
                    urls: vec![
                        MailUrlSpec {
                            url: PHISH.into(),
                            location: "Body".into(),
                            age_hours: 0.5,
                            visible_after_minutes: None,
                        },
                        MailUrlSpec {
                            url: SHARED.into(),
                            location: "Attachment".into(),
                            age_hours: 0.5,
                            visible_after_minutes: None,
                        },
                    ],
                },
            ],
            incidents: vec![
                IncidentSpec {
                    id: "101".into(),
                    display_name: Some("Phishing campaign targeting alice".into()),
                    ..Default::default()
                },
                IncidentSpec {
                    id: "102".into(),
                    display_name: Some("Malicious URL click and Teams report".into()),
                    custom_tags: vec!["existing-tag".into()],
                    ..Default::default()
                },
            ],
            vmray: VmraySpec {
                urls,
                prior_submissions: vec![PriorSubmissionSpec {
                    url: SHARED.into(),
                    age_days: 2.0,
                    tags: vec!["MDO".into()],
                    comment: "earlier analysis".into(),
                    sample: shared_spec,
                }],
                ..Default::default()
            },
            ..Default::default()
        }
    }
}
