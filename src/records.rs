//! The records kept in the shared key-value store: the contract between the
//! components. Each key has exactly one writer, so no atomics are needed; every
//! record carries a schema version `v` and keys carry the tenant id.
//!
//! | key                              | writer   | readers           |
//! |----------------------------------|----------|-------------------|
//! | `mdo:{tenant}:poll:cursor`       | poller   | poller            |
//! | `mdo:{tenant}:poll:open`         | poller   | vmray, defender   |
//! | `mdo:{tenant}:alert:{alert}`     | poller   | vmray, defender   |
//! | `mdo:{tenant}:url:{urlkey}`      | vmray    | vmray             |
//! | `mdo:{tenant}:sample:{id}`       | vmray    | defender          |
//! | `mdo:{tenant}:va:{alert}`        | vmray    | defender, poller  |
//! | `mdo:{tenant}:wb:{alert}`        | defender | poller            |
//! | `mdo:{tenant}:ind:{kind}:{hash}` | defender | defender          |
//! | `mdo:{tenant}:ind:pending`       | defender | defender          |
//! | `mdo:{tenant}:gc:{component}`    | that one | that one          |
//! | `mdo:{tenant}:inc:{incident}`    | defender | defender          |
//! | `mdo:{tenant}:att:{sha256}`      | poller   | vmray             |
//! | `mdo:{tenant}:att:{sha256}:{n}`  | poller   | vmray             |
//!
//! `att:{sha256}` is a [`FileBlob`] (name, size, chunk count) for an attachment
//! of a user-reported mail; `att:{sha256}:{n}` are its raw bytes, in chunks of
//! at most [`crate::attachments::CHUNK_BYTES`], written before the meta record
//! (a meta record means every chunk is there). A file's analysis is a
//! `url:f{sha256 prefix}` record ([`keys::file_analysis`]), owned by vmray.

use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::model::{IndicatorAction, IndicatorKind, Ioc, Verdict};
use crate::urls::short_hash;

/// Schema version written into every record.
pub const SCHEMA: u32 = 1;

/// Key builders. Alert ids that are long or carry unusual characters are
/// hashed, so every key stays under every backend's limits (Cosmos: 255
/// characters, no `/ \ ? #`).
pub mod keys {
    use super::*;

    fn id_part(id: &str) -> String {
        if id.len() <= 80
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            id.to_string()
        } else {
            format!("h{}", short_hash(id))
        }
    }

    pub fn prefix(tenant: &str) -> String {
        format!("mdo:{tenant}:")
    }
    pub fn cursor(tenant: &str) -> String {
        format!("mdo:{tenant}:poll:cursor")
    }
    pub fn open(tenant: &str) -> String {
        format!("mdo:{tenant}:poll:open")
    }
    pub fn alert(tenant: &str, alert_id: &str) -> String {
        format!("mdo:{tenant}:alert:{}", id_part(alert_id))
    }
    pub fn url(tenant: &str, url_key: &str) -> String {
        format!("mdo:{tenant}:url:{url_key}")
    }
    pub fn sample(tenant: &str, sample_id: u64) -> String {
        format!("mdo:{tenant}:sample:{sample_id}")
    }
    pub fn analyses(tenant: &str, alert_id: &str) -> String {
        format!("mdo:{tenant}:va:{}", id_part(alert_id))
    }
    pub fn writeback(tenant: &str, alert_id: &str) -> String {
        format!("mdo:{tenant}:wb:{}", id_part(alert_id))
    }
    pub fn indicator(tenant: &str, kind: IndicatorKind, value: &str) -> String {
        format!(
            "mdo:{tenant}:ind:{}:{}",
            kind.as_str(),
            short_hash(&value.to_ascii_lowercase())
        )
    }
    /// When a component last swept its expired records.
    pub fn gc(tenant: &str, component: &str) -> String {
        format!("mdo:{tenant}:gc:{component}")
    }
    pub fn indicator_pending(tenant: &str) -> String {
        format!("mdo:{tenant}:ind:pending")
    }
    pub fn incident(tenant: &str, incident_id: &str) -> String {
        format!("mdo:{tenant}:inc:{}", id_part(incident_id))
    }
    /// The meta record of a stored attachment (`sha256`: 64 lower-case hex).
    pub fn file_blob(tenant: &str, sha256: &str) -> String {
        format!("mdo:{tenant}:att:{sha256}")
    }
    /// Chunk `n` (from 0) of a stored attachment's bytes.
    pub fn file_chunk(tenant: &str, sha256: &str, n: u32) -> String {
        format!("mdo:{tenant}:att:{sha256}:{n}")
    }
    /// The key part of a file's analysis record: `url:{file_analysis(..)}`.
    /// `f` + 128 bits of the SHA-256 never equals a URL key (32 hex digits).
    pub fn file_analysis(sha256: &str) -> String {
        format!("f{}", &sha256[..sha256.len().min(32)])
    }
}

/// A record that failed to decode: the key is named, the tick goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record `{key}` is unreadable: {problem}")]
pub struct RecordError {
    pub key: String,
    pub problem: String,
}

