//! One write-back tick. It gathers every open alert whose analyses are
//! published, then works across them in phases, so that Graph and Defender
//! see few, full calls: comments (`$batch`, 20 a call), indicators (one
//! import of up to 500 for all alerts), incident tags (`$batch`), and
//! finally marks alerts done. Every non-idempotent write is preceded by an
//! intent record, so a tick that dies anywhere never writes anything twice.
//! Writes only `wb:*`, `ind:*` and `inc:*` records.

use chrono::Utc;
use connector_io::api::Api;
use connector_io::entra::Entra;
use connector_io::kv::Kv;
use connector_io::log::Log;
use connector_io::vars::spin_var;
use mdo_vmray::comment;
use mdo_vmray::config::DefenderSettings;
use mdo_vmray::records::{
    keys, AlertAnalyses, AlertRecord, AlertStage, IndicatorRecord, OpenAlerts, SampleReport,
    UrlOutcome, Writeback, SCHEMA,
};
use serde_json::json;

/// Alerts gathered per tick.
const MAX_ALERTS_PER_TICK: usize = 500;
/// Graph operations (inner requests of `$batch` calls) one tick may make:
/// with the poller's share this keeps one tick a minute under Graph's 150
/// requests a minute.
pub const MAX_GRAPH_OPS_PER_TICK: u32 = 100;
/// Failed attempts before the error is put on the alert.
pub const MAX_ATTEMPTS: u32 = 3;

pub async fn run() -> Result<String, String> {
    let (settings, log) = connector_io::tick::start("defender", DefenderSettings::read(&spin_var))?;
    let result = tick(&settings, &log).await;
    connector_io::tick::finish(&log, result)
}

#[derive(Default)]
pub struct Counts {
    pub alerts_done: u32,
    pub comments: u32,
    pub indicators: u32,
    pub incidents_tagged: u32,
}

pub struct Ctx<'a> {
    pub s: &'a DefenderSettings,
    pub log: &'a Log,
    pub kv: Kv,
    pub api: Api<'a>,
    pub entra: Entra,
    pub tenant: &'a str,
    pub counts: Counts,
    pub graph_ops: u32,
}

/// One alert being written back this tick.
pub struct Work {
    pub id: String,
    pub wb_key: String,
    pub wb: Writeback,
    pub incident: Option<String>,
    /// Every comment the alert gets, each starting with its marker line.
    pub comments: Vec<String>,
    /// Every sample of the alert's analyses, children included.
    pub samples: Vec<SampleReport>,
}

impl Work {
    pub fn comments_done(&self) -> bool {
        self.comments.iter().all(|c| {
            let marker = c.lines().next().unwrap_or_default();
            self.wb
                .comments
                .iter()
                .any(|p| p.marker == marker && p.posted)
        })
    }

    /// Indicators written, or given up after repeated refusals (reported).
    pub fn indicators_done(&self) -> bool {
        self.wb.indicators_done || self.wb.gave_up.is_some()
    }

    pub fn save(&self, kv: &Kv) -> Result<(), String> {
        kv.put(&self.wb_key, &self.wb)
    }
}

async fn tick(s: &DefenderSettings, log: &Log) -> Result<String, String> {
    let tenant = &s.common.tenant_id;
    let mut cx = Ctx {
        s,
        log,
        kv: Kv::open()?,
        api: Api::new("defender", s.retry, log),
        entra: Entra::new(s.entra.clone(), tenant),
        tenant,
        counts: Counts::default(),
        graph_ops: 0,
    };
    let open: OpenAlerts = cx.kv.get(&keys::open(tenant))?.unwrap_or_default();
    let mut work = Vec::new();
    for id in &open.ids {
        if work.len() >= MAX_ALERTS_PER_TICK {
            break;
        }
        match cx.gather(id) {
            Ok(Some(w)) => work.push(w),
            Ok(None) => {}
            Err(e) => log.warn(
                "writeback_failed",
                &[("alert", json!(id)), ("error", json!(e))],
            ),
        }
    }
    if !work.is_empty() {
        cx.post_comments(&mut work).await?;
        cx.write_indicators(&mut work).await?;
        cx.tag_incidents(&mut work).await?;
        cx.finish(&mut work)?;
    }
    let now = Utc::now();
    let kv = &cx.kv;
    let swept =
        connector_io::sweep::sweep(kv, log, tenant, "defender", &["wb", "ind"], |kind, key| {
            Ok(match kind {
                "ind" => kv
                    .get::<IndicatorRecord>(key)
                    .ok()
                    .flatten()
                    .is_some_and(|r| mdo_vmray::retention::indicator_expired(&r, now)),
                // Write-back state goes once the poller dropped the alert.
                _ => {
                    let id = key.rsplit(':').next().unwrap_or_default();
                    !kv.exists(&format!("{}alert:{id}", keys::prefix(tenant)))?
                }
            })
        })
        .unwrap_or_else(|e| {
            log.warn("sweep_failed", &[("error", json!(e))]);
            0
        });
    let c = &cx.counts;
    Ok(json!({"alerts": work.len(), "swept": swept, "alerts_done": c.alerts_done, "comments": c.comments, "indicators": c.indicators,
              "incidents_tagged": c.incidents_tagged, "graph_ops": cx.graph_ops, "calls": cx.api.sent.get()})
    .to_string())
}

