//! Graph calls of the write-back, sent in `$batch` calls of up to 20.

use mdo_vmray::graph_batch::{self, BatchRequest, BatchResponse, MAX_BATCH};
use serde_json::json;

use connector_io::api::Req;
use connector_io::entra::GRAPH_SCOPE;

use crate::tick::Ctx;

impl Ctx<'_> {
    /// Send requests in batches; each gets its own answer (status 0: the
    /// batch call itself failed, so the request's fate is unknown).
    /// `idempotent` batches (GETs, PATCHes of full state) may be retried whole.
    pub async fn graph_batch(
        &mut self,
        requests: &[BatchRequest],
        idempotent: bool,
    ) -> Vec<BatchResponse> {
        let mut out = Vec::with_capacity(requests.len());
        for chunk in requests.chunks(MAX_BATCH) {
            self.graph_ops += chunk.len() as u32;
            let url = format!("{}/v1.0/$batch", self.s.graph_base_url);
            let req = Req::post_json(url, &graph_batch::body(chunk), idempotent)
                .labelled(format!("$batch ({})", describe(chunk)));
            let unknown = |why: String| -> Vec<BatchResponse> {
                chunk
                    .iter()
                    .map(|r| BatchResponse {
                        id: r.id.clone(),
                        status: 0,
                        body: json!({"error": {"message": why}}),
                        retry_after: None,
                    })
                    .collect()
            };
            let answers = match self.entra.call(&self.api, GRAPH_SCOPE, &req).await {
                Ok(resp) if resp.ok() => {
                    graph_batch::parse(&resp.body, chunk).unwrap_or_else(|e| {
                        let why = format!("$batch ({}): {e}", describe(chunk));
                        self.log.warn("batch_unreadable", &[("error", json!(why))]);
                        unknown(why)
                    })
                }
                Ok(resp) => {
                    let why = format!(
                        "$batch ({}): HTTP {}: {}",
                        describe(chunk),
                        resp.status,
                        self.log.scrub(&resp.snippet())
                    );
                    self.log.warn("batch_failed", &[("error", json!(why))]);
                    // A refused batch (4xx) ran none of its requests.
                    if (400..500).contains(&resp.status) {
                        chunk
                            .iter()
                            .map(|r| BatchResponse {
                                id: r.id.clone(),
                                status: resp.status,
                                body: json!({"error": {"message": why}}),
                                retry_after: None,
                            })
                            .collect()
                    } else {
                        unknown(why)
                    }
                }
                Err(e) => {
                    let why = format!("$batch ({}): {e}", describe(chunk));
                    self.log.warn("batch_failed", &[("error", json!(why))]);
                    unknown(why)
                }
            };
            for (a, r) in answers.iter().zip(chunk) {
                if !a.ok() {
                    self.log.warn(
                        "graph_request_failed",
                        &[
                            ("request", json!(format!("{} {}", r.method, r.url))),
                            ("status", json!(a.status)),
                            ("error", json!(self.log.scrub(&a.error_text()))),
                        ],
                    );
                }
            }
            out.extend(answers);
        }
        out
    }

    /// Graph operations still allowed this tick.
    pub fn graph_room(&self) -> usize {
        crate::tick::MAX_GRAPH_OPS_PER_TICK.saturating_sub(self.graph_ops) as usize
    }
}

/// What a batch held, for log lines: `GET /security/incidents/801, …`.
fn describe(chunk: &[BatchRequest]) -> String {
    let mut parts: Vec<String> = chunk
        .iter()
        .take(3)
        .map(|r| format!("{} {}", r.method, r.url))
        .collect();
    if chunk.len() > 3 {
        parts.push(format!("{} more", chunk.len() - 3));
    }
    parts.join(", ")
}
