//! The simulated world (mutable, behind one mutex) and the serialisable snapshot tests read.

use crate::clock::Clock;
use crate::faults::FaultSet;
use crate::quotas::QuotaState;
use crate::scenario::{AlertSpec, IncidentSpec, MailSpec, Scenario};
use crate::vmray::VmrayWorld;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Mutex;

/// The four simulated services.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Entra,
    Graph,
    Defender,
    Vmray,
}

impl Service {
    pub const ALL: [Service; 4] = [
        Service::Entra,
        Service::Graph,
        Service::Defender,
        Service::Vmray,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Service::Entra => "entra",
            Service::Graph => "graph",
            Service::Defender => "defender",
            Service::Vmray => "vmray",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Base URLs of the four servers.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Bases {
    pub entra: String,
    pub graph: String,
    pub defender: String,
    pub vmray: String,
}

/// What every handler shares.
pub(crate) struct Shared {
    pub clock: Clock,
    pub bases: Bases,
    pub world: Mutex<World>,
    /// Injected fault rules (not part of `World`: a rolled-back request keeps its count).
    pub faults: Mutex<FaultSet>,
    pub quotas: Mutex<QuotaState>,
    /// Held by `server::dispatch` while a request runs, so that rolling a faulted request's
    /// effects back cannot undo a concurrent request.
    pub serial: Mutex<()>,
}

impl Shared {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn faults(&self) -> std::sync::MutexGuard<'_, FaultSet> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn quotas(&self) -> std::sync::MutexGuard<'_, QuotaState> {
        self.quotas.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state snapshot, with the quota refusal counts.
    pub fn snapshot(&self) -> SimState {
        let now = self.clock.now();
        let mut state = self.lock().snapshot(now);
        state.throttled = self.quotas().throttled.clone();
        state
    }
}

/// Settings copied out of the scenario.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub vmray_api_key: String,
    pub token_lifetime_seconds: u64,
    pub alert_page_size: usize,
    pub app_display_name: String,
    pub comment_updates_alert: bool,
    pub indicator_cap: usize,
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub scope: String,
    pub expires: DateTime<Utc>,
}

/// A comment on an alert, in Graph's shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Comment {
    pub comment: String,
    pub created_by_display_name: String,
    pub created_date_time: String,
}

#[derive(Clone, Debug)]
pub(crate) struct Alert {
    pub id: String,
    pub spec: AlertSpec,
    pub created: DateTime<Utc>,
    pub last_updated: DateTime<Utc>,
    pub comments: Vec<Comment>,
}

/// One `EmailUrlInfo` row.
#[derive(Clone, Debug)]
pub(crate) struct MailRow {
    pub network_message_id: String,
    pub url: String,
    pub location: String,
    pub timestamp: DateTime<Utc>,
    pub visible_from: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub(crate) struct Incident {
    pub id: String,
    pub display_name: String,
    pub status: String,
    pub severity: String,
    pub custom_tags: Vec<String>,
    pub system_tags: Vec<String>,
    pub assigned_to: Option<String>,
    pub classification: Option<String>,
    pub determination: Option<String>,
    pub created: DateTime<Utc>,
    pub last_update: DateTime<Utc>,
    pub patches: Vec<Value>,
}

/// A Defender indicator, in the API's shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Indicator {
    pub id: String,
    pub indicator_value: String,
    pub indicator_type: String,
    pub action: String,
    pub severity: Option<String>,
    pub title: String,
    pub description: String,
    pub recommended_actions: Option<String>,
    pub expiration_time: Option<String>,
    pub generate_alert: bool,
    pub application: Option<String>,
    pub rbac_group_names: Vec<String>,
    pub created_by: String,
    pub created_by_source: String,
    pub creation_time_date_time_utc: String,
    pub last_update_time: String,
    pub last_updated_by: String,
    pub source: String,
    pub source_type: String,
}

/// One request as the simulators saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub service: Service,
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// 0 when no HTTP response was sent (`connection_refused`, `timeout`).
    pub status: u16,
    pub time: String,
    /// The fault this request got (`status`, `timeout`, …, or `quota` when a rate quota
    /// refused it); absent for a normal answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// Sent inside a Graph `$batch` call (not an HTTP request of its own).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_batch: bool,
}

#[derive(Clone)]
pub(crate) struct World {
    pub cfg: Config,
    pub tokens: HashMap<String, Token>,
    pub alerts: Vec<Alert>,
    /// `$skiptoken` → (alert ids matched by the first page's query, page size).
    pub alert_pages: HashMap<String, (Vec<String>, usize)>,
    pub mails: Vec<MailRow>,
    /// Mails in mailboxes (Graph mail), from `MailSpec`s with a recipient.
    pub mailbox: Vec<MailSpec>,
    pub incidents: BTreeMap<String, Incident>,
    pub indicators: Vec<Indicator>,
    pub next_indicator_id: u64,
    pub indicator_writes: BTreeMap<(String, String), u64>,
    pub vmray: VmrayWorld,
    pub calls: Vec<CallRecord>,
    /// Every `runHuntingQuery` query text received, in order.
    pub hunting_queries: Vec<String>,
}

