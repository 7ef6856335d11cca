//! Phase two: Defender indicators for every alert whose comments are
//! posted, de-duplicated across alerts and imported in batches of up to 500.
//!
//! Before an import its indicators are recorded (`ind:pending`); found on a
//! later tick, that record means the import's fate is unknown, so those
//! indicators are looked up instead of written again.

use chrono::{Duration, Utc};
use connector_io::api::Req;
use connector_io::entra::DEFENDER_SCOPE;
use mdo_vmray::indicators::{self, IndicatorDraft, Origin, MAX_IMPORT_BATCH};
use mdo_vmray::records::{
    keys, IndicatorFailure, IndicatorRecord, PendingImport, PendingIndicator, SCHEMA,
};
use serde_json::json;

use crate::tick::{Ctx, Work, MAX_ATTEMPTS};

/// Import calls per tick (Defender allows 30 a minute).
const MAX_IMPORTS_PER_TICK: usize = 10;

fn same(d: &IndicatorDraft, kind: mdo_vmray::model::IndicatorKind, value: &str) -> bool {
    d.ioc.kind == kind && d.ioc.value.eq_ignore_ascii_case(value)
}

impl Ctx<'_> {
    pub async fn write_indicators(&mut self, work: &mut [Work]) -> Result<(), String> {
        let ready: Vec<usize> = (0..work.len())
            .filter(|i| work[*i].comments_done() && !work[*i].indicators_done())
            .collect();
        if ready.is_empty() {
            return Ok(());
        }
        if !self.s.create_indicators {
            for i in ready {
                work[i].wb.indicators_done = true;
                work[i].save(&self.kv)?;
            }
            return Ok(());
        }
        let now = Utc::now();
        // Every indicator due, once, with the alerts it belongs to.
        let mut drafts: Vec<(IndicatorDraft, Vec<usize>)> = Vec::new();
        for &i in &ready {
            for s in &work[i].samples {
                let origin = Origin {
                    sample_id: s.sample_id,
                    sample_url: s.url.as_deref(),
                    alert_id: &work[i].id,
                };
                for ioc in &s.iocs {
                    let Some(d) = indicators::draft(ioc, &origin, self.s, now) else {
                        continue;
                    };
                    if let Some((_, owners)) = drafts
                        .iter_mut()
                        .find(|(x, _)| same(x, d.ioc.kind, &d.ioc.value))
                    {
                        if !owners.contains(&i) {
                            owners.push(i);
                        }
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
                                    ("alert", json!(work[i].id)),
                                    ("type", json!(d.ioc.kind.as_str())),
                                    ("reason", json!(why)),
                                ],
                            );
                        }
                        drafts.push((d, vec![i]));
                    }
                }
            }
        }
        self.resolve_pending(&mut drafts).await?;

        let mut failed: Vec<(usize, IndicatorFailure)> = Vec::new();
        // Indicators whose outcome is known this tick (written, or refused).
        let mut settled: Vec<(mdo_vmray::model::IndicatorKind, String)> = Vec::new();
        for batch in drafts.chunks(MAX_IMPORT_BATCH).take(MAX_IMPORTS_PER_TICK) {
            if self.s.common.dry_run {
                for (d, owners) in batch {
                    self.log.info(
                        "dry_run_would_write_indicator",
                        &[
                            (
                                "alerts",
                                json!(owners.iter().map(|i| &work[*i].id).collect::<Vec<_>>()),
                            ),
                            ("indicator", d.body.clone()),
                        ],
                    );
                    settled.push((d.ioc.kind, d.ioc.value.clone()));
                }
                continue;
            }
            let pending = PendingImport {
                v: SCHEMA,
                items: batch
                    .iter()
                    .map(|(d, _)| PendingIndicator {
                        kind: d.ioc.kind,
                        value: d.ioc.value.clone(),
                    })
                    .collect(),
            };
            self.kv
                .put(&keys::indicator_pending(self.tenant), &pending)?;
            let refs: Vec<&IndicatorDraft> = batch.iter().map(|(d, _)| d).collect();
            let url = format!("{}/api/indicators/import", self.s.defender_base_url);
            // Retried only when refused outright (429): a lost answer is reconciled instead.
            let req = Req::post_json(url, &indicators::import_body(&refs), false);
            let resp = match self.entra.call(&self.api, DEFENDER_SCOPE, &req).await {
                Ok(r) => r,
                Err(e) => {
                    // No answer: fate unknown, the pending record stays for the next tick.
                    self.log.warn(
                        "indicator_import_unconfirmed",
                        &[("error", json!(e.to_string()))],
                    );
                    break;
                }
            };
            let items = if resp.ok() {
                indicators::parse_import_response(&resp.body).ok()
            } else {
                None
            };
            match items {
                Some(items) => {
                    for (d, owners) in batch {
                        match items
                            .iter()
                            .find(|it| it.indicator.eq_ignore_ascii_case(&d.ioc.value))
                        {
                            Some(it) if !it.failed => {
                                self.record_indicator(d)?;
                                settled.push((d.ioc.kind, d.ioc.value.clone()));
                                self.counts.indicators += 1;
                                self.log.info(
                                    "indicator_written",
                                    &[
                                        ("alerts", json!(owners.len())),
                                        ("type", json!(d.ioc.kind.as_str())),
                                        ("action", json!(d.action.as_str())),
                                    ],
                                );
                            }
                            other => {
                                let reason = other
                                    .and_then(|it| it.reason.clone())
                                    .unwrap_or_else(|| "not in the import response".into());
                                self.log.error(
                                    "indicator_failed",
                                    &[
                                        ("type", json!(d.ioc.kind.as_str())),
                                        ("reason", json!(reason)),
                                    ],
                                );
                                settled.push((d.ioc.kind, d.ioc.value.clone()));
                                for o in owners {
                                    failed.push((
                                        *o,
                                        IndicatorFailure {
                                            kind: d.ioc.kind,
                                            value: d.ioc.value.clone(),
                                            action: d.action,
                                            reason: reason.clone(),
                                        },
                                    ));
                                }
                            }
                        }
                    }
                    self.kv.delete(&keys::indicator_pending(self.tenant))?;
                }
                None if resp.status == 400 => {
                    // The whole batch refused (the tenant's indicator cap, a malformed batch).
                    let reason = format!(
                        "Defender refused the import: {}",
                        self.log.scrub(&resp.snippet())
                    );
                    self.log
                        .error("indicator_import_refused", &[("error", json!(reason))]);
                    for (d, owners) in batch {
                        settled.push((d.ioc.kind, d.ioc.value.clone()));
                        for o in owners {
                            failed.push((
                                *o,
                                IndicatorFailure {
                                    kind: d.ioc.kind,
                                    value: d.ioc.value.clone(),
                                    action: d.action,
                                    reason: reason.clone(),
                                },
                            ));
                        }
                    }
                    self.kv.delete(&keys::indicator_pending(self.tenant))?;
                }
                None => {
                    // 429 after retries: not imported. 5xx or an unreadable 2xx: unknown,
                    // so the pending record stays and the next tick looks them up.
                    self.log.warn(
                        "indicator_import_failed",
                        &[
                            ("status", json!(resp.status)),
                            ("body", json!(self.log.scrub(&resp.snippet()))),
                        ],
                    );
                    if resp.status == 429 {
                        self.kv.delete(&keys::indicator_pending(self.tenant))?;
                    }
                    break;
                }
            }
        }
        for i in ready {
            // Only alerts whose every indicator has a known outcome move on.
            let open = drafts.iter().any(|(d, owners)| {
                owners.contains(&i) && !settled.iter().any(|(k, v)| same(d, *k, v))
            });
            if open {
                continue;
            }
            let w = &mut work[i];
            let mine: Vec<IndicatorFailure> = failed
                .iter()
                .filter(|(o, _)| *o == i)
                .map(|(_, f)| f.clone())
                .collect();
            if mine.is_empty() {
                w.wb.indicators_done = true;
            } else {
                w.wb.indicator_attempts += 1;
                if w.wb.indicator_attempts >= MAX_ATTEMPTS {
                    // Given up: the failures go on the alert as a comment next tick.
                    w.wb.indicator_failures = mine;
                    w.wb.indicators_done = true;
                }
            }
            w.save(&self.kv)?;
        }
        Ok(())
    }

    /// An import of an earlier tick whose answer was lost: look its
    /// indicators up; those found are recorded and not written again.
    async fn resolve_pending(
        &mut self,
        drafts: &mut Vec<(IndicatorDraft, Vec<usize>)>,
    ) -> Result<(), String> {
        let Some(pending) = self
            .kv
            .get::<PendingImport>(&keys::indicator_pending(self.tenant))?
        else {
            return Ok(());
        };
        let mut found = Vec::new();
        for (d, _) in drafts
            .iter()
            .filter(|(d, _)| pending.items.iter().any(|p| same(d, p.kind, &p.value)))
        {
            let url = format!(
                "{}{}",
                self.s.defender_base_url,
                indicators::lookup_query(d.ioc.kind, &d.ioc.value)
            );
            let resp = self
                .entra
                .call(&self.api, DEFENDER_SCOPE, &Req::get(url))
                .await
                .map_err(|e| format!("indicator look-up: {e}"))?;
            if !resp.ok() {
                return Err(format!("indicator look-up: HTTP {}", resp.status));
            }
            if indicators::lookup_found(&resp.body, &d.ioc.value, Utc::now() + Duration::days(1))? {
                self.record_indicator(d)?;
                found.push((d.ioc.kind, d.ioc.value.clone()));
                self.log.info(
                    "indicator_found_after_restart",
                    &[("type", json!(d.ioc.kind.as_str()))],
                );
            }
        }
        // Found ones are done; their alerts still count them as written.
        drafts.retain(|(d, _)| !found.iter().any(|(k, v)| same(d, *k, v)));
        self.kv.delete(&keys::indicator_pending(self.tenant))
    }

    fn record_indicator(&self, d: &IndicatorDraft) -> Result<(), String> {
        let rec = IndicatorRecord {
            v: SCHEMA,
            value: d.ioc.value.clone(),
            kind: d.ioc.kind,
            action: d.action,
            expires: d.expires,
            written_at: Utc::now(),
        };
        self.kv.put(
            &keys::indicator(self.tenant, d.ioc.kind, &d.ioc.value),
            &rec,
        )
    }
}