/// Serialise a record (always succeeds for our types).
pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    serde_json::to_vec(record).expect("records serialise")
}

#[derive(Deserialize)]
struct VersionOnly {
    v: u32,
}

/// Decode a record, refusing versions newer than this build understands.
pub fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, RecordError> {
    let err = |problem: String| RecordError {
        key: key.to_string(),
        problem,
    };
    let version: VersionOnly =
        serde_json::from_slice(bytes).map_err(|e| err(format!("no schema version ({e})")))?;
    if version.v > SCHEMA {
        return Err(err(format!(
            "schema version {} is newer than this build's {SCHEMA}",
            version.v
        )));
    }
    serde_json::from_slice(bytes).map_err(|e| err(e.to_string()))
}

/// Where the poller's listing resumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    pub v: u32,
    /// Alerts last updated at or after this instant are listed next tick.
    pub since: DateTime<Utc>,
    /// A listing longer than one tick may page through: the page to go on
    /// with next tick (Graph's `@odata.nextLink`)…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<String>,
    /// …and the newest update among the pages listed so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_newest: Option<DateTime<Utc>>,
}

/// Alerts the poller took in that the defender component has not finished.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpenAlerts {
    pub v: u32,
    pub ids: Vec<String>,
}

/// A URL of an alert: normalised, with its store key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlRef {
    pub url: String,
    pub key: String,
}

/// A URL found in the alert but not analysed, and why (shown in the comment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedUrl {
    pub url: String,
    pub reason: String,
}

/// Where the poller is with one alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum AlertStage {
    /// Waiting for advanced hunting to know the alert's URLs.
    AwaitingUrls { tries: u32, next_try: DateTime<Utc> },
    /// URLs known: ready for VMRay.
    Ready,
    /// No URL could be found (Teams, no mail, hunting never had it).
    NoUrls { reason: String },
}

/// One alert as the poller took it in (`mdo:{tenant}:alert:{alert}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    pub v: u32,
    pub alert_id: String,
    pub incident_id: Option<String>,
    pub title: String,
    pub created: DateTime<Utc>,
    pub first_seen: DateTime<Utc>,
    pub network_message_ids: Vec<String>,
    pub urls: Vec<UrlRef>,
    pub skipped: Vec<SkippedUrl>,
    #[serde(flatten)]
    pub stage: AlertStage,
    /// Mails whose attachments are fetched (user-reported alerts, with
    /// `analyze_user_reported_attachments` on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<MessageRef>,
    /// Attachments stored for analysis (`att:{sha256}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileRef>,
    /// Attachments not analysed, and why (shown on the alert).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachment_notes: Vec<AttachmentNote>,
    /// The attachment fetch; while `Pending` the VMRay side waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<AttachmentFetch>,
}

/// A mail of an alert: the mailbox it is in and its `internetMessageId`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRef {
    pub mailbox: String,
    pub internet_message_id: String,
}

/// A file to analyse: an attachment the poller stored under `att:{sha256}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// Lower-case hex.
    pub sha256: String,
    pub filename: String,
    pub size: u64,
}

/// An attachment (or a whole mail's attachments) not analysed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentNote {
    pub name: String,
    pub reason: String,
}

/// Where the poller is with an alert's attachments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AttachmentFetch {
    /// To fetch (again) at `next_try`. `held_no_url_reason`: the URL side
    /// found nothing, but the stage stays `ready` until the files are known
    /// (so the write-back does not post a "no URL" comment too early).
    Pending {
        tries: u32,
        next_try: DateTime<Utc>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        held_no_url_reason: Option<String>,
    },
    Done,
}

/// A stored attachment's meta record (`mdo:{tenant}:att:{sha256}`); the bytes
/// are in `chunks` chunk records, written before this one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileBlob {
    pub v: u32,
    pub sha256: String,
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    pub chunks: u32,
    pub stored_at: DateTime<Utc>,
}

/// The VMRay component's state for one URL (`mdo:{tenant}:url:{urlkey}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UrlAnalysis {
    pub v: u32,
    pub url: String,
    #[serde(flatten)]
    pub state: UrlState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum UrlState {
    /// A submit is about to be (or was) sent; if we find this on the next tick
    /// the submit's fate is unknown and must be reconciled, never repeated blindly.
    Submitting { since: DateTime<Utc>, attempts: u32 },
    /// VMRay accepted the submission; follow it.
    Running {
        submission_id: u64,
        sample_id: u64,
        submitted_at: DateTime<Utc>,
    },
    /// Results collected into sample records.
    Done {
        sample_id: u64,
        submission_id: Option<u64>,
        analysed_at: DateTime<Utc>,
        reused: bool,
    },
    /// Gave up (timeout, VMRay error); `at` lets a later alert try again.
    Failed { reason: String, at: DateTime<Utc> },
}

