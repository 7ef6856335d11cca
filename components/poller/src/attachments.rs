//! The poller's part of `analyze_user_reported_attachments`: fetch the
//! attachments of user-reported mail through Graph mail, store them in the
//! key-value store (`att:{sha256}` + chunks) for the VMRay component, and
//! delete them once every alert that named them is written back.
//! Decisions (which attachments, limits, chunking, stage) are in
//! `mdo_vmray::attachments`.

use chrono::Utc;
use connector_io::api::{Api, CallError, Req, Resp};
use connector_io::entra::{Entra, GRAPH_SCOPE};
use connector_io::kv::Kv;
use connector_io::log::Log;
use mdo_vmray::attachments::{self as att, Listed};
use mdo_vmray::config::PollerSettings;
use mdo_vmray::records::{keys, AlertRecord, FileBlob, FileRef, MessageRef};
use serde_json::json;

/// Alerts whose attachments are fetched per tick, at most.
const MAX_ALERTS_PER_TICK: usize = 10;

/// Why one fetch stopped.
enum Stop {
    /// Try again on a later tick (throttling, server error, no answer …).
    Transient(String),
    /// Graph refused for good (403: no `Mail.Read`): note it, do not retry.
    Refused(String),
    /// The store failed: the tick fails.
    Store(String),
}

