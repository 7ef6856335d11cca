//! HTTP plumbing: one axum fallback handler per port, and `dispatch`, the single place every
//! request goes through (`/_sim/*` control, fault rules, rate quotas, call log).

use crate::conn::Conn;
use crate::faults::{self, Fault, FaultRule};
use crate::http::{Form, Req, Resp};
use crate::quotas::Quotas;
use crate::scenario::{AlertSpec, MailSpec, SampleSpec};
use crate::state::{iso, CallRecord, Service, Shared};
use crate::{defender, entra, graph, vmray};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::Arc;

const MAX_BODY: usize = 64 * 1024 * 1024;

pub(crate) fn router(shared: Arc<Shared>, service: Service) -> axum::Router {
    axum::Router::new()
        .fallback(handle)
        .with_state((shared, service))
}

async fn handle(
    State((shared, service)): State<(Arc<Shared>, Service)>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return to_axum(Resp::json(413, &json!({"error": "body too large"}))),
    };
    let query = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let mut req = Req {
        method: parts.method.as_str().to_ascii_uppercase(),
        path: parts.uri.path().to_string(),
        query,
        headers: parts.headers,
        body,
        form: None,
        in_batch: false,
    };
    req.form = parse_form(&req).await;
    let Outcome { resp, delivery } = dispatch(&shared, service, &req);
    match delivery {
        Delivery::Normal => {}
        Delivery::Drop => conn.abort(),
        Delivery::Hang(seconds) => {
            tokio::time::sleep(std::time::Duration::from_secs_f64(seconds)).await;
            conn.abort();
        }
        Delivery::Truncate => conn.send_raw(faults::truncated(&resp)),
    }
    to_axum(resp)
}

/// How the response reaches the client.
pub(crate) enum Delivery {
    Normal,
    /// Reset the connection, no response.
    Drop,
    /// Say nothing for this many seconds, then drop the connection.
    Hang(f64),
    /// Send the response's head and half its body, then close.
    Truncate,
}

pub(crate) struct Outcome {
    pub resp: Resp,
    pub delivery: Delivery,
}

/// Every request of every service passes here: `/_sim/*` control, fault rules, rate quotas,
/// the service handler, the call log.
pub(crate) fn dispatch(shared: &Shared, service: Service, req: &Req) -> Outcome {
    if req.path.starts_with("/_sim/") {
        return Outcome {
            resp: sim_control(shared, req),
            delivery: Delivery::Normal,
        };
    }
    if service == Service::Graph && req.method == "POST" && req.path == "/v1.0/$batch" {
        if let Some(outcome) = graph_batch(shared, req) {
            return outcome;
        }
    }
    let _serial = shared.serial.lock().unwrap_or_else(|e| e.into_inner());
    let rule = shared.faults().take(service, req);
    let (resp, delivery, fault) = match rule {
        None => match execute(shared, service, req) {
            Ok(resp) => (resp, Delivery::Normal, None),
            Err(throttled) => (throttled, Delivery::Normal, Some("quota")),
        },
        Some(rule) => apply_fault(shared, service, req, &rule),
    };
    let status = match delivery {
        Delivery::Drop | Delivery::Hang(_) => 0,
        _ => resp.status,
    };
    let now = shared.clock.now();
    shared.lock().calls.push(CallRecord {
        service,
        method: req.method.clone(),
        path: req.path.clone(),
        status,
        time: iso(now),
        fault: fault.map(str::to_string),
        in_batch: req.in_batch,
    });
    Outcome { resp, delivery }
}

