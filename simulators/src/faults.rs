//! Fault rules: which requests fail how. The rules are checked in `server::dispatch`; this module
//! holds the rule types, the occurrence counting and the faulty responses.

use crate::http::{Req, Resp};
use crate::quotas::throttle_response;
use crate::state::Service;
use crate::{defender, entra, graph, vmray};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// One fault rule. JSON (`POST /_sim/faults`):
/// `{"service":"vmray","method":"POST","path_prefix":"/rest/sample/submit","skip":1,"times":2,
///   "apply_then_fail":false,"fault":{"kind":"status","code":429,"retry_after":"2.128"}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    pub service: Service,
    /// HTTP method (any case); `None` = every method.
    #[serde(default)]
    pub method: Option<String>,
    /// Matched against the request path without the query; `None` = every path.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Let the first `skip` matching requests through …
    #[serde(default)]
    pub skip: u32,
    /// … then fault the next `times` (after that the rule lets everything through).
    #[serde(default = "one")]
    pub times: u32,
    /// Execute the request (its side effects happen) and only then fail the answer. Allowed
    /// with `status`, `connection_refused`, `timeout`, `truncated_body`, `malformed_json`,
    /// `missing_fields` and `wrong_types`.
    #[serde(default)]
    pub apply_then_fail: bool,
    pub fault: Fault,
}

fn one() -> u32 {
    1
}

/// What a faulted request gets. JSON: `{"kind":"<snake_case name>", …fields}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// An error status with the service's error body, and `Retry-After: <retry_after>` verbatim
    /// when given (`"2"`, `"2.128"`).
    Status {
        code: u16,
        #[serde(default)]
        retry_after: Option<String>,
    },
    /// The connection is reset without any HTTP response.
    ConnectionRefused,
    /// No answer for `seconds` (real time), then the connection is dropped.
    Timeout {
        #[serde(default = "default_timeout")]
        seconds: f64,
    },
    /// The real response's status and full `Content-Length`, but only half the body; then close.
    TruncatedBody,
    /// 200 with a body that is not JSON.
    MalformedJson,
    /// The real response with required fields removed (see `missing_fields`).
    MissingFields,
    /// The real response with every field of the wrong JSON type (see `wrong_types`).
    WrongTypes,
    /// VMRay submit only: 200 `result: ok` with an `errors` item and nothing created.
    VmrayErrorsInOk,
    /// Defender import only: every second item (the only one of a single-item batch) fails
    /// with `isFailed: true` and is not stored; the others are stored.
    PartialImportFailure,
    /// Graph/Defender: every issued token expires now, the request gets 401 (expired token).
    ExpireTokens,
    /// Entra token endpoint: 401 `invalid_client` (AADSTS7000215).
    RevokedSecret,
}

fn default_timeout() -> f64 {
    30.0
}

impl Fault {
    /// The snake_case name (as in JSON and the call log's `fault` field).
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Status { .. } => "status",
            Fault::ConnectionRefused => "connection_refused",
            Fault::Timeout { .. } => "timeout",
            Fault::TruncatedBody => "truncated_body",
            Fault::MalformedJson => "malformed_json",
            Fault::MissingFields => "missing_fields",
            Fault::WrongTypes => "wrong_types",
            Fault::VmrayErrorsInOk => "vmray_errors_in_ok",
            Fault::PartialImportFailure => "partial_import_failure",
            Fault::ExpireTokens => "expire_tokens",
            Fault::RevokedSecret => "revoked_secret",
        }
    }

    /// Faults that garble the real response (which needs the request executed).
    pub(crate) fn shapes_response(&self) -> bool {
        matches!(
            self,
            Fault::TruncatedBody | Fault::MalformedJson | Fault::MissingFields | Fault::WrongTypes
        )
    }
}