pub(crate) fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn minutes(m: f64) -> chrono::Duration {
    chrono::Duration::milliseconds((m * 60_000.0) as i64)
}

impl World {
    pub fn new(scenario: &Scenario, now: DateTime<Utc>) -> World {
        let s = scenario;
        let mut world = World {
            cfg: Config {
                tenant_id: s.tenant_id.clone(),
                client_id: s.client_id.clone(),
                client_secret: s.client_secret.clone(),
                vmray_api_key: s.vmray_api_key.clone(),
                token_lifetime_seconds: s.token_lifetime_seconds,
                alert_page_size: s.alert_page_size.clamp(1, 1000),
                app_display_name: s.app_display_name.clone(),
                comment_updates_alert: s.comment_updates_alert,
                indicator_cap: s.indicator_cap,
            },
            tokens: HashMap::new(),
            alerts: vec![],
            alert_pages: HashMap::new(),
            mails: vec![],
            mailbox: vec![],
            incidents: BTreeMap::new(),
            indicators: vec![],
            next_indicator_id: 1001,
            indicator_writes: BTreeMap::new(),
            vmray: VmrayWorld::new(&s.vmray, now),
            calls: vec![],
            hunting_queries: vec![],
        };
        for inc in &s.incidents {
            world.add_incident(inc, now);
        }
        for alert in &s.alerts {
            world.add_alert(alert.clone(), now);
        }
        for mail in &s.mails {
            world.add_mail(mail, now);
        }
        world
    }

    pub fn add_incident(&mut self, spec: &IncidentSpec, now: DateTime<Utc>) {
        self.incidents.insert(
            spec.id.clone(),
            Incident {
                id: spec.id.clone(),
                display_name: spec
                    .display_name
                    .clone()
                    .unwrap_or_else(|| format!("Incident {}", spec.id)),
                status: spec.status.clone().unwrap_or_else(|| "active".into()),
                severity: spec.severity.clone().unwrap_or_else(|| "medium".into()),
                custom_tags: spec.custom_tags.clone(),
                system_tags: spec.system_tags.clone(),
                assigned_to: None,
                classification: None,
                determination: None,
                created: now,
                last_update: now,
                patches: vec![],
            },
        );
    }

    /// Adds an alert whose age counts back from `now`; creates its incident if absent.
    pub fn add_alert(&mut self, mut spec: AlertSpec, now: DateTime<Utc>) {
        let created = now - chrono::Duration::minutes(spec.age_minutes);
        if let Some(raw) = &spec.raw {
            if let Some(id) = raw.get("id").and_then(Value::as_str) {
                spec.id = id.to_string();
            }
            if spec.incident_id.is_empty() {
                if let Some(inc) = raw.get("incidentId").and_then(Value::as_str) {
                    spec.incident_id = inc.to_string();
                }
            }
        }
        if spec.id.is_empty() {
            spec.id = format!("sim-alert-{}", self.alerts.len() + 1);
        }
        if !spec.incident_id.is_empty() && !self.incidents.contains_key(&spec.incident_id) {
            self.add_incident(
                &IncidentSpec {
                    id: spec.incident_id.clone(),
                    display_name: Some(format!("{} involving one user", spec.title)),
                    severity: Some(spec.severity.clone()),
                    ..Default::default()
                },
                now,
            );
        }
        self.alerts.retain(|a| a.id != spec.id);
        self.alerts.push(Alert {
            id: spec.id.clone(),
            spec,
            created,
            last_updated: created,
            comments: vec![],
        });
    }

    /// Adds `EmailUrlInfo` rows whose ages count back from `now`.
    pub fn add_mail(&mut self, mail: &MailSpec, now: DateTime<Utc>) {
        if mail.internet_message_id.is_some() && mail.recipient.is_some() {
            self.mailbox.push(mail.clone());
        }
        for u in &mail.urls {
            self.mails.push(MailRow {
                network_message_id: mail.network_message_id.clone(),
                url: u.url.clone(),
                location: u.location.clone(),
                timestamp: now - minutes(u.age_hours * 60.0),
                visible_from: now + chrono::Duration::minutes(u.visible_after_minutes.unwrap_or(0)),
            });
        }
    }