/// Graph JSON batching: each inner request goes through `dispatch` on its
/// own (faults, quotas and the call log see it), and the answers are
/// collected into one 200. `None` when a fault rule targets the batch call
/// itself, which `dispatch` then applies as to any request.
fn graph_batch(shared: &Shared, req: &Req) -> Option<Outcome> {
    {
        let _serial = shared.serial.lock().unwrap_or_else(|e| e.into_inner());
        if shared.faults().targets_explicitly(Service::Graph, req) {
            return None;
        }
    }
    let bad = |msg: &str| {
        Some(Outcome {
            resp: Resp::json(
                400,
                &json!({"error": {"code": "BadRequest", "message": msg}}),
            ),
            delivery: Delivery::Normal,
        })
    };
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return bad("Invalid batch payload format.");
    };
    let Some(items) = body.get("requests").and_then(Value::as_array) else {
        return bad("The batch request has no requests.");
    };
    if items.len() > 20 {
        return bad("The number of batch requests exceeds the limit of 20.");
    }
    let mut responses = Vec::new();
    let mut delivery = Delivery::Normal;
    for item in items {
        let id = item
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let method = item
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or("GET")
            .to_ascii_uppercase();
        let url = item.get("url").and_then(Value::as_str).unwrap_or_default();
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let mut headers = req.headers.clone();
        headers.remove(axum::http::header::CONTENT_LENGTH);
        let inner = Req {
            method,
            path: format!("/v1.0{path}"),
            query: form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
            headers,
            body: item
                .get("body")
                .map(|b| Bytes::from(b.to_string()))
                .unwrap_or_default(),
            form: None,
            in_batch: true,
        };
        let out = dispatch(shared, Service::Graph, &inner);
        // A connection fault on an inner request is a fault of the call that
        // carries it: the batch's answer is dropped, delayed or cut as a whole.
        if !matches!(out.delivery, Delivery::Normal) && matches!(delivery, Delivery::Normal) {
            delivery = out.delivery;
        }
        let (status, resp_body, resp_headers) = match delivery {
            Delivery::Drop | Delivery::Hang(_) => (
                504,
                json!({"error": {"code": "GatewayTimeout", "message": "inner request timed out"}}),
                json!({}),
            ),
            _ => {
                // A JSON batch cannot carry raw bytes: invalid UTF-8 arrives replaced.
                let text = String::from_utf8_lossy(&out.resp.body);
                let b = serde_json::from_str::<Value>(&text)
                    .unwrap_or_else(|_| Value::String(text.into_owned()));
                let h: serde_json::Map<String, Value> = out
                    .resp
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                (out.resp.status, b, Value::Object(h))
            }
        };
        responses
            .push(json!({"id": id, "status": status, "headers": resp_headers, "body": resp_body}));
    }
    let now = shared.clock.now();
    shared.lock().calls.push(CallRecord {
        service: Service::Graph,
        method: req.method.clone(),
        path: req.path.clone(),
        status: 200,
        time: iso(now),
        fault: None,
        in_batch: false,
    });
    Some(Outcome {
        resp: Resp::json(200, &json!({"responses": responses})),
        delivery,
    })
}

/// The quota check, then the service's handler. `Err` = refused by a quota (no effect).
fn execute(shared: &Shared, service: Service, req: &Req) -> Result<Resp, Resp> {
    let now = shared.clock.now();
    shared.quotas().admit(service, req, now)?;
    Ok(handler(shared, service, req))
}

fn handler(shared: &Shared, service: Service, req: &Req) -> Resp {
    match service {
        Service::Entra => entra::handle(shared, req),
        Service::Graph => graph::handle(shared, req),
        Service::Defender => defender::handle(shared, req),
        Service::Vmray => vmray::handle(shared, req),
    }
}