/// One analysed sample with what the write-back needs (`mdo:{tenant}:sample:{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleReport {
    pub v: u32,
    pub sample_id: u64,
    /// The URL analysed, for URL samples.
    pub url: Option<String>,
    /// File name and hash, for file samples (children that a URL downloaded).
    pub filename: Option<String>,
    pub sha256: Option<String>,
    pub verdict: Verdict,
    pub verdict_reason: Option<String>,
    pub vti_score: Option<u32>,
    pub classifications: Vec<String>,
    pub threat_names: Vec<ThreatName>,
    /// Highest-scoring VTIs first, bounded.
    pub vtis: Vec<Vti>,
    pub iocs: Vec<Ioc>,
    pub webif_url: String,
    pub analysed_at: DateTime<Utc>,
    pub child_ids: Vec<u64>,
    /// When this record was written (our clock), for expiry.
    #[serde(default)]
    pub stored_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreatName {
    pub name: String,
    pub sources: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vti {
    pub category: String,
    pub operation: String,
    pub score: u32,
}

/// What VMRay found for every URL of one alert (`mdo:{tenant}:va:{alert}`),
/// written once all of them are resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertAnalyses {
    pub v: u32,
    pub alert_id: String,
    pub results: Vec<UrlResult>,
    pub completed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UrlResult {
    /// The URL; for a file, a display text (`file invoice.html (SHA-256 …)`).
    pub url: String,
    #[serde(flatten)]
    pub outcome: UrlOutcome,
    /// Set for a file (attachment) result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum UrlOutcome {
    /// Sample (with children in their own records) ready to report.
    Sample {
        sample_id: u64,
        submission_id: Option<u64>,
        analysed_at: DateTime<Utc>,
        reused: bool,
    },
    /// No result; the reason goes on the alert.
    Failed { reason: String },
}

/// The write-back's progress on one alert (`mdo:{tenant}:wb:{alert}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Writeback {
    pub v: u32,
    pub alert_id: String,
    /// Comments by marker. `posted == false` is an intent: the POST may or may
    /// not have reached Graph, so the alert's comments are checked first.
    pub comments: Vec<CommentProgress>,
    /// Ticks on which some of this alert's indicators failed.
    #[serde(default)]
    pub indicator_attempts: u32,
    /// Indicators Defender kept refusing: reported on the alert, then given up.
    #[serde(default)]
    pub indicator_failures: Vec<IndicatorFailure>,
    pub indicators_done: bool,
    pub tags_done: bool,
    /// Failed write-back attempts; after a few the error goes on the alert.
    #[serde(default)]
    pub attempts: u32,
    /// Ticks on which the alert's comments could not be read. After a few the
    /// comments are posted anyway (a hostile alert may never be readable).
    #[serde(default)]
    pub unreadable_reads: u32,
    /// Set when the write-back gave up: only the error comment is still due.
    #[serde(default)]
    pub gave_up: Option<String>,
    pub done_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingIndicator {
    pub kind: IndicatorKind,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndicatorFailure {
    pub kind: IndicatorKind,
    pub value: String,
    pub action: IndicatorAction,
    pub reason: String,
}

/// An indicator import whose outcome is unknown (`mdo:{tenant}:ind:pending`):
/// written before the call, removed after it; found on a later tick, its
/// indicators are looked up instead of written again.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PendingImport {
    pub v: u32,
    pub items: Vec<PendingIndicator>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentProgress {
    pub marker: String,
    pub posted: bool,
}

/// An indicator this connector wrote (`mdo:{tenant}:ind:{kind}:{hash}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndicatorRecord {
    pub v: u32,
    pub value: String,
    pub kind: IndicatorKind,
    pub action: IndicatorAction,
    pub expires: DateTime<Utc>,
    pub written_at: DateTime<Utc>,
}

/// When a component last swept its expired records (`mdo:{tenant}:gc:{component}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    pub v: u32,
    pub at: DateTime<Utc>,
}

/// Tags this connector put on one incident (`mdo:{tenant}:inc:{incident}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentTags {
    pub v: u32,
    pub verdict: Verdict,
    pub threat_names: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_short_and_safe() {
        let t = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        let k = keys::alert(t, &"x/\\?#".repeat(100));
        assert!(k.len() < 120, "{k}");
        assert!(!k.contains(['/', '\\', '?', '#']));
        assert_eq!(keys::alert(t, "da637"), format!("mdo:{t}:alert:da637"));
        assert_eq!(
            keys::indicator(t, IndicatorKind::DomainName, "Evil.Example"),
            keys::indicator(t, IndicatorKind::DomainName, "evil.example")
        );
    }

    #[test]
    fn records_round_trip_and_refuse_future_versions() {
        let rec = UrlAnalysis {
            v: SCHEMA,
            url: "http://a.example/".into(),
            state: UrlState::Running {
                submission_id: 1,
                sample_id: 2,
                submitted_at: Utc::now(),
            },
        };
        let bytes = encode(&rec);
        assert_eq!(decode::<UrlAnalysis>("k", &bytes).unwrap(), rec);
        let future = String::from_utf8(bytes)
            .unwrap()
            .replace("\"v\":1", "\"v\":99");
        let e = decode::<UrlAnalysis>("k", future.as_bytes()).unwrap_err();
        assert!(e.problem.contains("newer"), "{e}");
        assert!(decode::<UrlAnalysis>("k", b"garbage").is_err());
    }
}
