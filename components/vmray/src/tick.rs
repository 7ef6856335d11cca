//! One VMRay tick: for every open alert whose URLs are known, make sure each
//! URL has a fresh enough analysis (own store, then VMRay's submission
//! search, then a submit), follow running submissions without sleeping,
//! collect results, and publish them per alert. Writes only `url:*`,
//! `sample:*` and `va:*` records. Holds the only copy of the VMRay key.

use std::collections::{HashSet, VecDeque};

use chrono::{DateTime, Utc};
use connector_io::api::{Api, CallError, Req, Resp};
use connector_io::kv::Kv;
use connector_io::log::Log;
use connector_io::vars::spin_var;
use mdo_vmray::analysis::{self, UrlStep, MAX_CHILD_DEPTH, MAX_CHILD_SAMPLES};
use mdo_vmray::attachments;
use mdo_vmray::config::VmraySettings;
use mdo_vmray::records::{
    keys, AlertAnalyses, AlertRecord, FileBlob, OpenAlerts, SampleReport, UrlAnalysis, UrlOutcome,
    UrlRef, UrlResult, UrlState, SCHEMA,
};
use mdo_vmray::vmray::{self, SubmissionStatus};
use serde_json::json;

/// Alerts worked on per tick; the rest wait for the next one.
const MAX_ALERTS_PER_TICK: usize = 500;
/// VMRay requests one tick may start new work with (a tick already under way
/// finishes its URL): a steady rate for VMRay, short ticks for the host.
const MAX_CALLS_PER_TICK: u32 = 300;

/// Submissions of one URL whose answer could not be read before it is given up.
const MAX_SUBMIT_ATTEMPTS: u32 = 4;

pub async fn run() -> Result<String, String> {
    let (settings, log) = connector_io::tick::start("vmray", VmraySettings::read(&spin_var))?;
    let result = Vmray::new(&settings, &log).tick().await;
    connector_io::tick::finish(&log, result)
}

struct Vmray<'a> {
    s: &'a VmraySettings,
    log: &'a Log,
    api: Api<'a>,
    tenant: &'a str,
    submitted: u32,
    reused: u32,
    finished: u32,
}

impl<'a> Vmray<'a> {
    fn new(s: &'a VmraySettings, log: &'a Log) -> Self {
        let api = Api::new("vmray", s.retry, log);
        Vmray {
            s,
            log,
            api,
            tenant: &s.common.tenant_id,
            submitted: 0,
            reused: 0,
            finished: 0,
        }
    }

