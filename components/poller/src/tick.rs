//! One poller tick: list MDO alerts since the cursor, take new ones in, find
//! their URLs (evidence, then one batched hunting query), publish the open
//! list, move the cursor. Writes only `poll:*` and `alert:*` records.

use chrono::Utc;
use connector_io::api::{Api, Req};
use connector_io::entra::{Entra, GRAPH_SCOPE};
use connector_io::kv::Kv;
use connector_io::log::Log;
use connector_io::vars::spin_var;
use mdo_vmray::alert::parse_page;
use mdo_vmray::config::{PollerSettings, RetryLimits};
use mdo_vmray::hunting::{self, MAX_IDS_PER_QUERY};
use mdo_vmray::poll::{self, Intake};
use mdo_vmray::records::{keys, AlertRecord, AlertStage, Cursor, OpenAlerts, Writeback, SCHEMA};
use serde_json::json;

/// Pages listed per tick at most; when there are more, the cursor stays put.
const MAX_PAGES: usize = 20;
/// Graph has no retry settings of its own in the vendor's form; these match
/// the Defender API's defaults.
const GRAPH_RETRY: RetryLimits = RetryLimits {
    max_retries: 2,
    total_timeout_secs: 120,
};

pub async fn run() -> Result<String, String> {
    let (settings, log) = connector_io::tick::start("poller", PollerSettings::read(&spin_var))?;
    let result = tick(&settings, &log).await;
    connector_io::tick::finish(&log, result)
}

async fn tick(s: &PollerSettings, log: &Log) -> Result<String, String> {
    let tenant = &s.common.tenant_id;
    let kv = Kv::open()?;
    let api = Api::new("graph", GRAPH_RETRY, log);
    let entra = Entra::new(s.entra.clone(), tenant);
    let now = Utc::now();

    let cursor: Option<Cursor> = kv.get(&keys::cursor(tenant))?;
    let mut open: OpenAlerts = kv.get(&keys::open(tenant))?.unwrap_or(OpenAlerts {
        v: SCHEMA,
        ids: Vec::new(),
    });
    let (mut listed, mut taken, mut bad, mut young) = (0u32, 0u32, 0u32, 0u32);
    // Membership checks on the open list, which can hold thousands of ids.
    let mut open_set: std::collections::HashSet<String> = open.ids.iter().cloned().collect();
    let (first_page, mut newest_seen) =
        poll::listing_start(&s.graph_base_url, cursor.as_ref(), now);
    let mut url = Some(first_page);
    let mut unfinished: Option<String> = None;
    let mut pages = 0;

    while let Some(page_url) = url.take() {
        pages += 1;
        let resp = entra
            .call(&api, GRAPH_SCOPE, &Req::get(&page_url))
            .await
            .map_err(|e| format!("listing alerts: {e}"))?;
        if !resp.ok() {
            // A continuation Graph no longer accepts (an expired skip token):
            // start the listing afresh from `since` next tick.
            if pages == 1 && (400..500).contains(&resp.status) && resp.status != 429 {
                if let Some(c) = cursor.as_ref().filter(|c| c.resume.is_some()) {
                    let restart = mdo_vmray::records::Cursor {
                        resume: None,
                        resume_newest: None,
                        ..c.clone()
                    };
                    kv.put(&keys::cursor(tenant), &restart)?;
                    log.warn("listing_restarted", &[("status", json!(resp.status))]);
                }
            }
            return Err(format!(
                "listing alerts: HTTP {}: {}",
                resp.status,
                log.scrub(&resp.snippet())
            ));
        }
        let page = parse_page(&resp.body).map_err(|e| format!("listing alerts: {e}"))?;
        for item in page.alerts {
            listed += 1;
            let alert = match item {
                Ok(a) => a,
                Err(e) => {
                    bad += 1;
                    log.warn(
                        "alert_unusable",
                        &[("alert", json!(e.alert)), ("error", json!(e.to_string()))],
                    );
                    continue;
                }
            };
            newest_seen = newest_seen.max(Some(alert.last_updated));
            let key = keys::alert(tenant, &alert.id);
            if kv.exists(&key)? {
                // Seen before (a re-listed or updated alert): make sure it is tracked.
                if !open_set.contains(&alert.id) && !writeback_done(&kv, tenant, &alert.id)? {
                    open_set.insert(alert.id.clone());
                    open.ids.push(alert.id.clone());
                }
                continue;
            }
            match poll::intake(&alert, s, now) {
                Intake::Take(record) => {
                    kv.put(&key, &record)?;
                    if open_set.insert(alert.id.clone()) {
                        open.ids.push(alert.id.clone());
                    }
                    taken += 1;
                    log.info(
                        "alert_taken",
                        &[
                            ("alert", json!(alert.id)),
                            ("urls", json!(record.urls.len())),
                            ("stage", json!(stage_name(&record.stage))),
                        ],
                    );
                }
                Intake::TooYoung => {
                    young += 1;
                    log.debug("alert_too_young", &[("alert", json!(alert.id))]);
                }
                Intake::Ignore(why) => log.debug(
                    "alert_ignored",
                    &[("alert", json!(alert.id)), ("reason", json!(why))],
                ),
            }
        }
        match page.next_link {
            Some(next)
                if pages < MAX_PAGES && poll::next_link_allowed(&s.graph_base_url, &next) =>
            {
                url = Some(next)
            }
            Some(next) if pages >= MAX_PAGES => {
                // Go on from this page next tick; `since` stays until the listing ends.
                log.info("listing_continues", &[("pages", json!(pages))]);
                unfinished = Some(next);
            }
            Some(_) => {
                log.error(
                    "next_link_refused",
                    &[(
                        "reason",
                        json!("@odata.nextLink points outside graph_base_url"),
                    )],
                );
                newest_seen = None;
            }
            None => {}
        }
    }

    let hunted = hunt(s, log, &kv, &api, &entra, &open).await?;
    let attachments = crate::attachments::fetch(s, log, &kv, &api, &entra, &open.ids).await?;

    // Alerts the write-back finished leave the open list.
    let mut still_open = Vec::with_capacity(open.ids.len());
    for id in &open.ids {
        if !writeback_done(&kv, tenant, id)? {
            still_open.push(id.clone());
        }
    }
    let still: std::collections::HashSet<&String> = still_open.iter().collect();
    let closed_ids: Vec<String> = open
        .ids
        .iter()
        .filter(|id| !still.contains(id))
        .cloned()
        .collect();
    let closed = open.ids.len() - still_open.len();
    open.ids = still_open;
    kv.put(&keys::open(tenant), &open)?;
    // Stored attachments of finished alerts go (unless an open alert names them).
    let released = crate::attachments::release(&kv, log, tenant, &closed_ids, &open.ids)
        .unwrap_or_else(|e| {
            log.warn("attachment_release_failed", &[("error", json!(e))]);
            0
        });
    if let Some(c) = poll::cursor_after(
        cursor.as_ref(),
        newest_seen,
        unfinished,
        now,
        s.minimum_alert_age_minutes,
    ) {
        kv.put(&keys::cursor(tenant), &c)?;
    }
    let open_now: std::collections::HashSet<&String> = open.ids.iter().collect();
    let swept = connector_io::sweep::sweep(&kv, log, tenant, "poller", &["alert"], |_, key| {
        let rec: Option<AlertRecord> = kv.get(key).unwrap_or(None);
        Ok(rec.is_some_and(|r| {
            mdo_vmray::retention::alert_expired(&r, open_now.contains(&r.alert_id), now)
        }))
    })
    .unwrap_or_else(|e| {
        log.warn("sweep_failed", &[("error", json!(e))]);
        0
    });
    Ok(json!({"listed": listed, "swept": swept, "attachment_fetches": attachments, "attachments_released": released, "taken": taken, "unusable": bad, "too_young": young, "hunted": hunted,
              "closed": closed, "open": open.ids.len()})
    .to_string())
}

