//! One write-back tick: for every open alert whose analyses are published,
//! comment on the alert, write indicators, tag the incident, then mark the
//! alert done. Every non-idempotent write is preceded by an intent record so
//! a tick that dies halfway never writes anything twice. Writes only `wb:*`,
//! `ind:*` and `inc:*` records.

use std::time::Instant;

use chrono::Utc;
use connector_io::api::{Api, Req};
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
    OpenAlerts, SampleReport, UrlOutcome, Writeback, SCHEMA,
};
use mdo_vmray::tags;
use serde_json::{json, Value};

/// Alerts written back per tick at most (Graph allows ~150 calls a minute).
const MAX_ALERTS_PER_TICK: usize = 40;

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
    let api = Api {
        service: "defender",
        limits: s.retry,
        started: Instant::now(),
        log,
        user_agent: "mdo-vmray-connector/0.1",
    };
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
    let mut worked = 0;
    for alert_id in &open.ids {
        if worked >= MAX_ALERTS_PER_TICK
            || cx.api.started.elapsed() > connector_io::api::TICK_BUDGET
        {
            log.info("tick_budget_spent", &[("alert", json!(alert_id))]);
            break;
        }
        match cx.alert(alert_id).await {
            Ok(true) => worked += 1,
            Ok(false) => {}
            Err(e) => {
                worked += 1;
                log.warn(
                    "writeback_failed",
                    &[("alert", json!(alert_id)), ("error", json!(e))],
                );
            }
        }
    }
    let c = &cx.counts;
    Ok(json!({"alerts_done": c.alerts_done, "comments": c.comments, "indicators": c.indicators, "incidents_tagged": c.incidents_tagged}).to_string())
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
        self.post_comments(alert_id, &mut wb, &wb_key, &comments)
            .await?;
        if !wb.indicators_done {
            if self.s.create_indicators {
                self.indicators(alert_id, &samples).await?;
            }
            wb.indicators_done = true;
            self.kv.put(&wb_key, &wb)?;
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
            self.kv.put(&wb_key, &wb)?;
        }
        wb.done_at = Some(Utc::now());
        self.kv.put(&wb_key, &wb)?;
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
    ) -> Result<(), String> {
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
                    .await
                    .map_err(|e| format!("comment: {e}"))?;
                if !resp.ok() {
                    return Err(format!(
                        "comment: HTTP {}: {}",
                        resp.status,
                        self.log.scrub(&resp.snippet())
                    ));
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

    async fn alert_comments(&self, alert_id: &str) -> Result<Vec<String>, String> {
        let url = format!(
            "{}/v1.0/security/alerts_v2/{}",
            self.s.graph_base_url,
            path_segment(alert_id)
        );
        let resp = self
            .entra
            .call(&self.api, GRAPH_SCOPE, &Req::get(url))
            .await
            .map_err(|e| format!("reading alert: {e}"))?;
        if !resp.ok() {
            return Err(format!("reading alert: HTTP {}", resp.status));
        }
        let v: Value = serde_json::from_slice(&resp.body)
            .map_err(|e| format!("reading alert: not JSON: {e}"))?;
        parse_alert(&v)
            .map(|a| a.comments)
            .map_err(|e| e.to_string())
    }

    /// Indicators for the chosen verdicts, each written once per expiration period.
    async fn indicators(&mut self, alert_id: &str, samples: &[SampleReport]) -> Result<(), String> {
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
            let refs: Vec<&IndicatorDraft> = batch.iter().collect();
            let url = format!("{}/api/indicators/import", self.s.defender_base_url);
            // Import is an upsert (same value and type): safe to repeat.
            let req = Req::post_json(url, &indicators::import_body(&refs), true);
            let resp = self
                .entra
                .call(&self.api, DEFENDER_SCOPE, &req)
                .await
                .map_err(|e| format!("indicator import: {e}"))?;
            if !resp.ok() {
                return Err(format!(
                    "indicator import: HTTP {}: {}",
                    resp.status,
                    self.log.scrub(&resp.snippet())
                ));
            }
            let items = indicators::parse_import_response(&resp.body)?;
            for d in batch {
                let item = items
                    .iter()
                    .find(|i| i.indicator.eq_ignore_ascii_case(&d.ioc.value));
                match item {
                    Some(i) if !i.failed => {
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
                        )?;
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
                    }
                }
            }
        }
        Ok(())
    }

    /// Tag the incident with the most severe verdict and threat names,
    /// merged with the tags already there.
    async fn tag_incident(
        &mut self,
        incident: &str,
        samples: &[SampleReport],
    ) -> Result<(), String> {
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
            .await
            .map_err(|e| format!("reading incident: {e}"))?;
        if !resp.ok() {
            return Err(format!("reading incident {incident}: HTTP {}", resp.status));
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
                let resp = self
                    .entra
                    .call(&self.api, GRAPH_SCOPE, &req)
                    .await
                    .map_err(|e| format!("tagging incident: {e}"))?;
                if !resp.ok() {
                    return Err(format!(
                        "tagging incident {incident}: HTTP {}: {}",
                        resp.status,
                        self.log.scrub(&resp.snippet())
                    ));
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
        self.kv.put(&rec_key, &own)
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