    async fn tick(mut self) -> Result<String, String> {
        let kv = Kv::open()?;
        let open: OpenAlerts = kv.get(&keys::open(self.tenant))?.unwrap_or_default();
        let mut driven: HashSet<String> = HashSet::new();
        let mut published = 0;
        let mut worked = 0;
        for alert_id in &open.ids {
            if kv.exists(&keys::analyses(self.tenant, alert_id))? {
                continue;
            }
            let record: AlertRecord = match kv.get(&keys::alert(self.tenant, alert_id)) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    self.log.warn(
                        "record_unreadable",
                        &[("alert", json!(alert_id)), ("error", json!(e))],
                    );
                    continue;
                }
            };
            if !analysis::alert_ready(&record) {
                continue;
            }
            // Spread a burst over ticks: each stays short and VMRay sees a steady rate.
            if worked >= MAX_ALERTS_PER_TICK
                || self.api.sent.get() >= MAX_CALLS_PER_TICK
                || self.api.out_of_time()
            {
                self.log.info(
                    "tick_budget_spent",
                    &[
                        ("alert", json!(alert_id)),
                        ("calls", json!(self.api.sent.get())),
                    ],
                );
                break;
            }
            worked += 1;
            let needed = analysis::needed_since(record.first_seen, self.s.resubmit_after_days);
            let mut results = Vec::new();
            for u in &record.urls {
                let key = keys::url(self.tenant, &u.key);
                if driven.insert(u.key.clone()) {
                    if let Err(e) = self
                        .drive(&kv, u, &key, needed, alert_id, record.first_seen)
                        .await
                    {
                        self.log.warn(
                            "url_step_failed",
                            &[
                                ("alert", json!(alert_id)),
                                ("url_key", json!(u.key)),
                                ("error", json!(e)),
                            ],
                        );
                    }
                }
                let current: Option<UrlAnalysis> = kv.get(&key)?;
                if let Some(r) = analysis::url_result(current.as_ref(), needed) {
                    results.push(r);
                }
            }
            // Attachments (files) of user-reported mail, like URLs but by hash.
            for f in &record.files {
                let u = UrlRef {
                    url: attachments::analysis_subject(&f.sha256),
                    key: keys::file_analysis(&f.sha256),
                };
                let key = keys::url(self.tenant, &u.key);
                if driven.insert(u.key.clone()) {
                    if let Err(e) = self
                        .drive(&kv, &u, &key, needed, alert_id, record.first_seen)
                        .await
                    {
                        self.log.warn(
                            "file_step_failed",
                            &[
                                ("alert", json!(alert_id)),
                                ("sha256", json!(f.sha256)),
                                ("error", json!(e)),
                            ],
                        );
                    }
                }
                let current: Option<UrlAnalysis> = kv.get(&key)?;
                if let Some(mut r) = analysis::url_result(current.as_ref(), needed) {
                    r.url = attachments::display(f);
                    r.file = Some(f.clone());
                    results.push(r);
                }
            }
            if results.len() == record.urls.len() + record.files.len() {
                // Attachments that could not be analysed are said on the alert.
                for n in &record.attachment_notes {
                    results.push(UrlResult {
                        url: format!("attachment {}", n.name),
                        outcome: UrlOutcome::Failed {
                            reason: n.reason.clone(),
                        },
                        file: None,
                    });
                }
                let done = AlertAnalyses {
                    v: SCHEMA,
                    alert_id: alert_id.clone(),
                    results,
                    completed_at: Utc::now(),
                };
                kv.put(&keys::analyses(self.tenant, alert_id), &done)?;
                published += 1;
                self.log.info(
                    "alert_analysed",
                    &[
                        ("alert", json!(alert_id)),
                        ("urls", json!(record.urls.len())),
                    ],
                );
            }
        }
        let (tenant, resubmit_days, now) = (self.tenant, self.s.resubmit_after_days, Utc::now());
        let swept =
            connector_io::sweep::sweep(
                &kv,
                self.log,
                tenant,
                "vmray",
                &["url", "sample", "va"],
                |kind, key| {
                    Ok(match kind {
                        "url" => kv.get::<UrlAnalysis>(key).ok().flatten().is_some_and(|r| {
                            mdo_vmray::retention::url_expired(&r, resubmit_days, now)
                        }),
                        "sample" => kv
                            .get::<SampleReport>(key)
                            .ok()
                            .flatten()
                            .is_some_and(|r| mdo_vmray::retention::sample_expired(&r, now)),
                        // An alert's analyses go once the poller dropped the alert.
                        _ => {
                            let id = key.rsplit(':').next().unwrap_or_default();
                            !kv.exists(&format!("{}alert:{id}", keys::prefix(tenant)))?
                        }
                    })
                },
            )
            .unwrap_or_else(|e| {
                self.log.warn("sweep_failed", &[("error", json!(e))]);
                0
            });
        Ok(json!({"swept": swept, "submitted": self.submitted, "reused": self.reused, "finished": self.finished, "alerts_published": published})
            .to_string())
    }

    /// Move one URL one step forward.
    async fn drive(
        &mut self,
        kv: &Kv,
        u: &UrlRef,
        key: &str,
        needed: DateTime<Utc>,
        alert_id: &str,
        first_seen: DateTime<Utc>,
    ) -> Result<(), String> {
        let record: Option<UrlAnalysis> = kv.get(key)?;
        let now = Utc::now();
        let set = |state: UrlState| {
            kv.put(
                key,
                &UrlAnalysis {
                    v: SCHEMA,
                    url: u.url.clone(),
                    state,
                },
            )
        };
        match analysis::next_step(
            record.as_ref(),
            needed,
            now,
            self.s.analysis_timeout_minutes,
        ) {
            UrlStep::Reuse | UrlStep::Failed => Ok(()),
            UrlStep::Lookup { since } => match self.search(&u.url, since).await? {
                Some(found) => {
                    let dated = found.created.unwrap_or(now);
                    let reused = analysis::found_is_reuse(found.created, first_seen);
                    self.adopt(kv, u, key, found, dated, reused).await
                }
                None => self.submit(kv, u, key, alert_id, 0).await,
            },
            UrlStep::Reconcile { since, intent_at } => {
                let attempts = match record.map(|r| r.state) {
                    Some(UrlState::Submitting { attempts, .. }) => attempts,
                    _ => 0,
                };
                match self.search(&u.url, since).await? {
                    Some(found) => {
                        self.log.info(
                            "submission_reconciled",
                            &[
                                ("url_key", json!(u.key)),
                                ("submission", json!(found.submission_id)),
                            ],
                        );
                        // Ours, whatever VMRay's clock says: dated by our intent.
                        self.adopt(kv, u, key, found, intent_at, false).await
                    }
                    None => self.submit(kv, u, key, alert_id, attempts).await,
                }
            }
            UrlStep::Poll {
                submission_id,
                sample_id,
                submitted_at,
            } => {
                let resp = self
                    .get(&format!("/rest/submission/{submission_id}"))
                    .await?;
                let status = vmray::parse_submission_status(&resp.body)
                    .map_err(|e| format!("GET /rest/submission/{submission_id}: {e}"))?;
                if status.has_errors {
                    set(UrlState::Failed {
                        reason: "VMRay reported an error for this analysis".into(),
                        at: now,
                    })?;
                    self.log.warn(
                        "analysis_failed",
                        &[
                            ("url_key", json!(u.key)),
                            ("submission", json!(submission_id)),
                        ],
                    );
                } else if status.finished {
                    // Dated when submitted, on our clock (not the sample's
                    // date: VMRay keeps one sample per URL, created at its
                    // first analysis).
                    let analysed_at = submitted_at;
                    self.collect(kv, sample_id, analysed_at).await?;
                    set(UrlState::Done {
                        sample_id,
                        submission_id: Some(submission_id),
                        analysed_at,
                        reused: false,
                    })?;
                    self.finished += 1;
                    self.log.info(
                        "analysis_finished",
                        &[("url_key", json!(u.key)), ("sample", json!(sample_id))],
                    );
                }
                Ok(())
            }
            UrlStep::TimedOut => {
                let reason = format!("the analysis did not finish within {} minutes (vmray_analysis_timeout_minutes)", self.s.analysis_timeout_minutes);
                self.log
                    .warn("analysis_timed_out", &[("url_key", json!(u.key))]);
                set(UrlState::Failed { reason, at: now })
            }
        }
    }

    /// A submission found by search: follow it, or take its results now.
    async fn adopt(
        &mut self,
        kv: &Kv,
        u: &UrlRef,
        key: &str,
        found: SubmissionStatus,
        analysed_at: DateTime<Utc>,
        reused: bool,
    ) -> Result<(), String> {
        let state = if found.finished {
            self.collect(kv, found.sample_id, analysed_at).await?;
            if reused {
                self.reused += 1;
                self.log.info(
                    "analysis_reused",
                    &[
                        ("url_key", json!(u.key)),
                        ("sample", json!(found.sample_id)),
                    ],
                );
            }
            UrlState::Done {
                sample_id: found.sample_id,
                submission_id: Some(found.submission_id),
                analysed_at,
                reused,
            }
        } else {
            UrlState::Running {
                submission_id: found.submission_id,
                sample_id: found.sample_id,
                submitted_at: analysed_at,
            }
        };
        kv.put(
            key,
            &UrlAnalysis {
                v: SCHEMA,
                url: u.url.clone(),
                state,
            },
        )
    }

    /// Submit a URL. The intent is recorded first: if the tick dies after the
    /// POST, the next tick finds the submission by search instead of paying twice.
    async fn submit(
        &mut self,
        kv: &Kv,
        u: &UrlRef,
        key: &str,
        alert_id: &str,
        attempts: u32,
    ) -> Result<(), String> {
        let now = Utc::now();
        if self.s.common.dry_run {
            self.log.info(
                "dry_run_would_submit",
                &[("url_key", json!(u.key)), ("alert", json!(alert_id))],
            );
            return kv.put(
                key,
                &UrlAnalysis {
                    v: SCHEMA,
                    url: u.url.clone(),
                    state: UrlState::Failed {
                        reason: "dry run: not submitted".into(),
                        at: now,
                    },
                },
            );
        }
        // A file's bytes come from the poller's chunks (read before the intent:
        // a file that is not there is not submitted).
        let file = match attachments::subject_sha256(&u.url) {
            Some(sha) => match self.read_file(kv, sha) {
                Ok(f) => Some(f),
                Err(e) => {
                    self.log.warn(
                        "attachment_unreadable",
                        &[("sha256", json!(sha)), ("error", json!(e))],
                    );
                    return kv.put(
                        key,
                        &UrlAnalysis {
                            v: SCHEMA,
                            url: u.url.clone(),
                            state: UrlState::Failed {
                                reason: format!(
                                    "the attachment could not be read from the store: {e}"
                                ),
                                at: now,
                            },
                        },
                    );
                }
            },
            None => None,
        };
        kv.put(
            key,
            &UrlAnalysis {
                v: SCHEMA,
                url: u.url.clone(),
                state: UrlState::Submitting {
                    since: now,
                    attempts: attempts + 1,
                },
            },
        )?;
        let tags = analysis::submission_tags(
            &self.s.submission_tags,
            self.s.add_alert_id_tags.then_some(alert_id),
        );
        let comment = format!("Defender for Office 365 alert {alert_id}");
        let submit_url = format!("{}/rest/sample/submit", self.s.base_url);
        let req = match &file {
            Some((blob, bytes)) => {
                let (content_type, body) = attachments::multipart_body(
                    &[("tags", tags.as_str()), ("comment", comment.as_str())],
                    "sample_file",
                    &blob.filename,
                    &blob.content_type,
                    bytes,
                );
                let mut req = Req::post_form(submit_url, &[], false);
                req.headers = vec![("content-type".into(), content_type)];
                req.body = body;
                req
            }
            None => Req::post_form(
                submit_url,
                &[
                    ("sample_url", u.url.as_str()),
                    ("tags", tags.as_str()),
                    ("comment", comment.as_str()),
                ],
                false,
            ),
        };
        let resp = self.authed(req).await;
        let failed = |reason: String| {
            kv.put(
                key,
                &UrlAnalysis {
                    v: SCHEMA,
                    url: u.url.clone(),
                    state: UrlState::Failed { reason, at: now },
                },
            )
        };
        match resp {
            Ok(r) if r.ok() => match vmray::parse_submit(&r.body) {
                Ok(sub) => {
                    self.submitted += 1;
                    self.log.info(
                        "url_submitted",
                        &[
                            ("url_key", json!(u.key)),
                            ("alert", json!(alert_id)),
                            ("submission", json!(sub.submission_id)),
                            ("sample", json!(sub.sample_id)),
                        ],
                    );
                    kv.put(
                        key,
                        &UrlAnalysis {
                            v: SCHEMA,
                            url: u.url.clone(),
                            state: UrlState::Running {
                                submission_id: sub.submission_id,
                                sample_id: sub.sample_id,
                                submitted_at: now,
                            },
                        },
                    )
                }
                // An answer we cannot read (garbled, or VMRay's errors[]
                // inside a 200): the fate is unknown, so the intent stays and
                // the next tick reconciles by search, a few times at most.
                Err(e) if attempts + 1 < MAX_SUBMIT_ATTEMPTS => {
                    self.log.warn(
                        "submit_unclear",
                        &[
                            ("url_key", json!(u.key)),
                            ("path", json!("/rest/sample/submit")),
                            ("error", json!(e.to_string())),
                        ],
                    );
                    Err(format!(
                        "POST /rest/sample/submit: {e}; will reconcile next tick"
                    ))
                }
                Err(e) => failed(format!("VMRay refused the submission: {e}")),
            },
            // A 4xx other than 429 means VMRay did not take it: safe to say so.
            Ok(r) if (400..500).contains(&r.status) && r.status != 429 => failed(format!(
                "VMRay refused the submission (HTTP {}): {}",
                r.status,
                self.log.scrub(&r.snippet())
            )),
            // Unknown fate (5xx, no response): the intent stays; the next tick reconciles.
            Ok(r) => Err(format!(
                "submit: HTTP {}; will reconcile next tick",
                r.status
            )),
            Err(e) => Err(format!("submit: {e}; will reconcile next tick")),
        }
    }

    async fn authed(&self, req: Req) -> Result<Resp, CallError> {
        let req = req.header("authorization", &format!("api_key {}", self.s.api_key));
        self.api.call(&req).await
    }

    async fn get(&self, path_and_query: &str) -> Result<Resp, String> {
        let resp = self
            .authed(Req::get(format!("{}{path_and_query}", self.s.base_url)))
            .await
            .map_err(|e| e.to_string())?;
        if resp.ok() {
            Ok(resp)
        } else {
            let path = connector_io::api::path_of(&format!("{}{path_and_query}", self.s.base_url));
            Err(format!(
                "GET {path}: HTTP {}: {}",
                resp.status,
                self.log.scrub(&resp.snippet())
            ))
        }
    }

    /// A stored attachment: its meta record and its bytes, checked.
    fn read_file(&self, kv: &Kv, sha256: &str) -> Result<(FileBlob, Vec<u8>), String> {
        let blob: FileBlob = kv
            .get(&keys::file_blob(self.tenant, sha256))?
            .ok_or("no stored bytes (the poller has not stored them, or removed them)")?;
        let mut chunks = Vec::with_capacity(blob.chunks as usize);
        for n in 0..blob.chunks {
            match kv.get_bytes(&keys::file_chunk(self.tenant, sha256, n))? {
                Some(c) => chunks.push(c),
                None => break,
            }
        }
        let bytes = attachments::reassemble(&blob, &chunks)?;
        Ok((blob, bytes))
    }

    /// The newest submission of a file (by hash) created at or after `since`:
    /// its samples by `GET /rest/sample/sha256/{hash}`, then their submissions.
    async fn search_file(
        &self,
        sha256: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<SubmissionStatus>, String> {
        let path = format!("/rest/sample/sha256/{sha256}");
        let resp = self
            .authed(Req::get(format!("{}{path}", self.s.base_url)))
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        if resp.status == 404 {
            return Ok(None);
        }
        if !resp.ok() {
            return Err(format!(
                "GET /rest/sample/sha256: HTTP {}: {}",
                resp.status,
                self.log.scrub(&resp.snippet())
            ));
        }
        let ids = attachments::parse_sample_ids(&resp.body)
            .map_err(|e| format!("GET /rest/sample/sha256: {e}"))?;
        let mut newest: Option<SubmissionStatus> = None;
        for id in ids {
            let resp = self.get(&format!("/rest/submission/sample/{id}")).await?;
            let found = vmray::newest_submission(&resp.body, since)
                .map_err(|e| format!("GET /rest/submission/sample/{id}: {e}"))?;
            if let Some(f) = found {
                if newest
                    .as_ref()
                    .is_none_or(|n| (f.created, f.submission_id) > (n.created, n.submission_id))
                {
                    newest = Some(f);
                }
            }
        }
        Ok(newest)
    }

    /// The newest submission of this URL (or file) created at or after `since`.
    async fn search(
        &self,
        url: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<SubmissionStatus>, String> {
        if let Some(sha) = attachments::subject_sha256(url) {
            return self.search_file(sha, since).await;
        }
        let query: String =
            url::form_urlencoded::byte_serialize(vmray::search_query(url).as_bytes()).collect();
        let resp = self
            .get(&format!("/rest/submission/search?query={query}"))
            .await?;
        vmray::newest_submission(&resp.body, since)
            .map_err(|e| format!("GET /rest/submission/search: {e}"))
    }

    /// Read a sample and its children (bounded) into sample records; the
    /// root carries the date of the analysis that produced these results.
    async fn collect(&self, kv: &Kv, root: u64, analysed_at: DateTime<Utc>) -> Result<(), String> {
        let mut queue: VecDeque<(u64, usize)> = VecDeque::from([(root, 0)]);
        let mut seen: HashSet<u64> = HashSet::new();
        while let Some((id, depth)) = queue.pop_front() {
            if !seen.insert(id) || seen.len() > MAX_CHILD_SAMPLES + 1 {
                continue;
            }
            let sample_body = self.get(&format!("/rest/sample/{id}")).await?.body;
            let mut report = vmray::parse_sample(&sample_body, Utc::now())
                .map_err(|e| format!("GET /rest/sample/{id}: {e}"))?;
            let base = format!("/rest/sample/{id}");
            report.threat_names =
                vmray::parse_threat_names(&self.get(&format!("{base}/threat_names")).await?.body)
                    .map_err(|e| format!("GET {base}/threat_names: {e}"))?;
            // The sample record still carries its classifications (deprecated
            // field): one call fewer per sample; the endpoint when it is absent.
            report.classifications = match vmray::sample_classifications(&sample_body) {
                Some(c) => c,
                None => vmray::parse_classifications(
                    &self.get(&format!("{base}/classifications")).await?.body,
                )
                .map_err(|e| format!("GET {base}/classifications: {e}"))?,
            };
            report.vtis = vmray::parse_vtis(&self.get(&format!("{base}/vtis")).await?.body)
                .map_err(|e| format!("GET {base}/vtis: {e}"))?;
            report.iocs = vmray::parse_iocs(&self.get(&format!("{base}/iocs")).await?.body)
                .map_err(|e| format!("GET {base}/iocs: {e}"))?;
            if depth < MAX_CHILD_DEPTH {
                for child in &report.child_ids {
                    queue.push_back((*child, depth + 1));
                }
            } else {
                report.child_ids.clear();
            }
            if id == root {
                report.analysed_at = analysed_at;
            }
            report.stored_at = Some(Utc::now());
            self.log.info(
                "sample_read",
                &[
                    ("sample", json!(id)),
                    ("verdict", json!(report.verdict.as_str())),
                    ("iocs", json!(report.iocs.len())),
                ],
            );
            kv.put(&keys::sample(self.tenant, id), &report)?;
        }
        Ok(())
    }
}