impl FaultRule {
    /// A rule faulting the first matching request of `service` (every method and path).
    pub fn new(service: Service, fault: Fault) -> FaultRule {
        FaultRule {
            service,
            method: None,
            path_prefix: None,
            skip: 0,
            times: 1,
            apply_then_fail: false,
            fault,
        }
    }
    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_string());
        self
    }
    pub fn path(mut self, prefix: &str) -> Self {
        self.path_prefix = Some(prefix.to_string());
        self
    }
    pub fn skip(mut self, n: u32) -> Self {
        self.skip = n;
        self
    }
    pub fn times(mut self, n: u32) -> Self {
        self.times = n;
        self
    }
    pub fn apply_then_fail(mut self) -> Self {
        self.apply_then_fail = true;
        self
    }

    /// Why the rule makes no sense, if it does not.
    pub fn validate(&self) -> Result<(), String> {
        let s = self.service;
        let need = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(format!("fault {} {what}", self.fault.name()))
            }
        };
        match &self.fault {
            Fault::Status { code, retry_after } => {
                need((400..=599).contains(code), "needs a code 400..=599")?;
                if let Some(r) = retry_after {
                    need(
                        axum::http::HeaderValue::from_str(r).is_ok(),
                        "needs a retry_after that is a valid header value",
                    )?;
                }
            }
            Fault::Timeout { seconds } => need(
                seconds.is_finite() && (0.0..=3600.0).contains(seconds),
                "needs 0 <= seconds <= 3600",
            )?,
            Fault::VmrayErrorsInOk => need(s == Service::Vmray, "is for service vmray")?,
            Fault::PartialImportFailure => need(s == Service::Defender, "is for service defender")?,
            Fault::ExpireTokens => need(
                s == Service::Graph || s == Service::Defender,
                "is for service graph or defender",
            )?,
            Fault::RevokedSecret => need(s == Service::Entra, "is for service entra")?,
            _ => {}
        }
        let after_ok = matches!(
            self.fault,
            Fault::Status { .. } | Fault::ConnectionRefused | Fault::Timeout { .. }
        ) || self.fault.shapes_response();
        need(
            !self.apply_then_fail || after_ok,
            "cannot be apply_then_fail",
        )
    }

    fn matches(&self, service: Service, req: &Req) -> bool {
        if service != self.service
            || self
                .method
                .as_deref()
                .is_some_and(|m| !m.eq_ignore_ascii_case(&req.method))
            || self
                .path_prefix
                .as_deref()
                .is_some_and(|p| !req.path.starts_with(p))
        {
            return false;
        }
        // Faults defined for one endpoint only ever match that endpoint.
        let path = req.path.trim_end_matches('/');
        match self.fault {
            Fault::VmrayErrorsInOk => req.method == "POST" && path == "/rest/sample/submit",
            Fault::PartialImportFailure => req.method == "POST" && path == "/api/indicators/import",
            _ => true,
        }
    }
}

/// A rule and how many requests it has matched so far.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActiveRule {
    pub rule: FaultRule,
    pub matched: u64,
    pub fired: u64,
}

/// The injected rules, in insertion order.
#[derive(Debug, Default)]
pub(crate) struct FaultSet {
    pub rules: Vec<ActiveRule>,
}

impl FaultSet {
    /// Counts the request against every matching rule; returns the first rule (in insertion
    /// order) for which this occurrence is inside its `skip`/`times` window.
    /// Does a rule name this very path (e.g. `/v1.0/$batch`) explicitly? Rules
    /// without a path, or for other paths, apply to a batch's inner requests.
    pub fn targets_explicitly(&self, service: Service, req: &Req) -> bool {
        self.rules.iter().any(|a| {
            a.rule
                .path_prefix
                .as_deref()
                .is_some_and(|p| p.len() > "/v1.0/".len() && req.path.starts_with(p))
                && a.rule.matches(service, req)
        })
    }

    pub fn take(&mut self, service: Service, req: &Req) -> Option<FaultRule> {
        let mut fired = None;
        for active in &mut self.rules {
            if !active.rule.matches(service, req) {
                continue;
            }
            active.matched += 1;
            let (skip, times) = (active.rule.skip as u64, active.rule.times as u64);
            if fired.is_none() && active.matched > skip && active.matched <= skip + times {
                active.fired += 1;
                fired = Some(active.rule.clone());
            }
        }
        fired
    }
}

