//! Phase one: alert comments, each posted once.
//!
//! The alert itself is the record of what was posted: every comment starts
//! with a marker line, and before posting, the alerts' comments are read
//! (batched) and only comments whose marker is missing are sent. So neither a
//! tick that dies after a POST nor a store that loses its latest writes (a
//! Redis without persistence restarting) can make a comment appear twice.
//! `wb:` remembers what is confirmed, so finished alerts are not read again.

use mdo_vmray::comment::already_posted;
use mdo_vmray::graph_batch::BatchRequest;
use mdo_vmray::records::CommentProgress;
use serde_json::{json, Value};

use crate::tick::{Ctx, Work};

/// Ids go into URL paths percent-encoded (they are validated, but never trusted).
pub fn path_segment(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

/// Ticks an alert's comments may be unreadable before ours are posted regardless.
const MAX_UNREADABLE: u32 = 3;

/// The texts of an alert's `comments`, if the alert has that list.
fn comment_texts(alert: &Value) -> Option<Vec<String>> {
    if !alert.is_object() {
        return None;
    }
    let Some(list) = alert.get("comments") else {
        return Some(Vec::new());
    };
    let list = list.as_array()?;
    Some(
        list.iter()
            .filter_map(|c| c.get("comment").and_then(Value::as_str))
            .map(str::to_string)
            .collect(),
    )
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
        // Alerts with comments not yet confirmed, read first (half the budget).
        let due: Vec<usize> = (0..work.len())
            .filter(|i| !work[*i].comments_done())
            .take(self.graph_room() / 2)
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let reads: Vec<BatchRequest> = due
            .iter()
            .map(|i| BatchRequest {
                id: i.to_string(),
                method: "GET",
                url: format!("/security/alerts_v2/{}", path_segment(&work[*i].id)),
                body: None,
            })
            .collect();
        let answers = self.graph_batch(&reads, true).await;
        let mut posts: Vec<(usize, String, String)> = Vec::new();
        for (i, answer) in due.iter().zip(&answers) {
            if !answer.ok() {
                continue; // cannot tell what is there: try again next tick
            }
            // Only the comments matter here; the rest of the alert may be odd.
            let existing = match comment_texts(&answer.body) {
                Some(c) => c,
                None if work[*i].wb.unreadable_reads < MAX_UNREADABLE => {
                    let w = &mut work[*i];
                    w.wb.unreadable_reads += 1;
                    w.save(&self.kv)?;
                    self.log.warn(
                        "alert_unreadable",
                        &[
                            ("alert", json!(w.id)),
                            (
                                "error",
                                json!(
                                    "the alert is not an object, or its `comments` is not a list"
                                ),
                            ),
                        ],
                    );
                    continue;
                }
                // Unreadable tick after tick: a hostile alert, not a passing fault.
                None => Vec::new(),
            };
            let w = &mut work[*i];
            let mut changed = false;
            for text in w.comments.clone() {
                let marker = text.lines().next().unwrap_or_default().to_string();
                if w.wb.comments.iter().any(|c| c.marker == marker && c.posted) {
                    continue;
                }
                if already_posted(&existing, &marker) {
                    mark(w, &marker, true);
                    changed = true;
                } else if posts.len() < self.graph_room() {
                    posts.push((*i, marker, text));
                }
            }
            if changed {
                w.save(&self.kv)?;
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
        let mut touched: Vec<usize> = Vec::new();
        for ((i, marker, _), answer) in posts.iter().zip(&answers) {
            let w = &mut work[*i];
            if answer.ok() && comment_in_answer(&answer.body, marker) {
                mark(w, marker, true);
                touched.push(*i);
                self.counts.comments += 1;
                self.log.info(
                    "comment_written",
                    &[("alert", json!(w.id)), ("marker", json!(marker))],
                );
            } else {
                // Refused, or fate unknown: the next tick reads the alert and
                // posts it only if it is not there.
                self.log.warn(
                    "comment_unconfirmed",
                    &[
                        ("alert", json!(w.id)),
                        ("status", json!(answer.status)),
                        ("error", json!(self.log.scrub(&answer.error_text()))),
                    ],
                );
            }
        }
        touched.dedup();
        for i in touched {
            work[i].save(&self.kv)?;
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
