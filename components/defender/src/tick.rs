//! One write-back tick: for every open alert whose analyses are published,
//! comment on the alert, write indicators, tag the incident, then mark the
//! alert done. Every non-idempotent write is preceded by an intent record so
//! a tick that dies halfway never writes anything twice. Writes only `wb:*`,
//! `ind:*` and `inc:*` records.

use chrono::Utc;
use connector_io::api::{Api, CallError, Req, Resp};
use connector_io::entra::{Entra, DEFENDER_SCOPE, GRAPH_SCOPE};
use connector_io::kv::Kv;
use connector_io::log::Log;
use connector_io::vars::spin_var;
use mdo_vmray::alert::parse_alert;
use mdo_vmray::comment::{self, already_posted};
use mdo_vmray::config::{DefenderSettings, LogLevel};
use mdo_vmray::indicators::{self, IndicatorDraft, Origin, MAX_IMPORT_BATCH};
use mdo_vmray::model::Verdict;
use mdo_vmray::records::{
    keys, AlertAnalyses, AlertRecord, AlertStage, CommentProgress, IncidentTags, IndicatorRecord,
    OpenAlerts, PendingIndicator, SampleReport, UrlOutcome, Writeback, SCHEMA,
};
use mdo_vmray::tags;
use serde_json::{json, Value};

/// Requests one tick may send: with the poller's share this keeps a tick a
/// minute under Graph's 150 calls a minute.
const MAX_CALLS_PER_TICK: u32 = 100;
/// Failed write-back attempts before the error is put on the alert.
const MAX_ATTEMPTS: u32 = 3;

pub async fn run() -> Result<String, String> {
    let settings = match DefenderSettings::read(&spin_var) {
        Ok(s) => s,
        Err(e) => {
            Log::new("defender", LogLevel::Info)
                .error("config_invalid", &[("error", json!(e.to_string()))]);
            return Err(e.to_string());
        }
    };
    let mut log = Log::new("defender", settings.common.log_level);
    log.add_secret(&settings.entra.client_secret);
    log.info("tick_start", &[("dry_run", json!(settings.common.dry_run))]);
    let result = tick(&settings, &log).await;
    match &result {
        Ok(summary) => log.info(
            "tick_end",
            &[("summary", serde_json::from_str(summary).unwrap_or_default())],
        ),
        Err(e) => log.error("tick_failed", &[("error", json!(e))]),
    }
    result
}

#[derive(Default)]
struct Counts {
    alerts_done: u32,
    comments: u32,
    indicators: u32,
    incidents_tagged: u32,
}

struct Ctx<'a> {
    s: &'a DefenderSettings,
    log: &'a Log,
    kv: Kv,
    api: Api<'a>,
    entra: Entra,
    tenant: &'a str,
    counts: Counts,
}

async fn tick(s: &DefenderSettings, log: &Log) -> Result<String, String> {
    let tenant = &s.common.tenant_id;
    let api = Api::new("defender", s.retry, log);
    let mut cx = Ctx {
        s,
        log,
        kv: Kv::open()?,
        api,
        entra: Entra::new(s.entra.clone(), tenant),
        tenant,
        counts: Counts::default(),
    };
    let open: OpenAlerts = cx.kv.get(&keys::open(tenant))?.unwrap_or_default();
    for alert_id in &open.ids {
        if cx.api.sent.get() >= MAX_CALLS_PER_TICK || cx.api.out_of_time() {
            log.info(
                "tick_budget_spent",
                &[
                    ("alert", json!(alert_id)),
                    ("calls", json!(cx.api.sent.get())),
                ],
            );
            break;
        }
        if let Err(e) = cx.alert(alert_id).await {
            log.warn(
                "writeback_failed",
                &[("alert", json!(alert_id)), ("error", json!(e))],
            );
        }
    }
    let c = &cx.counts;
    Ok(json!({"alerts_done": c.alerts_done, "comments": c.comments, "indicators": c.indicators, "incidents_tagged": c.incidents_tagged}).to_string())
}

/// Why a write-back step stopped: transient failures (throttling, outages)
/// just wait for a later tick; others count towards reporting on the alert.
struct Failure {
    msg: String,
    transient: bool,
}

impl From<String> for Failure {
    fn from(msg: String) -> Failure {
        Failure {
            msg,
            transient: false,
        }
    }
}

impl From<CallError> for Failure {
    fn from(e: CallError) -> Failure {
        Failure {
            transient: e.transient(),
            msg: e.to_string(),
        }
    }
}

