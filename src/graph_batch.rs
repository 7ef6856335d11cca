//! Graph JSON batching (`POST /v1.0/$batch`): up to 20 requests in one call,
//! each answered on its own (one can be throttled while the rest succeed).

use std::time::Duration;

use serde_json::{json, Value};

/// Graph's limit of requests per batch.
pub const MAX_BATCH: usize = 20;

/// One request inside a batch; `url` is relative to `/v1.0` (`/security/…`).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRequest {
    pub id: String,
    pub method: &'static str,
    pub url: String,
    pub body: Option<Value>,
}

/// One answer inside a batch response.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchResponse {
    pub id: String,
    pub status: u16,
    pub body: Value,
    pub retry_after: Option<Duration>,
}

impl BatchResponse {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Throttled or a server error: the request may be tried on a later tick.
    pub fn transient(&self) -> bool {
        self.status == 429 || self.status >= 500
    }

    /// Graph's error message, for logs and comments.
    pub fn error_text(&self) -> String {
        let msg = self
            .body
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("");
        let code = self
            .body
            .pointer("/error/code")
            .and_then(Value::as_str)
            .unwrap_or("");
        crate::vmray::clean_text(&format!("HTTP {} {code} {msg}", self.status))
    }
}

/// The body of one `$batch` call (at most [`MAX_BATCH`] requests).
pub fn body(requests: &[BatchRequest]) -> Value {
    let items: Vec<Value> = requests
        .iter()
        .map(|r| {
            let mut item = json!({"id": r.id, "method": r.method, "url": r.url});
            if let Some(b) = &r.body {
                item["body"] = b.clone();
                item["headers"] = json!({"Content-Type": "application/json"});
            }
            item
        })
        .collect();
    json!({ "requests": items })
}

/// Parse a `$batch` response. Answers are matched by id; a request without
/// an answer is reported with status 0 (unknown fate).
pub fn parse(body: &[u8], asked: &[BatchRequest]) -> Result<Vec<BatchResponse>, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("$batch response is not JSON: {e}"))?;
    let items = v
        .get("responses")
        .and_then(Value::as_array)
        .ok_or("$batch response: field `responses` is missing")?;
    Ok(asked
        .iter()
        .map(|req| {
            let item = items
                .iter()
                .find(|i| i.get("id").and_then(Value::as_str) == Some(req.id.as_str()));
            match item {
                Some(i) => BatchResponse {
                    id: req.id.clone(),
                    status: i
                        .get("status")
                        .and_then(Value::as_u64)
                        .map(|s| s.min(999) as u16)
                        .unwrap_or(0),
                    body: i.get("body").cloned().unwrap_or(Value::Null),
                    retry_after: i
                        .get("headers")
                        .and_then(|h| h.as_object())
                        .and_then(|h| {
                            h.iter()
                                .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
                        })
                        .and_then(|(_, v)| {
                            v.as_str()
                                .map(str::to_string)
                                .or_else(|| v.as_f64().map(|f| f.to_string()))
                        })
                        .and_then(|s| crate::retry::parse_retry_after(&s)),
                },
                None => BatchResponse {
                    id: req.id.clone(),
                    status: 0,
                    body: Value::Null,
                    retry_after: None,
                },
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: &str) -> BatchRequest {
        BatchRequest {
            id: id.into(),
            method: "POST",
            url: format!("/security/alerts_v2/{id}/comments"),
            body: Some(json!({"comment": "x"})),
        }
    }

    #[test]
    fn builds_and_matches_answers_by_id() {
        let asked = vec![req("1"), req("2"), req("3")];
        let b = body(&asked);
        assert_eq!(b["requests"].as_array().unwrap().len(), 3);
        assert_eq!(
            b["requests"][0]["headers"]["Content-Type"],
            "application/json"
        );
        let answer = json!({"responses": [
            {"id": "2", "status": 429, "headers": {"Retry-After": "2.5"}, "body": {"error": {"code": "TooManyRequests", "message": "slow down"}}},
            {"id": "1", "status": 200, "body": {"value": []}}
        ]});
        let got = parse(answer.to_string().as_bytes(), &asked).unwrap();
        assert!(got[0].ok());
        assert!(got[1].transient());
        assert_eq!(got[1].retry_after, Some(Duration::from_millis(2500)));
        assert!(got[1].error_text().contains("TooManyRequests"));
        assert_eq!(got[2].status, 0, "no answer: unknown fate");
        assert!(parse(b"{}", &asked).is_err());
    }
}
