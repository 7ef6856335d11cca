//! The two ways a tick starts: Spin's cron trigger, or an HTTP route that a
//! scheduler (Kubernetes CronJob, `spin aka crons`) calls with `tick_token`.

use mdo_vmray::tick_auth::authorized;
use spin_sdk::http::{Request, Response};

/// Run a tick from the HTTP route, after checking the bearer token.
/// Only `POST` is accepted, so a crawler or a browser cannot start work.
pub async fn http_tick<F, Fut>(req: Request, tick: F) -> Response
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    let configured = spin_sdk::variables::get("tick_token").ok();
    let header = req.header("authorization").and_then(|h| h.as_str());
    if !authorized(header, configured.as_deref()) {
        return json_response(
            401,
            r#"{"error":"unauthorized","message":"a valid bearer tick_token is required"}"#.into(),
        );
    }
    if *req.method() != spin_sdk::http::Method::Post {
        return json_response(
            405,
            r#"{"error":"method_not_allowed","message":"use POST"}"#.into(),
        );
    }
    match tick().await {
        Ok(summary) => json_response(200, summary),
        Err(e) => json_response(
            500,
            serde_json::json!({"error": "tick_failed", "message": e}).to_string(),
        ),
    }
}

fn json_response(status: u16, body: String) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body)
        .build()
}

/// Run a tick from the cron export: spin-sdk 5.2's futures must be driven by
/// its own executor inside the component-model async export.
pub fn cron_tick<Fut>(fut: Fut) -> Result<(), String>
where
    Fut: std::future::Future<Output = Result<String, String>>,
{
    spin_executor::run(fut).map(|_| ())
}