/// Fetch the attachments of every open alert whose fetch is due.
pub async fn fetch(
    s: &PollerSettings,
    log: &Log,
    kv: &Kv,
    api: &Api<'_>,
    entra: &Entra,
    open_ids: &[String],
) -> Result<usize, String> {
    let tenant = &s.common.tenant_id;
    let now = Utc::now();
    let mut done = 0;
    for id in open_ids {
        if done >= MAX_ALERTS_PER_TICK || api.out_of_time() {
            break;
        }
        let key = keys::alert(tenant, id);
        let mut record: AlertRecord = match kv.get(&key) {
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
        if !att::fetch_due(&record, now) {
            continue;
        }
        done += 1;
        if !s.analyze_user_reported_attachments {
            att::note(
                &mut record,
                "attachments of the reported mail",
                "not fetched: analyze_user_reported_attachments was turned off",
            );
            att::finish(&mut record);
            kv.put(&key, &record)?;
            continue;
        }
        let messages = record.messages.clone();
        let mut outcome = Ok(());
        for m in &messages {
            outcome = fetch_message(s, log, kv, api, entra, &mut record, m).await;
            if outcome.is_err() {
                break;
            }
        }
        match outcome {
            Ok(()) => att::finish(&mut record),
            Err(Stop::Store(e)) => return Err(e),
            Err(Stop::Refused(e)) => {
                log.error(
                    "attachments_forbidden",
                    &[
                        ("alert", json!(id)),
                        ("error", json!(e)),
                        (
                            "fix",
                            json!("grant the app registration the Microsoft Graph application permission Mail.Read (with admin consent), or set analyze_user_reported_attachments to false"),
                        ),
                    ],
                );
                att::note(
                    &mut record,
                    "attachments of the reported mail",
                    "Graph refused to read the mailbox (HTTP 403): the connector's app needs the Mail.Read permission",
                );
                att::finish(&mut record);
            }
            Err(Stop::Transient(e)) => {
                let gave_up = att::fetch_failed(&mut record, &e, now);
                log.warn(
                    "attachments_fetch_failed",
                    &[
                        ("alert", json!(id)),
                        ("error", json!(e)),
                        ("given_up", json!(gave_up)),
                    ],
                );
            }
        }
        kv.put(&key, &record)?;
        log.info(
            "alert_attachments",
            &[
                ("alert", json!(id)),
                ("files", json!(record.files.len())),
                ("notes", json!(record.attachment_notes.len())),
                ("pending", json!(att::pending(&record))),
            ],
        );
    }
    Ok(done)
}

fn stop(what: &str, r: Result<Resp, CallError>, log: &Log) -> Result<Resp, Stop> {
    match r {
        Ok(resp) if resp.ok() => Ok(resp),
        Ok(resp) if resp.status == 401 || resp.status == 403 => Err(Stop::Refused(format!(
            "{what}: HTTP {}: {}",
            resp.status,
            log.scrub(&resp.snippet())
        ))),
        Ok(resp) => Err(Stop::Transient(format!(
            "{what}: HTTP {}: {}",
            resp.status,
            log.scrub(&resp.snippet())
        ))),
        Err(e) => Err(Stop::Transient(format!("{what}: {e}"))),
    }
}

fn gone(record: &mut AlertRecord, m: &MessageRef) {
    att::note(
        record,
        &format!("mail {}", m.internet_message_id),
        &format!(
            "no longer in the mailbox of {} (removed or quarantined): its attachments cannot be analysed",
            m.mailbox
        ),
    );
}

/// One mail: find it, list its attachments, store the files.
async fn fetch_message(
    s: &PollerSettings,
    log: &Log,
    kv: &Kv,
    api: &Api<'_>,
    entra: &Entra,
    record: &mut AlertRecord,
    m: &MessageRef,
) -> Result<(), Stop> {
    let base = &s.graph_base_url;
    let call = |url: String| async move { entra.call(api, GRAPH_SCOPE, &Req::get(url)).await };
    let r = call(att::message_lookup_url(base, m)).await;
    if matches!(&r, Ok(resp) if resp.status == 404) {
        gone(record, m);
        return Ok(());
    }
    let resp = stop("finding the reported mail", r, log)?;
    let ids = att::parse_message_ids(&resp.body)
        .map_err(|e| Stop::Transient(format!("finding the reported mail: {e}")))?;
    let Some(message_id) = ids.first() else {
        gone(record, m);
        return Ok(());
    };
    let r = call(att::attachments_url(base, &m.mailbox, message_id)).await;
    if matches!(&r, Ok(resp) if resp.status == 404) {
        gone(record, m);
        return Ok(());
    }
    let resp = stop("listing attachments", r, log)?;
    let listed = att::parse_attachments(&resp.body)
        .map_err(|e| Stop::Transient(format!("listing attachments: {e}")))?;
    for item in listed {
        match item {
            Listed::Skip(n) => att::note(record, &n.name, &n.reason),
            Listed::File {
                id,
                name,
                content_type,
                content,
                ..
            } => {
                let bytes = match content {
                    Some(b) => b,
                    None => {
                        let url = att::attachment_value_url(base, &m.mailbox, message_id, &id);
                        let r = call(url).await;
                        if matches!(&r, Ok(resp) if resp.status == 404) {
                            gone(record, m);
                            return Ok(());
                        }
                        stop("reading an attachment", r, log)?.body
                    }
                };
                if let Err(why) = att::check_content(&bytes) {
                    att::note(record, &name, &why);
                    continue;
                }
                let sha256 = att::sha256_hex(&bytes);
                if record.files.iter().any(|f| f.sha256 == sha256) {
                    continue;
                }
                if record.files.len() >= att::MAX_FILES_PER_ALERT {
                    att::add_file(
                        record,
                        FileRef {
                            sha256,
                            filename: name,
                            size: bytes.len() as u64,
                        },
                    );
                    continue;
                }
                store(kv, &s.common.tenant_id, &bytes, &name, &content_type)
                    .map_err(Stop::Store)?;
                log.info(
                    "attachment_stored",
                    &[
                        ("alert", json!(record.alert_id)),
                        ("sha256", json!(sha256)),
                        ("size", json!(bytes.len())),
                    ],
                );
                att::add_file(
                    record,
                    FileRef {
                        sha256,
                        filename: name,
                        size: bytes.len() as u64,
                    },
                );
            }
        }
    }
    Ok(())
}

/// Store a file unless it is there already: chunks first, the meta record last.
fn store(kv: &Kv, tenant: &str, bytes: &[u8], name: &str, ct: &str) -> Result<(), String> {
    let (blob, chunks) = att::to_blob(bytes, name, ct, Utc::now());
    if kv
        .get::<FileBlob>(&keys::file_blob(tenant, &blob.sha256))?
        .is_some()
    {
        return Ok(());
    }
    for (n, c) in chunks.iter().enumerate() {
        kv.put_bytes(&keys::file_chunk(tenant, &blob.sha256, n as u32), c)?;
    }
    kv.put(&keys::file_blob(tenant, &blob.sha256), &blob)
}

/// Delete the stored files of alerts just closed that no open alert names.
pub fn release(
    kv: &Kv,
    log: &Log,
    tenant: &str,
    closed: &[String],
    open_ids: &[String],
) -> Result<usize, String> {
    let files_of = |id: &str| -> Vec<String> {
        kv.get::<AlertRecord>(&keys::alert(tenant, id))
            .ok()
            .flatten()
            .map(|r| r.files.into_iter().map(|f| f.sha256).collect())
            .unwrap_or_default()
    };
    let candidates: Vec<String> = closed.iter().flat_map(|id| files_of(id)).collect();
    if candidates.is_empty() {
        return Ok(0);
    }
    let still_needed: Vec<String> = open_ids.iter().flat_map(|id| files_of(id)).collect();
    let mut deleted = 0;
    for sha in candidates {
        if still_needed.contains(&sha) || !att::is_sha256(&sha) {
            continue;
        }
        let meta_key = keys::file_blob(tenant, &sha);
        let Some(blob) = kv.get::<FileBlob>(&meta_key)? else {
            continue;
        };
        // The meta record first: without it nobody reads the chunks.
        kv.delete(&meta_key)?;
        for n in 0..blob.chunks {
            kv.delete(&keys::file_chunk(tenant, &sha, n))?;
        }
        deleted += 1;
        log.info("attachment_deleted", &[("sha256", json!(sha))]);
    }
    Ok(deleted)
}