    pub fn snapshot(&self, now: DateTime<Utc>) -> SimState {
        SimState {
            now: iso(now),
            comments: self
                .alerts
                .iter()
                .filter(|a| !a.comments.is_empty())
                .map(|a| (a.id.clone(), a.comments.clone()))
                .collect(),
            indicators: self.indicators.clone(),
            indicator_writes: self
                .indicator_writes
                .iter()
                .map(|((value, kind), count)| IndicatorWrites {
                    indicator_value: value.clone(),
                    indicator_type: kind.clone(),
                    count: *count,
                })
                .collect(),
            incidents: self
                .incidents
                .values()
                .map(|i| {
                    (
                        i.id.clone(),
                        IncidentState {
                            id: i.id.clone(),
                            status: i.status.clone(),
                            custom_tags: i.custom_tags.clone(),
                            patches: i.patches.clone(),
                        },
                    )
                })
                .collect(),
            vmray_submissions: self.vmray.submission_records(),
            vmray_verdict_remaining: self.vmray.verdict_remaining,
            calls: self.calls.clone(),
            throttled: BTreeMap::new(),
            hunting_queries: self.hunting_queries.clone(),
            issued_tokens: self.tokens.keys().cloned().collect(),
        }
    }
}

/// How often one (value, type) indicator was written (created or updated).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndicatorWrites {
    pub indicator_value: String,
    pub indicator_type: String,
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IncidentState {
    pub id: String,
    pub status: String,
    pub custom_tags: Vec<String>,
    /// Every PATCH body received, in order.
    pub patches: Vec<Value>,
}

/// One submission made through the API (seeded prior analyses are not listed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubmissionRecord {
    pub submission_id: u64,
    pub sample_id: u64,
    pub job_id: u64,
    pub url: Option<String>,
    pub filename: Option<String>,
    pub tags: Vec<String>,
    pub comment: Option<String>,
    pub user_config: Option<String>,
    pub created: String,
    /// For a file submission: SHA-256 and size of the bytes received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_size: Option<u64>,
}

/// A snapshot of everything tests assert on (also `GET /_sim/state`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimState {
    /// The simulated clock when the snapshot was taken.
    pub now: String,
    /// Comments per alert id, in order (only alerts with comments).
    pub comments: BTreeMap<String, Vec<Comment>>,
    /// The current indicator set.
    pub indicators: Vec<Indicator>,
    pub indicator_writes: Vec<IndicatorWrites>,
    pub incidents: BTreeMap<String, IncidentState>,
    pub vmray_submissions: Vec<SubmissionRecord>,
    pub vmray_verdict_remaining: u64,
    pub calls: Vec<CallRecord>,
    /// Calls refused by a rate quota, per service name ("graph", "defender", "vmray").
    #[serde(default)]
    pub throttled: BTreeMap<String, u64>,
    /// Every `runHuntingQuery` query text received, in order.
    #[serde(default)]
    pub hunting_queries: Vec<String>,
    /// Every access token Entra issued (secrets-scan tests look for them in outputs).
    #[serde(default)]
    pub issued_tokens: Vec<String>,
}

impl SimState {
    /// The calls that got a fault (or a quota refusal), in order.
    pub fn faulted_calls(&self) -> Vec<&CallRecord> {
        self.calls.iter().filter(|c| c.fault.is_some()).collect()
    }

    /// How many calls got the named fault (`"status"`, `"timeout"`, …, `"quota"`).
    pub fn fault_count(&self, fault: &str) -> usize {
        self.calls
            .iter()
            .filter(|c| c.fault.as_deref() == Some(fault))
            .count()
    }

    /// Calls to `service` refused by a rate quota.
    pub fn throttled_count(&self, service: &str) -> u64 {
        self.throttled.get(service).copied().unwrap_or(0)
    }

    /// Requests to `service` ("entra", "graph", "defender", "vmray") with `method` whose path
    /// starts with `path_prefix`.
    pub fn calls_to(&self, service: &str, method: &str, path_prefix: &str) -> usize {
        self.calls
            .iter()
            .filter(|c| {
                c.service.name().eq_ignore_ascii_case(service)
                    && c.method.eq_ignore_ascii_case(method)
                    && c.path.starts_with(path_prefix)
            })
            .count()
    }

    /// Comment texts on one alert, in order.
    pub fn comment_texts(&self, alert_id: &str) -> Vec<String> {
        self.comments
            .get(alert_id)
            .map(|c| c.iter().map(|c| c.comment.clone()).collect())
            .unwrap_or_default()
    }

    /// How often the indicator (value, type) was written.
    pub fn indicator_write_count(&self, value: &str, indicator_type: &str) -> u64 {
        self.indicator_writes
            .iter()
            .find(|w| w.indicator_value == value && w.indicator_type == indicator_type)
            .map(|w| w.count)
            .unwrap_or(0)
    }

    /// The current indicator with this value (any type).
    pub fn indicator(&self, value: &str) -> Option<&Indicator> {
        self.indicators.iter().find(|i| i.indicator_value == value)
    }

    pub fn custom_tags(&self, incident_id: &str) -> Vec<String> {
        self.incidents
            .get(incident_id)
            .map(|i| i.custom_tags.clone())
            .unwrap_or_default()
    }
}