type Faulted = (Resp, Delivery, Option<&'static str>);

fn apply_fault(shared: &Shared, service: Service, req: &Req, rule: &FaultRule) -> Faulted {
    let name = Some(rule.fault.name());
    let nothing = || Resp {
        status: 0,
        headers: vec![],
        body: vec![],
    };
    // `apply_then_fail`: the request runs (through the quota) before the fault hides its answer.
    if rule.apply_then_fail && !rule.fault.shapes_response() {
        if let Err(throttled) = execute(shared, service, req) {
            return (throttled, Delivery::Normal, Some("quota"));
        }
    }
    match &rule.fault {
        Fault::Status { code, retry_after } => (
            faults::status_response(service, *code, retry_after.as_deref()),
            Delivery::Normal,
            name,
        ),
        Fault::ConnectionRefused => (nothing(), Delivery::Drop, name),
        Fault::Timeout { seconds } => (nothing(), Delivery::Hang(*seconds), name),
        Fault::RevokedSecret => (faults::revoked_secret(), Delivery::Normal, name),
        Fault::VmrayErrorsInOk => (faults::vmray_errors_in_ok(req), Delivery::Normal, name),
        Fault::ExpireTokens => {
            let now = shared.clock.now();
            for token in shared.lock().tokens.values_mut() {
                token.expires = token.expires.min(now);
            }
            (faults::expired_token(service), Delivery::Normal, name)
        }
        Fault::PartialImportFailure => partial_import(shared, service, req),
        Fault::TruncatedBody | Fault::MalformedJson | Fault::MissingFields | Fault::WrongTypes => {
            // Without apply_then_fail the request runs outside the quota and is rolled back.
            let saved = (!rule.apply_then_fail).then(|| shared.lock().clone());
            let real = if rule.apply_then_fail {
                match execute(shared, service, req) {
                    Ok(r) => r,
                    Err(throttled) => return (throttled, Delivery::Normal, Some("quota")),
                }
            } else {
                handler(shared, service, req)
            };
            match shape(&rule.fault, service, req, &real) {
                Some((resp, delivery)) => {
                    if let Some(world) = saved {
                        *shared.lock() = world;
                    }
                    (resp, delivery, name)
                }
                // Nothing to garble (an error or an empty body): the real answer, effects kept.
                None => (real, Delivery::Normal, None),
            }
        }
    }
}

/// The garbled version of a successful answer with a body, or `None` when there is none.
fn shape(fault: &Fault, service: Service, req: &Req, real: &Resp) -> Option<(Resp, Delivery)> {
    if !(200..300).contains(&real.status) || real.body.is_empty() {
        return None;
    }
    let json = || serde_json::from_slice::<Value>(&real.body).ok();
    match fault {
        Fault::TruncatedBody => Some((real.clone(), Delivery::Truncate)),
        Fault::MalformedJson => {
            let mut resp = real.clone();
            resp.status = 200;
            resp.body = faults::MALFORMED.as_bytes().to_vec();
            Some((resp, Delivery::Normal))
        }
        Fault::MissingFields => {
            let mut body = json()?;
            faults::missing_fields(service, req, &mut body)
                .then(|| (Resp::json(real.status, &body), Delivery::Normal))
        }
        Fault::WrongTypes => {
            let mut body = json()?;
            faults::wrong_types(&mut body)
                .then(|| (Resp::json(real.status, &body), Delivery::Normal))
        }
        _ => None,
    }
}

/// Every second item of the batch (the only one of a single-item batch) fails and is not
/// stored; the others go through the real import.
fn partial_import(shared: &Shared, service: Service, req: &Req) -> Faulted {
    let parsed = req.json().ok();
    let items = parsed
        .as_ref()
        .and_then(|b| b.get("Indicators"))
        .and_then(Value::as_array)
        .filter(|items| !items.is_empty() && items.len() <= 500);
    let (Some(body), Some(items)) = (parsed.as_ref(), items) else {
        // Not a batch the import would accept: the real (error) answer.
        return match execute(shared, service, req) {
            Ok(r) => (r, Delivery::Normal, None),
            Err(throttled) => (throttled, Delivery::Normal, Some("quota")),
        };
    };
    let fails = faults::failing_items(items.len());
    let kept: Vec<Value> = items
        .iter()
        .enumerate()
        .filter(|(i, _)| !fails(*i))
        .map(|(_, v)| v.clone())
        .collect();
    let real_value: Vec<Value> = if kept.is_empty() {
        if let Some(problem) =
            entra::check_token(shared, crate::http::bearer(req), entra::DEFENDER_SCOPE)
        {
            let resp = defender::defender_error(401, "Unauthorized", &problem);
            return (resp, Delivery::Normal, None);
        }
        let now = shared.clock.now();
        if let Err(throttled) = shared.quotas().admit(service, req, now) {
            return (throttled, Delivery::Normal, Some("quota"));
        }
        vec![]
    } else {
        let mut body = body.clone();
        body["Indicators"] = Value::Array(kept);
        let mut sub = req.clone();
        sub.body = serde_json::to_vec(&body).unwrap_or_default().into();
        match execute(shared, service, &sub) {
            Err(throttled) => return (throttled, Delivery::Normal, Some("quota")),
            Ok(r) if r.status != 200 => return (r, Delivery::Normal, None),
            Ok(r) => serde_json::from_slice::<Value>(&r.body)
                .ok()
                .and_then(|v| v.get("value").and_then(Value::as_array).cloned())
                .unwrap_or_default(),
        }
    };
    let mut real = real_value.into_iter();
    let value: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            if fails(i) {
                json!({"id": null, "indicator": item.get("indicatorValue").cloned().unwrap_or(Value::Null),
                       "isFailed": true, "failureReason": faults::IMPORT_FAILURE})
            } else {
                real.next().unwrap_or(Value::Null)
            }
        })
        .collect();
    let resp = Resp::json(
        200,
        &json!({
            "@odata.context": format!("{}/api/$metadata#Collection(microsoft.windowsDefenderATP.api.ImportIndicatorResult)", shared.bases.defender),
            "value": value,
        }),
    );
    (resp, Delivery::Normal, Some("partial_import_failure"))
}

