//! Phase one: alert comments, each posted once.
//!
//! Before a POST its marker is recorded as an intent. An intent found on a
//! later tick means the POST's fate is unknown, so the alert's comments are
//! read first (also batched) and the comment is posted only if its marker is
//! not there.

use mdo_vmray::alert::parse_alert;
use mdo_vmray::comment::already_posted;
use mdo_vmray::graph_batch::BatchRequest;
use mdo_vmray::records::CommentProgress;
use serde_json::{json, Value};

use crate::tick::{Ctx, Work};

/// Ids go into URL paths percent-encoded (they are validated, but never trusted).
pub fn path_segment(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

/// Does a comment POST's answer (the alert's comments, `value`) hold ours?
fn comment_in_answer(body: &Value, marker: &str) -> bool {
    body.get("value")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("comment")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.lines().next() == Some(marker))
            })
        })
}

impl Ctx<'_> {
    pub async fn post_comments(&mut self, work: &mut [Work]) -> Result<(), String> {
        self.check_intents(work).await?;
        // What is to be posted: (work index, marker, text), within the tick's budget.
        let mut posts: Vec<(usize, String, String)> = Vec::new();
        for (i, w) in work.iter().enumerate() {
            for text in &w.comments {
                let marker = text.lines().next().unwrap_or_default().to_string();
                let unposted_intent =
                    w.wb.comments
                        .iter()
                        .any(|c| c.marker == marker && !c.posted);
                let posted = w.wb.comments.iter().any(|c| c.marker == marker && c.posted);
                if posted || unposted_intent || posts.len() >= self.graph_room() {
                    continue;
                }
                posts.push((i, marker, text.clone()));
            }
        }
        if posts.is_empty() {
            return Ok(());
        }
        if self.s.common.dry_run {
            for (i, marker, text) in &posts {
                self.log.info(
                    "dry_run_would_comment",
                    &[("alert", json!(work[*i].id)), ("comment", json!(text))],
                );
                mark(&mut work[*i], marker, true);
                work[*i].save(&self.kv)?;
            }
            return Ok(());
        }
        // Intents first, one write per alert.
        let mut touched: Vec<usize> = posts.iter().map(|(i, ..)| *i).collect();
        touched.dedup();
        for (i, marker, _) in &posts {
            mark(&mut work[*i], marker, false);
        }
        for i in &touched {
            work[*i].save(&self.kv)?;
        }
        let requests: Vec<BatchRequest> = posts
            .iter()
            .enumerate()
            .map(|(n, (i, _, text))| BatchRequest {
                id: n.to_string(),
                method: "POST",
                url: format!("/security/alerts_v2/{}/comments", path_segment(&work[*i].id)),
                body: Some(json!({"@odata.type": "microsoft.graph.security.alertComment", "comment": text})),
            })
            .collect();
        let answers = self.graph_batch(&requests, false).await;
        for ((i, marker, _), answer) in posts.iter().zip(&answers) {
            let w = &mut work[*i];
            if answer.ok() && comment_in_answer(&answer.body, marker) {
                mark(w, marker, true);
                self.counts.comments += 1;
                self.log.info(
                    "comment_written",
                    &[("alert", json!(w.id)), ("marker", json!(marker))],
                );
            } else if answer.status == 429 || (400..500).contains(&answer.status) {
                // Refused, so not stored: drop the intent and try again next tick.
                w.wb.comments.retain(|c| c.marker != *marker);
                self.log.warn(
                    "comment_refused",
                    &[
                        ("alert", json!(w.id)),
                        ("status", json!(answer.status)),
                        ("error", json!(self.log.scrub(&answer.error_text()))),
                    ],
                );
            } else {
                // 5xx, no answer, or a 2xx without our comment: fate unknown; the
                // intent stays and the next tick looks for the marker.
                self.log.warn(
                    "comment_unconfirmed",
                    &[("alert", json!(w.id)), ("status", json!(answer.status))],
                );
            }
        }
        for i in &touched {
            work[*i].save(&self.kv)?;
        }
        Ok(())
    }

    /// Resolve intents left by an earlier tick by reading the alerts' comments.
    async fn check_intents(&mut self, work: &mut [Work]) -> Result<(), String> {
        let pending: Vec<usize> = (0..work.len())
            .filter(|i| work[*i].wb.comments.iter().any(|c| !c.posted))
            .take(self.graph_room())
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let requests: Vec<BatchRequest> = pending
            .iter()
            .map(|i| BatchRequest {
                id: i.to_string(),
                method: "GET",
                url: format!("/security/alerts_v2/{}", path_segment(&work[*i].id)),
                body: None,
            })
            .collect();
        let answers = self.graph_batch(&requests, true).await;
        for (i, answer) in pending.iter().zip(&answers) {
            if !answer.ok() {
                continue; // unknown still: keep the intents, look again next tick
            }
            let existing = match parse_alert(&answer.body) {
                Ok(a) => a.comments,
                Err(e) => {
                    self.log.warn(
                        "alert_unreadable",
                        &[
                            ("alert", json!(work[*i].id)),
                            ("error", json!(e.to_string())),
                        ],
                    );
                    continue;
                }
            };
            let w = &mut work[*i];
            let markers: Vec<String> =
                w.wb.comments
                    .iter()
                    .filter(|c| !c.posted)
                    .map(|c| c.marker.clone())
                    .collect();
            for m in markers {
                if already_posted(&existing, &m) {
                    self.log.info(
                        "comment_found_after_restart",
                        &[("alert", json!(w.id)), ("marker", json!(m))],
                    );
                    mark(w, &m, true);
                } else {
                    // Never arrived: forget the intent so it is posted now.
                    w.wb.comments.retain(|c| c.marker != m);
                }
            }
            w.save(&self.kv)?;
        }
        Ok(())
    }
}

fn mark(w: &mut Work, marker: &str, posted: bool) {
    match w.wb.comments.iter_mut().find(|c| c.marker == marker) {
        Some(c) => c.posted = posted,
        None => w.wb.comments.push(CommentProgress {
            marker: marker.to_string(),
            posted,
        }),
    }
}
