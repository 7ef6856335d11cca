//! Outbound HTTP with the core's retry decisions: `Retry-After` obeyed,
//! exponential backoff with jitter, non-idempotent calls never repeated
//! blindly, and a tick deadline no retry may cross.

use std::time::{Duration, Instant};

use mdo_vmray::config::RetryLimits;
use mdo_vmray::retry::{decide, parse_retry_after, Decision, Outcome};
use serde_json::json;
use spin_sdk::http::Method;

use crate::log::Log;

/// Wall time a tick may spend (Fermyon Wasm Functions stop a request at 30 s).
pub const TICK_BUDGET: Duration = Duration::from_secs(22);

/// Identifies the client to the APIs.
pub const USER_AGENT: &str = concat!("mdo-vmray-connector/", env!("CARGO_PKG_VERSION"));

/// One outbound request.
#[derive(Clone)]
pub struct Req {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Safe to repeat after an unknown outcome (GETs, PATCH with full state, upserts).
    pub idempotent: bool,
    /// What the request is about, for log lines (e.g. the requests inside a `$batch`).
    pub label: Option<String>,
}

impl Req {
    pub fn get(url: impl Into<String>) -> Req {
        Req {
            method: Method::Get,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            idempotent: true,
            label: None,
        }
    }

    pub fn post_json(url: impl Into<String>, body: &serde_json::Value, idempotent: bool) -> Req {
        Req {
            method: Method::Post,
            url: url.into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
            idempotent,
            label: None,
        }
    }

    pub fn post_form(url: impl Into<String>, pairs: &[(&str, &str)], idempotent: bool) -> Req {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        Req {
            method: Method::Post,
            url: url.into(),
            headers: vec![(
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            )],
            body: body.into_bytes(),
            idempotent,
            label: None,
        }
    }

    pub fn labelled(mut self, label: String) -> Req {
        self.label = Some(label);
        self
    }

    pub fn header(mut self, k: &str, v: &str) -> Req {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
}

/// A response with any status.
pub struct Resp {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The start of the body for error messages (never holds our secrets:
    /// the APIs do not echo credentials, and logs are scrubbed anyway).
    pub fn snippet(&self) -> String {
        String::from_utf8_lossy(&self.body[..self.body.len().min(300)]).replace(['\n', '\r'], " ")
    }
}

/// Why a call produced no usable response.
#[derive(Debug, Clone)]
pub enum CallError {
    /// No HTTP answer (refused, denied by the host, timed out).
    NoResponse(String),
    /// An HTTP error status after the retries allowed.
    Status { status: u16, body: String },
}

impl CallError {
    /// Throttling, server errors and no response: worth another tick.
    pub fn transient(&self) -> bool {
        match self {
            CallError::NoResponse(_) => true,
            CallError::Status { status, .. } => *status == 429 || *status >= 500,
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::NoResponse(e) => write!(f, "no response: {e}"),
            CallError::Status { status, body } => write!(f, "HTTP {status}: {body}"),
        }
    }
}

/// An API (a service with its retry limits) for one tick.
pub struct Api<'a> {
    pub service: &'static str,
    pub limits: RetryLimits,
    pub started: Instant,
    pub log: &'a Log,
    pub user_agent: &'static str,
    /// Requests sent so far this tick (retries included), for per-tick
    /// budgets that keep the connector inside the APIs' quotas.
    pub sent: std::cell::Cell<u32>,
}

impl<'a> Api<'a> {
    pub fn new(service: &'static str, limits: RetryLimits, log: &'a Log) -> Api<'a> {
        Api {
            service,
            limits,
            started: Instant::now(),
            log,
            user_agent: USER_AGENT,
            sent: std::cell::Cell::new(0),
        }
    }

    /// Has the tick used up its wall-time budget?
    pub fn out_of_time(&self) -> bool {
        self.started.elapsed() > TICK_BUDGET
    }

    fn tick_left(&self) -> Duration {
        TICK_BUDGET.saturating_sub(self.started.elapsed())
    }

    async fn send_once(&self, req: &Req) -> Result<Resp, String> {
        self.sent.set(self.sent.get() + 1);
        let mut headers = req.headers.clone();
        headers.push(("user-agent".into(), self.user_agent.into()));
        let ex = crate::wire::exchange(&req.method, &req.url, &headers, &req.body)?;
        let retry_after = ex
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .and_then(parse_retry_after);
        Ok(Resp {
            status: ex.status,
            retry_after,
            body: ex.body,
        })
    }

    /// Send with retries; any HTTP status that is not retried comes back as `Ok`.
    pub async fn call(&self, req: &Req) -> Result<Resp, CallError> {
        let first = Instant::now();
        let mut retries = 0;
        loop {
            let (outcome, result) = match self.send_once(req).await {
                Ok(resp) if resp.status == 429 || resp.status >= 500 => (
                    Outcome::Status {
                        code: resp.status,
                        retry_after: resp.retry_after,
                    },
                    Ok(resp),
                ),
                Ok(resp) => return Ok(resp),
                Err(e) => (Outcome::NoResponse, Err(e)),
            };
            let decision = decide(
                outcome,
                req.idempotent,
                retries,
                first.elapsed(),
                self.tick_left(),
                self.limits,
                crate::rand::unit(),
            );
            let what = match &result {
                Ok(r) => format!("HTTP {}", r.status),
                Err(e) => e.clone(),
            };
            match decision {
                Decision::Retry(wait) => {
                    retries += 1;
                    self.log.warn(
                        "retry",
                        &[
                            ("service", json!(self.service)),
                            (
                                "path",
                                json!(req.label.clone().unwrap_or_else(|| path_of(&req.url))),
                            ),
                            ("fault", json!(self.log.scrub(&what))),
                            ("wait_ms", json!(wait.as_millis() as u64)),
                            ("retry", json!(retries)),
                        ],
                    );
                    std::thread::sleep(wait);
                }
                Decision::GiveUp => {
                    self.log.warn(
                        "call_failed",
                        &[
                            ("service", json!(self.service)),
                            ("method", json!(req.method.to_string())),
                            (
                                "path",
                                json!(req.label.clone().unwrap_or_else(|| path_of(&req.url))),
                            ),
                            ("fault", json!(self.log.scrub(&what))),
                            ("retries", json!(retries)),
                        ],
                    );
                    return match result {
                        Ok(resp) => Err(CallError::Status {
                            status: resp.status,
                            body: self.log.scrub(&resp.snippet()),
                        }),
                        Err(e) => Err(CallError::NoResponse(self.log.scrub(&e))),
                    };
                }
            }
        }
    }
}

/// The path of a URL, for logs (queries may carry search terms).
pub fn path_of(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| u.path().to_string())
        .unwrap_or_default()
}