/// The service's error answer for a `status` fault.
pub(crate) fn status_response(service: Service, code: u16, retry_after: Option<&str>) -> Resp {
    if code == 429 {
        return throttle_response(service, retry_after.unwrap_or("2"), None);
    }
    let mut resp = match service {
        Service::Graph => {
            let (c, m) = match code {
                401 => (
                    "InvalidAuthenticationToken",
                    "Access token validation failure.",
                ),
                403 => (
                    "Forbidden",
                    "Insufficient privileges to complete the operation.",
                ),
                404 => ("NotFound", "The requested resource was not found."),
                500 => ("InternalServerError", "An internal server error occurred."),
                502 => ("BadGateway", "The gateway received an invalid response."),
                503 => (
                    "ServiceNotAvailable",
                    "The service is temporarily unavailable. Retry later.",
                ),
                504 => ("GatewayTimeout", "The gateway timed out."),
                c if c < 500 => ("BadRequest", "The request is invalid."),
                _ => ("UnknownError", "An unknown error occurred."),
            };
            graph::graph_error(code, c, m)
        }
        Service::Defender => {
            let (c, m) = match code {
                401 => ("Unauthorized", "Authorization failed."),
                403 => (
                    "Forbidden",
                    "The application does not have the required permission.",
                ),
                404 => ("NotFound", "Resource was not found."),
                503 => (
                    "ServiceUnavailable",
                    "The service is temporarily unavailable.",
                ),
                c if c < 500 => ("BadRequest", "The request is invalid."),
                _ => ("InternalServerError", "An error has occurred."),
            };
            defender::defender_error(code, c, m)
        }
        Service::Vmray => vmray::vmray_error(
            code,
            match code {
                401 => "Authentication failed",
                404 => "No such element",
                500 => "Internal server error",
                502 => "Bad gateway",
                503 => "Service temporarily unavailable",
                504 => "Gateway timeout",
                c if c < 500 => "Bad request",
                _ => "Server error",
            },
        ),
        Service::Entra => match code {
            401 => revoked_secret(),
            c if c < 500 => entra::aad_error(
                code,
                "invalid_request",
                90_000,
                "The request could not be processed.",
            ),
            _ => entra::aad_error(
                code,
                "temporarily_unavailable",
                90_033,
                "A transient error has occurred. Please try again.",
            ),
        },
    };
    if let Some(r) = retry_after {
        resp.headers.push(("retry-after".into(), r.to_string()));
    }
    resp
}

pub(crate) fn revoked_secret() -> Resp {
    entra::aad_error(
        401,
        "invalid_client",
        7_000_215,
        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
    )
}

/// The 401 of an expired token on Graph / Defender.
pub(crate) fn expired_token(service: Service) -> Resp {
    let msg = "Lifetime validation failed, the token is expired.";
    match service {
        Service::Defender => defender::defender_error(401, "Unauthorized", msg),
        _ => graph::graph_error(401, "InvalidAuthenticationToken", msg),
    }
}

pub(crate) fn vmray_errors_in_ok(req: &Req) -> Resp {
    let what = req
        .form
        .as_ref()
        .and_then(|f| {
            f.get("sample_url")
                .map(str::to_string)
                .or_else(|| f.files.first().map(|(_, name, _)| name.clone()))
        })
        .unwrap_or_default();
    Resp::json(
        200,
        &json!({"result": "ok", "data": {
            "errors": [{"error_msg": "Submission not stored because no jobs were created", "submission_filename": what}],
            "jobs": [], "reputation_jobs": [], "samples": [], "static_jobs": [], "submissions": [], "vt_jobs": []
        }, "continuation_id": null, "truncated": false}),
    )
}

/// The body a `malformed_json` fault answers with.
pub(crate) const MALFORMED: &str = "{\"value\": [{\"id\": \"sim-malformed\",, \"data\": <html>";

