//! Entra ID token endpoint: `POST /{tenant}/oauth2/v2.0/token` (client credentials).

use crate::http::{guid, opaque, Req, Resp};
use crate::state::{Shared, Token};
use serde_json::json;

pub(crate) const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
pub(crate) const DEFENDER_SCOPE: &str = "https://api.securitycenter.microsoft.com/.default";
const XDR_SCOPE: &str = "https://api.security.microsoft.com/.default";

pub(crate) fn aad_error(status: u16, error: &str, code: u32, description: &str) -> Resp {
    let trace = guid();
    let correlation = guid();
    let timestamp = chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
    Resp::json(
        status,
        &json!({
            "error": error,
            "error_description": format!(
                "AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {timestamp}"
            ),
            "error_codes": [code],
            "timestamp": timestamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    )
}

pub(crate) fn handle(shared: &Shared, req: &Req) -> Resp {
    let seg = req.segments();
    let is_token_path =
        seg.len() == 4 && seg[1] == "oauth2" && seg[2] == "v2.0" && seg[3] == "token";
    if !is_token_path {
        return aad_error(
            404,
            "invalid_request",
            900_561,
            "The endpoint only accepts POST requests. Unknown path.",
        );
    }
    if req.method != "POST" {
        return aad_error(
            405,
            "invalid_request",
            900_561,
            "The endpoint only accepts POST, OPTIONS requests. Received a GET request.",
        );
    }
    let Some(form) = req.form.as_ref().filter(|_| {
        req.header("content-type").is_some_and(|c| {
            c.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
    }) else {
        return aad_error(
            400,
            "invalid_request",
            900_144,
            "The request body must contain the following parameter: 'grant_type'.",
        );
    };
    let now = shared.clock.now();
    let mut world = shared.lock();
    let cfg = world.cfg.clone();
    let tenant = &seg[0];
    if !tenant.eq_ignore_ascii_case(&cfg.tenant_id) {
        return aad_error(
            400,
            "invalid_request",
            90_002,
            &format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."),
        );
    }
    match form.get("grant_type") {
        None => {
            return aad_error(
                400,
                "invalid_request",
                900_144,
                "The request body must contain the following parameter: 'grant_type'.",
            )
        }
        Some("client_credentials") => {}
        Some(other) => {
            return aad_error(
                400,
                "unsupported_grant_type",
                70_003,
                &format!("The app requested an unsupported grant type '{other}'."),
            )
        }
    }
    let Some(client_id) = form.get("client_id") else {
        return aad_error(
            400,
            "invalid_request",
            900_144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    if !client_id.eq_ignore_ascii_case(&cfg.client_id) {
        return aad_error(
            400,
            "unauthorized_client",
            700_016,
            &format!("Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.", cfg.tenant_id),
        );
    }
    match form.get("client_secret") {
        None => {
            return aad_error(
                401,
                "invalid_client",
                7_000_218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )
        }
        Some(secret) if secret != cfg.client_secret => {
            return aad_error(
                401,
                "invalid_client",
                7_000_215,
                &format!("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.", cfg.client_id),
            )
        }
        Some(_) => {}
    }
    let scope = form.get("scope").unwrap_or_default().trim().to_string();
    if ![GRAPH_SCOPE, DEFENDER_SCOPE, XDR_SCOPE].contains(&scope.as_str()) {
        return aad_error(
            400,
            "invalid_scope",
            1_002_012,
            &format!("The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."),
        );
    }
    let lifetime = cfg.token_lifetime_seconds;
    let token = format!("sim.{}", opaque(48));
    world.tokens.insert(
        token.clone(),
        Token {
            scope,
            expires: now + chrono::Duration::seconds(lifetime as i64),
        },
    );
    Resp::json(
        200,
        &json!({
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": token,
        }),
    )
}

/// Why a bearer token is not good for `scope`, or `None` when it is.
pub(crate) fn check_token(shared: &Shared, token: Option<&str>, scope: &str) -> Option<String> {
    let Some(token) = token else {
        return Some("Access token is empty.".into());
    };
    let now = shared.clock.now();
    let world = shared.lock();
    match world.tokens.get(token) {
        None => Some("Access token validation failure. Invalid token.".into()),
        Some(t) if t.scope != scope => Some("Invalid audience.".into()),
        Some(t) if t.expires <= now => {
            Some("Lifetime validation failed, the token is expired.".into())
        }
        Some(_) => None,
    }
}
