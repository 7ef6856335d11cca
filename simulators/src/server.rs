//! HTTP plumbing: one axum fallback handler per port, and `dispatch`, the single place every
//! request goes through (call log, `/_sim/*` control, and later fault injection / quotas).

use crate::http::{Form, Req, Resp};
use crate::scenario::{AlertSpec, MailSpec, SampleSpec};
use crate::state::{iso, CallRecord, Service, Shared};
use crate::{defender, entra, graph, vmray};
use axum::body::Body;
use axum::extract::{Request, State};
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

async fn handle(State((shared, service)): State<(Arc<Shared>, Service)>, req: Request) -> Response {
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
    };
    req.form = parse_form(&req).await;
    to_axum(dispatch(&shared, service, &req))
}

/// Every request of every service passes here.
pub(crate) fn dispatch(shared: &Shared, service: Service, req: &Req) -> Resp {
    if req.path.starts_with("/_sim/") {
        return sim_control(shared, req);
    }
    // Fault injection and rate quotas go here later: look up a rule for
    // (service, method, path) and answer 429 / 5xx / garbage / delay before the handler runs.
    let resp = match service {
        Service::Entra => entra::handle(shared, req),
        Service::Graph => graph::handle(shared, req),
        Service::Defender => defender::handle(shared, req),
        Service::Vmray => vmray::handle(shared, req),
    };
    let now = shared.clock.now();
    shared.lock().calls.push(CallRecord {
        service,
        method: req.method.clone(),
        path: req.path.clone(),
        status: resp.status,
        time: iso(now),
    });
    resp
}

fn sim_control(shared: &Shared, req: &Req) -> Resp {
    let bad = |m: String| Resp::json(400, &json!({"error": m}));
    let now = shared.clock.now();
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/_sim/state") => {
            let state = shared.lock().snapshot(now);
            Resp::json(200, &serde_json::to_value(state).unwrap_or(Value::Null))
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