/// Removes the required fields of this endpoint's answer; returns whether anything was removed.
///
/// | endpoint | removed |
/// |---|---|
/// | Entra token | `access_token` |
/// | Graph alerts_v2 list, comments, Defender list / import | `value` |
/// | Graph alert by id | `id`, `evidence` |
/// | Graph incident GET / PATCH | `id`, `customTags` |
/// | Graph runHuntingQuery | `results` |
/// | Defender POST / GET indicator | `id` |
/// | VMRay submit | `data.submissions`, `data.samples` |
/// | other VMRay | `data` |
pub(crate) fn missing_fields(service: Service, req: &Req, body: &mut Value) -> bool {
    let seg = req.segments();
    let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
    let m = req.method.as_str();
    let (object, fields): (Option<&mut Map<String, Value>>, &[&str]) = match service {
        Service::Entra => (body.as_object_mut(), &["access_token"]),
        Service::Graph => {
            let fields: &[&str] = match (m, seg.as_slice()) {
                ("GET", [_, "security", "alerts_v2", _]) => &["id", "evidence"],
                (_, [_, "security", "incidents", _]) => &["id", "customTags"],
                (_, [_, "security", "runHuntingQuery"]) => &["results"],
                _ => &["value"],
            };
            (body.as_object_mut(), fields)
        }
        Service::Defender => {
            let fields: &[&str] = match (m, seg.as_slice()) {
                (_, ["api", "indicators", "import"]) => &["value"],
                ("POST", ["api", "indicators"]) | ("GET", ["api", "indicators", _]) => &["id"],
                _ => &["value"],
            };
            (body.as_object_mut(), fields)
        }
        Service::Vmray => {
            if m == "POST" && seg.as_slice() == ["rest", "sample", "submit"] {
                (
                    body.get_mut("data").and_then(Value::as_object_mut),
                    &["submissions", "samples"],
                )
            } else {
                (body.as_object_mut(), &["data"])
            }
        }
    };
    let Some(object) = object else {
        return false;
    };
    let mut removed = false;
    for f in fields {
        removed |= object.remove(*f).is_some();
    }
    removed
}

/// Fields kept as they are so the client gets past its envelope checks.
const KEEP: &[&str] = &["@odata.context", "@odata.type", "result", "token_type"];

/// Every value of the wrong JSON type, recursively: strings → numbers (their length), numbers
/// and booleans → strings, arrays → objects keyed `"0"`, `"1"`, …; nulls and the envelope
/// markers `@odata.context`, `@odata.type`, `result`, `token_type` stay.
pub(crate) fn wrong_types(body: &mut Value) -> bool {
    let Value::Object(o) = body else {
        return false;
    };
    let mut changed = false;
    for (k, v) in o.iter_mut() {
        if !KEEP.contains(&k.as_str()) {
            *v = retype(std::mem::take(v));
            changed = true;
        }
    }
    changed
}

fn retype(v: Value) -> Value {
    match v {
        Value::String(s) => json!(s.chars().count()),
        Value::Number(n) => Value::String(n.to_string()),
        Value::Bool(b) => Value::String(b.to_string()),
        Value::Array(a) => Value::Object(
            a.into_iter()
                .enumerate()
                .map(|(i, x)| (i.to_string(), retype(x)))
                .collect(),
        ),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, x)| (k, retype(x))).collect()),
        Value::Null => Value::Null,
    }
}

/// A raw HTTP/1.1 response: the real status and headers, `Content-Length` of the whole body,
/// but only the first half of it.
pub(crate) fn truncated(resp: &Resp) -> Vec<u8> {
    let reason = axum::http::StatusCode::from_u16(resp.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("OK");
    let mut out = format!("HTTP/1.1 {} {reason}\r\n", resp.status);
    for (k, v) in &resp.headers {
        if !k.eq_ignore_ascii_case("content-length") && !k.eq_ignore_ascii_case("connection") {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    out.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        resp.body.len()
    ));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&resp.body[..resp.body.len() / 2]);
    bytes
}

/// Indices of the import items a `partial_import_failure` fails.
pub(crate) fn failing_items(count: usize) -> impl Fn(usize) -> bool {
    move |i| count == 1 || i % 2 == 1
}

pub(crate) const IMPORT_FAILURE: &str =
    "InternalServerError: The indicator could not be saved. Try again later.";