fn sim_control(shared: &Shared, req: &Req) -> Resp {
    let bad = |m: String| Resp::json(400, &json!({"error": m}));
    let now = shared.clock.now();
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/_sim/state") => {
            let state = shared.snapshot();
            Resp::json(200, &serde_json::to_value(state).unwrap_or(Value::Null))
        }
        ("POST", "/_sim/faults") => match serde_json::from_slice::<FaultRule>(&req.body) {
            Ok(rule) => match rule.validate() {
                Ok(()) => {
                    let mut set = shared.faults();
                    set.rules.push(faults::ActiveRule {
                        rule,
                        matched: 0,
                        fired: 0,
                    });
                    Resp::json(200, &json!({"ok": true, "rules": set.rules.len()}))
                }
                Err(e) => bad(e),
            },
            Err(e) => bad(e.to_string()),
        },
        ("GET", "/_sim/faults") => {
            let rules = serde_json::to_value(&shared.faults().rules).unwrap_or(Value::Null);
            Resp::json(200, &json!({ "rules": rules }))
        }
        ("DELETE", "/_sim/faults") => {
            shared.faults().rules.clear();
            Resp::json(200, &json!({"ok": true}))
        }
        ("POST", "/_sim/quotas") => match serde_json::from_slice::<Quotas>(&req.body) {
            Ok(q) => {
                shared.quotas().limits = q;
                Resp::json(200, &json!({"ok": true}))
            }
            Err(e) => bad(e.to_string()),
        },
        ("GET", "/_sim/quotas") => {
            let q = shared.quotas().limits;
            Resp::json(200, &serde_json::to_value(q).unwrap_or(Value::Null))
        }
        ("POST", "/_sim/advance") => {
            let body = match req.json() {
                Ok(b) => b,
                Err(e) => return bad(e),
            };
            let Some(seconds) = body.get("seconds").and_then(Value::as_f64) else {
                return bad("expected {\"seconds\": N}".into());
            };
            if !(0.0..1e10).contains(&seconds) {
                return bad("seconds must be a non-negative number".into());
            }
            shared
                .clock
                .advance(std::time::Duration::from_secs_f64(seconds));
            Resp::json(200, &json!({"now": iso(shared.clock.now())}))
        }
        ("POST", "/_sim/alerts") => match serde_json::from_slice::<AlertSpec>(&req.body) {
            Ok(spec) => {
                shared.lock().add_alert(spec, now);
                Resp::json(200, &json!({"ok": true}))
            }
            Err(e) => bad(e.to_string()),
        },
        ("POST", "/_sim/mails") => match serde_json::from_slice::<MailSpec>(&req.body) {
            Ok(spec) => {
                shared.lock().add_mail(&spec, now);
                Resp::json(200, &json!({"ok": true}))
            }
            Err(e) => bad(e.to_string()),
        },
        ("POST", "/_sim/vmray/url") => {
            #[derive(serde::Deserialize)]
            struct Body {
                url: String,
                sample: SampleSpec,
            }
            match serde_json::from_slice::<Body>(&req.body) {
                Ok(b) => {
                    shared.lock().set_url_sample(&b.url, b.sample, now);
                    Resp::json(200, &json!({"ok": true}))
                }
                Err(e) => bad(e.to_string()),
            }
        }
        _ => Resp::json(404, &json!({"error": "unknown simulator control path"})),
    }
}

async fn parse_form(req: &Req) -> Option<Form> {
    let ct = req.header("content-type")?.to_ascii_lowercase();
    if ct.starts_with("application/x-www-form-urlencoded") {
        let fields = form_urlencoded::parse(&req.body).into_owned().collect();
        return Some(Form {
            fields,
            files: vec![],
        });
    }
    if ct.starts_with("multipart/form-data") {
        let boundary = multer::parse_boundary(req.header("content-type")?).ok()?;
        let body: Bytes = req.body.clone();
        let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
        let mut multipart = multer::Multipart::new(stream, boundary);
        let mut form = Form::default();
        while let Ok(Some(field)) = multipart.next_field().await {
            let name = field.name().unwrap_or_default().to_string();
            let file_name = field.file_name().map(str::to_string);
            let Ok(data) = field.bytes().await else {
                return None;
            };
            match file_name {
                Some(f) => form.files.push((name, f, data)),
                None => form
                    .fields
                    .push((name, String::from_utf8_lossy(&data).into_owned())),
            }
        }
        return Some(form);
    }
    None
}

fn to_axum(resp: Resp) -> Response {
    let mut builder = Response::builder().status(resp.status);
    for (k, v) in &resp.headers {
        builder = builder.header(k, v);
    }
    builder
        .body(Body::from(resp.body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}