fn stage_name(stage: &AlertStage) -> &'static str {
    match stage {
        AlertStage::AwaitingUrls { .. } => "awaiting_urls",
        AlertStage::Ready => "ready",
        AlertStage::NoUrls { .. } => "no_urls",
    }
}

fn writeback_done(kv: &Kv, tenant: &str, alert_id: &str) -> Result<bool, String> {
    Ok(kv
        .get::<Writeback>(&keys::writeback(tenant, alert_id))?
        .is_some_and(|w| w.done_at.is_some()))
}

/// One batched hunting query for every open alert whose URLs are due.
async fn hunt(
    s: &PollerSettings,
    log: &Log,
    kv: &Kv,
    api: &Api<'_>,
    entra: &Entra,
    open: &OpenAlerts,
) -> Result<usize, String> {
    let tenant = &s.common.tenant_id;
    let now = Utc::now();
    let mut due: Vec<(String, AlertRecord)> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    for id in &open.ids {
        let key = keys::alert(tenant, id);
        let record: AlertRecord = match kv.get(&key) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                log.warn(
                    "record_unreadable",
                    &[("alert", json!(id)), ("error", json!(e))],
                );
                continue;
            }
        };
        if poll::hunting_due(&record, now)
            && ids.len() + record.network_message_ids.len() <= MAX_IDS_PER_QUERY
        {
            ids.extend(record.network_message_ids.iter().cloned());
            due.push((key, record));
        }
    }
    if due.is_empty() {
        return Ok(0);
    }
    let refs: Vec<&AlertRecord> = due.iter().map(|(_, r)| r).collect();
    let days = poll::hunting_lookback_days(&refs, s.email_lookback_days);
    let body = hunting::query_body(&ids, days);
    let url = format!("{}/v1.0/security/runHuntingQuery", s.graph_base_url);
    let resp = entra
        .call(api, GRAPH_SCOPE, &Req::post_json(url, &body, true))
        .await;
    let rows = match resp {
        Ok(r) if r.ok() => hunting::parse_results(&r.body)?,
        Ok(r) => {
            log.warn(
                "hunting_failed",
                &[
                    ("status", json!(r.status)),
                    ("body", json!(log.scrub(&r.snippet()))),
                ],
            );
            return Ok(0);
        }
        Err(e) => {
            log.warn("hunting_failed", &[("error", json!(e.to_string()))]);
            return Ok(0);
        }
    };
    log.info(
        "hunting_done",
        &[
            ("alerts", json!(due.len())),
            ("messages", json!(ids.len())),
            ("rows", json!(rows.len())),
            ("timespan_days", json!(days)),
        ],
    );
    for (key, mut record) in due {
        poll::apply_hunting(&mut record, &rows, &s.url_exclusions, now);
        kv.put(&key, &record)?;
        log.info(
            "alert_urls",
            &[
                ("alert", json!(record.alert_id)),
                ("urls", json!(record.urls.len())),
                ("stage", json!(stage_name(&record.stage))),
            ],
        );
    }
    Ok(ids.len())
}
