//! Test fixtures shared by the core's unit tests.

use chrono::{DateTime, Utc};

use crate::model::Verdict;
use crate::records::{SampleReport, ThreatName, Vti, SCHEMA};

/// A malicious URL sample with one threat name and one VTI.
pub fn sample(id: u64) -> SampleReport {
    SampleReport {
        v: SCHEMA,
        sample_id: id,
        url: Some("http://evil.example/login".into()),
        filename: None,
        sha256: None,
        verdict: Verdict::Malicious,
        verdict_reason: Some("Phishing page".into()),
        vti_score: Some(90),
        classifications: vec!["Phishing".into()],
        threat_names: vec![ThreatName {
            name: "Lumma".into(),
            sources: vec!["vti".into()],
        }],
        vtis: vec![Vti {
            category: "Heuristics".into(),
            operation: "Detected phishing page".into(),
            score: 4,
        }],
        iocs: vec![],
        webif_url: "https://eu.cloud.vmray.com/samples/42".into(),
        analysed_at: DateTime::parse_from_rfc3339("2026-12-01T10:05:00Z")
            .unwrap()
            .with_timezone(&Utc),
        child_ids: vec![],
        stored_at: None,
    }
}
