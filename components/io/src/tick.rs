//! The two ways a tick starts: Spin's cron trigger, or an HTTP route that a
//! scheduler (Kubernetes CronJob, `spin aka crons`) calls with `tick_token`.

use mdo_vmray::config::{ComponentSettings, ConfigError, LogLevel};
use mdo_vmray::tick_auth::authorized;
use serde_json::json;

use crate::log::Log;
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

/// The start of every tick: validated settings and a logger that knows the
/// secrets, or the configuration error, logged and returned.
pub fn start<S: ComponentSettings>(
    component: &'static str,
    settings: Result<S, ConfigError>,
) -> Result<(S, Log), String> {
    let settings = settings.map_err(|e| {
        Log::new(component, LogLevel::Info)
            .error("config_invalid", &[("error", json!(e.to_string()))]);
        e.to_string()
    })?;
    let mut log = Log::new(component, settings.common().log_level);
    for secret in settings.secrets() {
        log.add_secret(secret);
    }
    log.info(
        "tick_start",
        &[("dry_run", json!(settings.common().dry_run))],
    );
    Ok((settings, log))
}

/// The end of every tick: its summary or its error, logged.
pub fn finish(log: &Log, result: Result<String, String>) -> Result<String, String> {
    match &result {
        Ok(summary) => log.info(
            "tick_end",
            &[("summary", serde_json::from_str(summary).unwrap_or_default())],
        ),
        Err(e) => log.error("tick_failed", &[("error", json!(e))]),
    }
    result
}

/// The two entry points of a component, both running `$run`: the cron
/// export (`spin:cron@3.0.0`, with the `cron` feature) and the HTTP tick route.
#[macro_export]
macro_rules! entry_points {
    ($run:path) => {
        #[cfg(feature = "cron")]
        mod cron {
            wit_bindgen::generate!({ world: "spin-cron", path: "../../wit/cron.wit" });

            struct Cron;

            impl Guest for Cron {
                async fn handle_cron_event(_metadata: Metadata) -> Result<(), Error> {
                    $crate::tick::cron_tick($run()).map_err(Error::Other)
                }
            }

            export!(Cron);
        }

        /// The HTTP tick route, for hosts without cron.
        #[spin_sdk::http_component]
        async fn handle(req: spin_sdk::http::Request) -> spin_sdk::http::Response {
            $crate::tick::http_tick(req, $run).await
        }
    };
}
