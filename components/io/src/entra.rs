//! Entra ID client-credentials tokens, cached per scope for the life of the
//! instance (one tick). Tokens are never put in the shared store: every
//! component could read it there, and a Graph token in the VMRay sandbox
//! would undo the separation of secrets.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use mdo_vmray::config::EntraApp;
use serde_json::Value;

use crate::api::{Api, CallError, Req, Resp};

pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
pub const DEFENDER_SCOPE: &str = "https://api.securitycenter.microsoft.com/.default";

pub struct Entra {
    app: EntraApp,
    tenant: String,
    cache: RefCell<HashMap<&'static str, (String, Instant)>>,
}

impl Entra {
    pub fn new(app: EntraApp, tenant: &str) -> Entra {
        Entra {
            app,
            tenant: tenant.to_string(),
            cache: RefCell::new(HashMap::new()),
        }
    }

    async fn fetch(
        &self,
        api: &Api<'_>,
        scope: &'static str,
    ) -> Result<(String, Duration), String> {
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            self.app.login_base_url, self.tenant
        );
        let req = Req::post_form(
            url,
            &[
                ("client_id", &self.app.client_id),
                ("client_secret", &self.app.client_secret),
                ("grant_type", "client_credentials"),
                ("scope", scope),
            ],
            true,
        );
        let resp = api
            .call(&req)
            .await
            .map_err(|e| format!("token request failed: {e}"))?;
        let v: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        if !resp.ok() {
            // Entra's error and description, never our request.
            let code = v
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown_error");
            let desc: String = v
                .get("error_description")
                .and_then(Value::as_str)
                .unwrap_or("")
                .chars()
                .take(200)
                .collect();
            return Err(format!(
                "token request refused (HTTP {}): {code}: {desc}",
                resp.status
            ));
        }
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty());
        let token = token.ok_or("token response: field `access_token` is missing")?;
        let lifetime = v
            .get("expires_in")
            .and_then(|e| e.as_u64().or_else(|| e.as_str()?.parse().ok()))
            .unwrap_or(300);
        Ok((token.to_string(), Duration::from_secs(lifetime)))
    }

    /// A bearer token for `scope`, renewed five minutes before it expires.
    pub async fn token(&self, api: &Api<'_>, scope: &'static str) -> Result<String, String> {
        if let Some((t, until)) = self.cache.borrow().get(scope) {
            if Instant::now() < *until {
                return Ok(t.clone());
            }
        }
        let (token, lifetime) = self.fetch(api, scope).await?;
        let usable = lifetime
            .saturating_sub(Duration::from_secs(300))
            .max(Duration::from_secs(30));
        api.log.debug(
            "token_acquired",
            &[
                ("scope", scope.into()),
                ("expires_in", lifetime.as_secs().into()),
            ],
        );
        self.cache
            .borrow_mut()
            .insert(scope, (token.clone(), Instant::now() + usable));
        Ok(token)
    }

    fn forget(&self, scope: &'static str) {
        self.cache.borrow_mut().remove(scope);
    }

    /// Call with a bearer token; on 401 renew the token once and try again.
    pub async fn call(
        &self,
        api: &Api<'_>,
        scope: &'static str,
        req: &Req,
    ) -> Result<Resp, CallError> {
        for attempt in 0..2 {
            let token = self
                .token(api, scope)
                .await
                .map_err(CallError::NoResponse)?;
            let authed = req
                .clone()
                .header("authorization", &format!("Bearer {token}"));
            let resp = api.call(&authed).await?;
            if resp.status == 401 && attempt == 0 {
                api.log.warn(
                    "token_rejected",
                    &[
                        ("service", api.service.into()),
                        ("path", crate::api::path_of(&req.url).into()),
                        ("action", "renewing token once".into()),
                    ],
                );
                self.forget(scope);
                continue;
            }
            return Ok(resp);
        }
        unreachable!("the loop returns on its second pass")
    }
}
