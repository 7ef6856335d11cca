//! Domain vocabulary shared by every part of the connector.

use serde::{Deserialize, Serialize};

/// Alert severity as Graph spells it; unknown values are kept as `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Unknown,
    Informational,
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s.to_ascii_lowercase().as_str() {
            "unknown" | "unknownfuturevalue" => Severity::Unknown,
            "informational" => Severity::Informational,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            _ => return None,
        })
    }
}

/// A VMRay verdict, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    NotAvailable,
    Clean,
    Suspicious,
    Malicious,
}

impl Verdict {
    /// Lenient: VMRay sends `null`, odd casing, or values we do not know.
    pub fn parse(s: &str) -> Verdict {
        match s.trim().to_ascii_lowercase().as_str() {
            "malicious" => Verdict::Malicious,
            "suspicious" => Verdict::Suspicious,
            "clean" => Verdict::Clean,
            _ => Verdict::NotAvailable,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::NotAvailable => "not_available",
            Verdict::Clean => "clean",
            Verdict::Suspicious => "suspicious",
            Verdict::Malicious => "malicious",
        }
    }
}

/// Defender indicator action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IndicatorAction {
    Allowed,
    Audit,
    Warn,
    Block,
    BlockAndRemediate,
}

impl IndicatorAction {
    pub fn parse(s: &str) -> Option<IndicatorAction> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "allowed" => IndicatorAction::Allowed,
            "audit" => IndicatorAction::Audit,
            "warn" => IndicatorAction::Warn,
            "block" => IndicatorAction::Block,
            "blockandremediate" => IndicatorAction::BlockAndRemediate,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IndicatorAction::Allowed => "Allowed",
            IndicatorAction::Audit => "Audit",
            IndicatorAction::Warn => "Warn",
            IndicatorAction::Block => "Block",
            IndicatorAction::BlockAndRemediate => "BlockAndRemediate",
        }
    }
}

/// Defender indicator type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum IndicatorKind {
    FileSha256,
    FileSha1,
    FileMd5,
    Url,
    DomainName,
    IpAddress,
}

impl IndicatorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IndicatorKind::FileSha256 => "FileSha256",
            IndicatorKind::FileSha1 => "FileSha1",
            IndicatorKind::FileMd5 => "FileMd5",
            IndicatorKind::Url => "Url",
            IndicatorKind::DomainName => "DomainName",
            IndicatorKind::IpAddress => "IpAddress",
        }
    }

    pub fn is_file(self) -> bool {
        matches!(
            self,
            IndicatorKind::FileSha256 | IndicatorKind::FileSha1 | IndicatorKind::FileMd5
        )
    }

    /// A short human word for titles: "file", "URL", "domain", "IP".
    pub fn noun(self) -> &'static str {
        match self {
            IndicatorKind::FileSha256 | IndicatorKind::FileSha1 | IndicatorKind::FileMd5 => "file",
            IndicatorKind::Url => "URL",
            IndicatorKind::DomainName => "domain",
            IndicatorKind::IpAddress => "IP",
        }
    }
}

/// One indicator of compromise from a VMRay analysis, ready to become a
/// Defender indicator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ioc {
    pub kind: IndicatorKind,
    pub value: String,
    pub verdict: Verdict,
}