impl Ctx<'_> {
    /// The alert's write-back state and everything it will write, if it is
    /// ready. A permanent problem (a record missing) counts an attempt; after
    /// [`MAX_ATTEMPTS`] the alert gets an error comment instead.
    fn gather(&self, alert_id: &str) -> Result<Option<Work>, String> {
        let wb_key = keys::writeback(self.tenant, alert_id);
        let wb: Writeback = self.kv.get(&wb_key)?.unwrap_or(Writeback {
            v: SCHEMA,
            alert_id: alert_id.to_string(),
            ..Default::default()
        });
        if wb.done_at.is_some() {
            return Ok(None);
        }
        let Some(record) = self
            .kv
            .get::<AlertRecord>(&keys::alert(self.tenant, alert_id))?
        else {
            return Ok(None);
        };
        let mut w = Work {
            id: alert_id.to_string(),
            wb_key,
            wb,
            incident: record.incident_id.clone(),
            comments: Vec::new(),
            samples: Vec::new(),
        };
        if let Some(error) = &w.wb.gave_up {
            w.comments = comment::render_error_comment(error, w.wb.attempts);
            return Ok(Some(w));
        }
        match &record.stage {
            AlertStage::AwaitingUrls { .. } => return Ok(None),
            AlertStage::NoUrls { reason } => {
                w.comments = comment::render_no_url_comment(reason, &record.skipped)
            }
            AlertStage::Ready => {
                let Some(va) = self
                    .kv
                    .get::<AlertAnalyses>(&keys::analyses(self.tenant, alert_id))?
                else {
                    return Ok(None);
                };
                if let Err(e) = self.render(&va, &mut w) {
                    w.wb.attempts += 1;
                    if w.wb.attempts >= MAX_ATTEMPTS {
                        self.log.error(
                            "writeback_abandoned",
                            &[("alert", json!(alert_id)), ("error", json!(e))],
                        );
                        w.wb.gave_up = Some(e.clone());
                    }
                    w.save(&self.kv)?;
                    return Err(e);
                }
            }
        }
        if !w.wb.indicator_failures.is_empty() {
            w.comments
                .extend(comment::render_indicator_failures(&w.wb.indicator_failures));
        }
        Ok(Some(w))
    }

    /// The comments for an alert's analyses, and every sample (children included).
    fn render(&self, va: &AlertAnalyses, w: &mut Work) -> Result<(), String> {
        for r in &va.results {
            match &r.outcome {
                UrlOutcome::Sample {
                    sample_id,
                    submission_id,
                    reused,
                    ..
                } => {
                    let tree = self.sample_tree(*sample_id)?;
                    let (root, children) = tree
                        .split_first()
                        .ok_or_else(|| format!("sample {sample_id} has no record"))?;
                    let marker = comment::sample_marker(*sample_id, *submission_id);
                    let child_refs: Vec<&SampleReport> = children.iter().collect();
                    w.comments.extend(comment::render_sample_comment(
                        &marker,
                        root,
                        &child_refs,
                        *reused,
                    ));
                    w.samples.extend(tree);
                }
                UrlOutcome::Failed { reason } => {
                    let marker = comment::failure_marker(&mdo_vmray::urls::url_key(&r.url));
                    w.comments
                        .extend(comment::render_failure_comment(&marker, &r.url, reason));
                }
            }
        }
        Ok(())
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

    /// Mark alerts whose every part is written as done.
    fn finish(&mut self, work: &mut [Work]) -> Result<(), String> {
        for w in work.iter_mut() {
            let complete = w.comments_done()
                && (w.wb.gave_up.is_some() || (w.indicators_done() && w.wb.tags_done));
            if complete {
                w.wb.done_at = Some(Utc::now());
                w.save(&self.kv)?;
                self.counts.alerts_done += 1;
                self.log.info(
                    "alert_written_back",
                    &[
                        ("alert", json!(w.id)),
                        ("comments", json!(w.comments.len())),
                        ("samples", json!(w.samples.len())),
                    ],
                );
            }
        }
        Ok(())
    }
}
