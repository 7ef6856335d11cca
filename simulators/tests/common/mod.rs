//! Small blocking HTTP helpers for the integration tests.
#![allow(dead_code)]

use serde_json::Value;
use simulators::{Scenario, Simulators};

pub enum Body<'a> {
    None,
    Json(Value),
    Form(&'a [(&'a str, &'a str)]),
    Raw(&'a str, Vec<u8>),
}

pub fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Body) -> (u16, Value) {
    let mut req = ureq::request(method, url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let result = match body {
        Body::None => req.call(),
        Body::Json(v) => req.send_json(v),
        Body::Form(f) => req.send_form(f),
        Body::Raw(ct, bytes) => req.set("Content-Type", ct).send_bytes(&bytes),
    };
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = resp.status();
    let text = resp.into_string().unwrap_or_default();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {url}: not JSON ({e}): {text}"))
    };
    (status, value)
}

pub fn token(sims: &Simulators, scenario: &Scenario, scope: &str) -> String {
    let url = format!(
        "{}/{}/oauth2/v2.0/token",
        sims.entra_url(),
        scenario.tenant_id
    );
    let (status, body) = send(
        "POST",
        &url,
        &[],
        Body::Form(&[
            ("client_id", &scenario.client_id),
            ("client_secret", &scenario.client_secret),
            ("grant_type", "client_credentials"),
            ("scope", scope),
        ]),
    );
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

pub const GRAPH: &str = "https://graph.microsoft.com/.default";
pub const DEFENDER: &str = "https://api.securitycenter.microsoft.com/.default";

pub struct Client {
    pub base: String,
    pub auth: String,
}

impl Client {
    pub fn graph(sims: &Simulators, scenario: &Scenario) -> Client {
        Client {
            base: sims.graph_url(),
            auth: format!("Bearer {}", token(sims, scenario, GRAPH)),
        }
    }
    pub fn defender(sims: &Simulators, scenario: &Scenario) -> Client {
        Client {
            base: sims.defender_url(),
            auth: format!("Bearer {}", token(sims, scenario, DEFENDER)),
        }
    }
    pub fn vmray(sims: &Simulators, scenario: &Scenario) -> Client {
        Client {
            base: sims.vmray_url(),
            auth: format!("api_key {}", scenario.vmray_api_key),
        }
    }
    pub fn get(&self, path: &str) -> (u16, Value) {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        send("GET", &url, &[("Authorization", &self.auth)], Body::None)
    }
    pub fn json(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        send(
            method,
            &format!("{}{path}", self.base),
            &[("Authorization", &self.auth)],
            Body::Json(body),
        )
    }
    pub fn form(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        send(
            "POST",
            &format!("{}{path}", self.base),
            &[("Authorization", &self.auth)],
            Body::Form(form),
        )
    }
    pub fn raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        send(
            "POST",
            &format!("{}{path}", self.base),
            &[("Authorization", &self.auth)],
            Body::Raw(content_type, body),
        )
    }
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub fn multipart(fields: &[(&str, &str)], file: Option<(&str, &str, &[u8])>) -> (String, Vec<u8>) {
    let boundary = "----simtestboundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    if let Some((name, filename, data)) = file {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