fn http_failure(what: &str, resp: &Resp, log: &Log) -> Failure {
    Failure {
        msg: format!(
            "{what}: HTTP {}: {}",
            resp.status,
            log.scrub(&resp.snippet())
        ),
        transient: resp.status == 429 || resp.status >= 500,
    }
}

impl Ctx<'_> {
    /// Write back one alert if it is ready; `Ok(true)` when work was done.
    async fn alert(&mut self, alert_id: &str) -> Result<bool, String> {
        let wb_key = keys::writeback(self.tenant, alert_id);
        let mut wb: Writeback = self.kv.get(&wb_key)?.unwrap_or(Writeback {
            v: SCHEMA,
            alert_id: alert_id.to_string(),
            ..Default::default()
        });
        if wb.done_at.is_some() {
            return Ok(false);
        }
        let Some(record) = self
            .kv
            .get::<AlertRecord>(&keys::alert(self.tenant, alert_id))?
        else {
            return Ok(false);
        };
        match self.write_back(alert_id, &record, &mut wb, &wb_key).await {
            Ok(worked) => Ok(worked),
            Err(f) if f.transient => Err(f.msg),
            Err(f) => {
                wb.attempts += 1;
                self.kv.put(&wb_key, &wb)?;
                if wb.attempts >= MAX_ATTEMPTS {
                    // Stop retrying, and tell the analyst on the alert.
                    let text = comment::render_error_comment(&f.msg, wb.attempts);
                    self.post_comments(alert_id, &mut wb, &wb_key, &text)
                        .await
                        .map_err(|e| e.msg)?;
                    wb.done_at = Some(Utc::now());
                    self.kv.put(&wb_key, &wb)?;
                    self.log.error(
                        "writeback_abandoned",
                        &[("alert", json!(alert_id)), ("error", json!(f.msg))],
                    );
                }
                Err(f.msg)
            }
        }
    }

    async fn write_back(
        &mut self,
        alert_id: &str,
        record: &AlertRecord,
        wb: &mut Writeback,
        wb_key: &str,
    ) -> Result<bool, Failure> {
        let (comments, samples) = match &record.stage {
            AlertStage::AwaitingUrls { .. } => return Ok(false),
            AlertStage::NoUrls { reason } => (
                comment::render_no_url_comment(reason, &record.skipped),
                Vec::new(),
            ),
            AlertStage::Ready => {
                let Some(va) = self
                    .kv
                    .get::<AlertAnalyses>(&keys::analyses(self.tenant, alert_id))?
                else {
                    return Ok(false);
                };
                self.render(&va)?
            }
        };
        self.post_comments(alert_id, wb, wb_key, &comments).await?;
        if !wb.indicators_done {
            if self.s.create_indicators {
                let failed = self.indicators(alert_id, &samples, wb, wb_key).await?;
                if !failed.is_empty() {
                    wb.indicator_attempts += 1;
                    self.kv.put(wb_key, wb)?;
                    if wb.indicator_attempts < MAX_ATTEMPTS {
                        return Err(Failure {
                            msg: format!(
                                "{} indicator(s) failed; retrying next tick",
                                failed.len()
                            ),
                            transient: true,
                        });
                    }
                    let text = comment::render_indicator_failures(&failed);
                    self.post_comments(alert_id, wb, wb_key, &text).await?;
                }
            }
            wb.indicators_done = true;
            self.kv.put(wb_key, wb)?;
        }
        if !wb.tags_done {
            if let (true, Some(incident)) =
                (self.s.add_tags_to_incident, record.incident_id.as_deref())
            {
                if !samples.is_empty() {
                    self.tag_incident(incident, &samples).await?;
                }
            }
            wb.tags_done = true;
            self.kv.put(wb_key, wb)?;
        }
        wb.done_at = Some(Utc::now());
        self.kv.put(wb_key, wb)?;
        self.counts.alerts_done += 1;
        self.log.info(
            "alert_written_back",
            &[
                ("alert", json!(alert_id)),
                ("comments", json!(comments.len())),
                ("samples", json!(samples.len())),
            ],
        );
        Ok(true)
    }

    /// The comments for an alert's analyses, and every sample (children included).
    fn render(&self, va: &AlertAnalyses) -> Result<(Vec<String>, Vec<SampleReport>), String> {
        let mut comments = Vec::new();
        let mut all = Vec::new();
        for r in &va.results {
            match &r.outcome {
                UrlOutcome::Sample {
                    sample_id,
                    submission_id,
                    reused,
                    ..
                } => {
                    let tree = self.sample_tree(*sample_id)?;
                    let Some((root, children)) = tree.split_first() else {
                        return Err(format!("sample {sample_id} has no record"));
                    };
                    let marker = comment::sample_marker(*sample_id, *submission_id);
                    let child_refs: Vec<&SampleReport> = children.iter().collect();
                    comments.extend(comment::render_sample_comment(
                        &marker,
                        root,
                        &child_refs,
                        *reused,
                    ));
                    all.extend(tree);
                }
                UrlOutcome::Failed { reason } => {
                    let marker = comment::failure_marker(&mdo_vmray::urls::url_key(&r.url));
                    comments.extend(comment::render_failure_comment(&marker, &r.url, reason));
                }
            }
        }
        Ok((comments, all))
    }

    /// A sample and its descendants, root first (bounded: the VMRay side
    /// already limited depth and count when it wrote them).
    fn sample_tree(&self, root: u64) -> Result<Vec<SampleReport>, String> {
        let mut out: Vec<SampleReport> = Vec::new();
        let mut queue = vec![root];
        while let Some(id) = queue.pop() {
            if out.iter().any(|s| s.sample_id == id)
                || out.len() > mdo_vmray::analysis::MAX_CHILD_SAMPLES
            {
                continue;
            }
            match self
                .kv
                .get::<SampleReport>(&keys::sample(self.tenant, id))?
            {
                Some(s) => {
                    queue.extend(s.child_ids.iter().rev());
                    out.push(s);
                }
                None if id == root => return Err(format!("sample {root} has no record")),
                None => {}
            }
        }
        Ok(out)
    }

    /// Post each comment once: intent first, then the POST, then "posted".
    /// An intent found on a later tick means the POST's fate is unknown, so
    /// the alert's comments are read before anything is posted again.
    async fn post_comments(
        &mut self,
        alert_id: &str,
        wb: &mut Writeback,
        wb_key: &str,
        comments: &[String],
    ) -> Result<(), Failure> {
        let mut existing: Option<Vec<String>> = None;
        for text in comments {
            let marker = text.lines().next().unwrap_or_default().to_string();
            match wb.comments.iter().find(|c| c.marker == marker) {
                Some(c) if c.posted => continue,
                Some(_) => {
                    if existing.is_none() {
                        existing = Some(self.alert_comments(alert_id).await?);
                    }
                    if already_posted(existing.as_deref().unwrap_or_default(), &marker) {
                        self.log.info(
                            "comment_found_after_restart",
                            &[("alert", json!(alert_id)), ("marker", json!(marker))],
                        );
                        mark_posted(wb, &marker);
                        self.kv.put(wb_key, wb)?;
                        continue;
                    }
                }
                None => {
                    wb.comments.push(CommentProgress {
                        marker: marker.clone(),
                        posted: false,
                    });
                    self.kv.put(wb_key, wb)?;
                }
            }
            if self.s.common.dry_run {
                self.log.info(
                    "dry_run_would_comment",
                    &[("alert", json!(alert_id)), ("comment", json!(text))],
                );
            } else {
                let url = format!(
                    "{}/v1.0/security/alerts_v2/{}/comments",
                    self.s.graph_base_url,
                    path_segment(alert_id)
                );
                let body = json!({"@odata.type": "microsoft.graph.security.alertComment", "comment": text});
                let resp = self
                    .entra
                    .call(&self.api, GRAPH_SCOPE, &Req::post_json(url, &body, false))
                    .await?;
                if !resp.ok() {
                    return Err(http_failure("comment", &resp, self.log));
                }
                self.counts.comments += 1;
                self.log.info(
                    "comment_written",
                    &[("alert", json!(alert_id)), ("marker", json!(marker))],
                );
            }
            mark_posted(wb, &marker);
            self.kv.put(wb_key, wb)?;
        }
        Ok(())
    }

    async fn alert_comments(&self, alert_id: &str) -> Result<Vec<String>, Failure> {
        let url = format!(
            "{}/v1.0/security/alerts_v2/{}",
            self.s.graph_base_url,
            path_segment(alert_id)
        );
        let resp = self
            .entra
            .call(&self.api, GRAPH_SCOPE, &Req::get(url))
            .await?;
        if !resp.ok() {
            return Err(http_failure("reading alert", &resp, self.log));
        }
        let v: Value = serde_json::from_slice(&resp.body)
            .map_err(|e| format!("reading alert: not JSON: {e}"))?;
        Ok(parse_alert(&v)
            .map(|a| a.comments)
            .map_err(|e| e.to_string())?)
    }

    /// Indicators for the chosen verdicts, each written once per expiration
    /// period. Returns the ones Defender refused, with the reason.
    async fn indicators(
        &mut self,
        alert_id: &str,
        samples: &[SampleReport],
        wb: &mut Writeback,
        wb_key: &str,
    ) -> Result<Vec<(IndicatorDraft, String)>, Failure> {
        let now = Utc::now();
        let mut drafts: Vec<IndicatorDraft> = Vec::new();
        for s in samples {
            let origin = Origin {
                sample_id: s.sample_id,
                sample_url: s.url.as_deref(),
                alert_id,
            };
            for ioc in &s.iocs {
                let Some(d) = indicators::draft(ioc, &origin, self.s, now) else {
                    continue;
                };
                if drafts.iter().any(|x| {
                    x.ioc.kind == d.ioc.kind && x.ioc.value.eq_ignore_ascii_case(&d.ioc.value)
                }) {
                    continue;
                }
                let prev: Option<IndicatorRecord> =
                    self.kv
                        .get(&keys::indicator(self.tenant, d.ioc.kind, &d.ioc.value))?;
                if indicators::needs_write(prev.as_ref(), &d, now) {
                    if let Some(why) = &d.corrected {
                        self.log.warn(
                            "indicator_action_corrected",
                            &[
                                ("alert", json!(alert_id)),
                                ("type", json!(d.ioc.kind.as_str())),
                                ("reason", json!(why)),
                            ],
                        );
                    }
                    drafts.push(d);
                }
            }
        }
        // An import that may have happened before the last tick died: look
        // its indicators up instead of writing them again.
        if !wb.indicators_pending.is_empty() {
            let pending = std::mem::take(&mut wb.indicators_pending);
            let mut confirmed = Vec::new();
            for d in drafts.iter().filter(|d| {
                pending
                    .iter()
                    .any(|p| p.kind == d.ioc.kind && p.value == d.ioc.value)
            }) {
                let url = format!(
                    "{}{}",
                    self.s.defender_base_url,
                    indicators::lookup_query(d.ioc.kind, &d.ioc.value)
                );
                let resp = self
                    .entra
                    .call(&self.api, DEFENDER_SCOPE, &Req::get(url))
                    .await?;
                if !resp.ok() {
                    wb.indicators_pending = pending;
                    return Err(http_failure("indicator look-up", &resp, self.log));
                }
                if indicators::lookup_found(
                    &resp.body,
                    &d.ioc.value,
                    now + chrono::Duration::days(1),
                )? {
                    self.record_indicator(d, now)?;
                    confirmed.push((d.ioc.kind, d.ioc.value.clone()));
                    self.log.info(
                        "indicator_found_after_restart",
                        &[
                            ("alert", json!(alert_id)),
                            ("type", json!(d.ioc.kind.as_str())),
                        ],
                    );
                }
            }
            drafts.retain(|d| !confirmed.contains(&(d.ioc.kind, d.ioc.value.clone())));
            self.kv.put(wb_key, wb)?;
        }
        let mut failed = Vec::new();
        for batch in drafts.chunks(MAX_IMPORT_BATCH) {
            if self.s.common.dry_run {
                for d in batch {
                    self.log.info(
                        "dry_run_would_write_indicator",
                        &[("alert", json!(alert_id)), ("indicator", d.body.clone())],
                    );
                }
                continue;
            }
            wb.indicators_pending = batch
                .iter()
                .map(|d| PendingIndicator {
                    kind: d.ioc.kind,
                    value: d.ioc.value.clone(),
                })
                .collect();
            self.kv.put(wb_key, wb)?;
            let refs: Vec<&IndicatorDraft> = batch.iter().collect();
            let url = format!("{}/api/indicators/import", self.s.defender_base_url);
            // Import is an upsert (same value and type): safe to retry.
            let req = Req::post_json(url, &indicators::import_body(&refs), true);
            let resp = self.entra.call(&self.api, DEFENDER_SCOPE, &req).await?;
            if resp.status == 400 {
                // The whole batch was refused (the tenant's indicator cap, a malformed batch).
                let why = format!(
                    "Defender refused the import: {}",
                    self.log.scrub(&resp.snippet())
                );
                failed.extend(batch.iter().map(|d| (d.clone(), why.clone())));
            } else if !resp.ok() {
                return Err(http_failure("indicator import", &resp, self.log));
            } else {
                let items = indicators::parse_import_response(&resp.body)?;
                for d in batch {
                    match items
                        .iter()
                        .find(|i| i.indicator.eq_ignore_ascii_case(&d.ioc.value))
                    {
                        Some(i) if !i.failed => {
                            self.record_indicator(d, now)?;
                            self.counts.indicators += 1;
                            self.log.info(
                                "indicator_written",
                                &[
                                    ("alert", json!(alert_id)),
                                    ("type", json!(d.ioc.kind.as_str())),
                                    ("action", json!(d.action.as_str())),
                                ],
                            );
                        }
                        other => {
                            let reason = other
                                .and_then(|i| i.reason.clone())
                                .unwrap_or_else(|| "not in the import response".into());
                            self.log.error(
                                "indicator_failed",
                                &[
                                    ("alert", json!(alert_id)),
                                    ("type", json!(d.ioc.kind.as_str())),
                                    ("reason", json!(reason)),
                                ],
                            );
                            failed.push((d.clone(), reason));
                        }
                    }
                }
            }
            wb.indicators_pending.clear();
            self.kv.put(wb_key, wb)?;
        }
        Ok(failed)
    }

    fn record_indicator(
        &self,
        d: &IndicatorDraft,
        now: chrono::DateTime<Utc>,
    ) -> Result<(), String> {
        let rec = IndicatorRecord {
            v: SCHEMA,
            value: d.ioc.value.clone(),
            kind: d.ioc.kind,
            action: d.action,
            expires: d.expires,
            written_at: now,
        };
        self.kv.put(
            &keys::indicator(self.tenant, d.ioc.kind, &d.ioc.value),
            &rec,
        )
    }

    /// Tag the incident with the most severe verdict and threat names,
    /// merged with the tags already there.
    async fn tag_incident(
        &mut self,
        incident: &str,
        samples: &[SampleReport],
    ) -> Result<(), Failure> {
        let verdict = samples
            .iter()
            .map(|s| s.verdict)
            .max()
            .unwrap_or(Verdict::NotAvailable);
        let refs: Vec<&SampleReport> = samples.iter().collect();
        let names = tags::threat_names(&refs);
        let rec_key = keys::incident(self.tenant, incident);
        let prev: Option<IncidentTags> = self.kv.get(&rec_key)?;
        let url = format!(
            "{}/v1.0/security/incidents/{}",
            self.s.graph_base_url,
            path_segment(incident)
        );
        let resp = self
            .entra
            .call(&self.api, GRAPH_SCOPE, &Req::get(&url))
            .await?;
        if !resp.ok() {
            return Err(http_failure("reading incident", &resp, self.log));
        }
        let v: Value = serde_json::from_slice(&resp.body)
            .map_err(|e| format!("incident {incident}: not JSON: {e}"))?;
        let existing: Vec<String> = v
            .get("customTags")
            .and_then(Value::as_array)
            .map(|t| {
                t.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let (new_tags, own) = tags::merge(&existing, prev.as_ref(), verdict, &names);
        if new_tags != existing {
            if self.s.common.dry_run {
                self.log.info(
                    "dry_run_would_tag",
                    &[("incident", json!(incident)), ("tags", json!(new_tags))],
                );
            } else {
                let mut req = Req::post_json(&url, &json!({"customTags": new_tags}), true);
                req.method = spin_sdk::http::Method::Patch;
                let resp = self.entra.call(&self.api, GRAPH_SCOPE, &req).await?;
                if !resp.ok() {
                    return Err(http_failure("tagging incident", &resp, self.log));
                }
                self.counts.incidents_tagged += 1;
                self.log.info(
                    "incident_tagged",
                    &[
                        ("incident", json!(incident)),
                        ("verdict", json!(own.verdict.as_str())),
                    ],
                );
            }
        }
        Ok(self.kv.put(&rec_key, &own)?)
    }
}

fn mark_posted(wb: &mut Writeback, marker: &str) {
    if let Some(c) = wb.comments.iter_mut().find(|c| c.marker == marker) {
        c.posted = true;
    }
}

/// Ids go into URL paths percent-encoded (they are validated, but never trusted).
fn path_segment(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}
