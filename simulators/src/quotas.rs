//! Rate quotas: sliding 60-second windows on the simulated clock, one per API family.

use crate::http::{Req, Resp};
use crate::state::Service;
use crate::{defender, entra, graph, vmray};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Calls allowed per sliding minute (`None` = unlimited). JSON: the same field names, all
/// optional, e.g. `{"graph_per_minute": 150, "hunting_per_minute": 45}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quotas {
    /// Graph alerts_v2 (list, get, comments) and incidents.
    pub graph_per_minute: Option<u32>,
    /// Graph `runHuntingQuery`.
    pub hunting_per_minute: Option<u32>,
    /// Defender `/api/indicators…` except the import.
    pub indicators_per_minute: Option<u32>,
    /// Defender `POST /api/indicators/import`.
    pub indicator_import_per_minute: Option<u32>,
    /// Every VMRay `/rest/…` call.
    pub vmray_per_minute: Option<u32>,
}

impl Quotas {
    /// The documented limits: Graph 150/min, hunting 45/min, indicators 100/min, import 30/min
    /// (VMRay documents none).
    pub fn documented() -> Quotas {
        Quotas {
            graph_per_minute: Some(150),
            hunting_per_minute: Some(45),
            indicators_per_minute: Some(100),
            indicator_import_per_minute: Some(30),
            vmray_per_minute: None,
        }
    }

    fn limit(&self, bucket: Bucket) -> Option<u32> {
        match bucket {
            Bucket::Graph => self.graph_per_minute,
            Bucket::Hunting => self.hunting_per_minute,
            Bucket::Indicators => self.indicators_per_minute,
            Bucket::Import => self.indicator_import_per_minute,
            Bucket::Vmray => self.vmray_per_minute,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Bucket {
    Graph,
    Hunting,
    Indicators,
    Import,
    Vmray,
}

fn bucket(service: Service, req: &Req) -> Option<Bucket> {
    let path = req.path.trim_end_matches('/');
    match service {
        Service::Entra => None,
        Service::Graph if path.ends_with("/runHuntingQuery") => Some(Bucket::Hunting),
        Service::Graph => Some(Bucket::Graph),
        Service::Defender if path.ends_with("/api/indicators/import") => Some(Bucket::Import),
        Service::Defender => Some(Bucket::Indicators),
        Service::Vmray => Some(Bucket::Vmray),
    }
}

/// Quota settings, the admitted calls of the last minute, and the refusal counts.
#[derive(Debug, Default)]
pub(crate) struct QuotaState {
    pub limits: Quotas,
    windows: HashMap<Bucket, VecDeque<DateTime<Utc>>>,
    /// Refused calls per service name.
    pub throttled: BTreeMap<String, u64>,
}

const WINDOW_MS: i64 = 60_000;

impl QuotaState {
    pub fn new(limits: Quotas) -> QuotaState {
        QuotaState {
            limits,
            ..Default::default()
        }
    }

    /// Admits the call (it takes a slot) or answers the service's 429 with `Retry-After`
    /// = seconds until the oldest call of the window leaves it.
    pub fn admit(&mut self, service: Service, req: &Req, now: DateTime<Utc>) -> Result<(), Resp> {
        let Some(bucket) = bucket(service, req) else {
            return Ok(());
        };
        let window = self.windows.entry(bucket).or_default();
        let cutoff = now - chrono::Duration::milliseconds(WINDOW_MS);
        while window.front().is_some_and(|t| *t <= cutoff) {
            window.pop_front();
        }
        let Some(limit) = self.limits.limit(bucket) else {
            window.push_back(now);
            return Ok(());
        };
        if window.len() < limit as usize {
            window.push_back(now);
            return Ok(());
        }
        // A slot frees when the call at this index leaves the window.
        let wait_ms = window
            .get(window.len() - limit as usize)
            .or(window.back())
            .map(|t| (*t - cutoff).num_milliseconds().max(1))
            .unwrap_or(WINDOW_MS);
        *self
            .throttled
            .entry(service.name().to_string())
            .or_insert(0) += 1;
        Err(throttle_response(
            service,
            &seconds_text(wait_ms),
            Some(limit),
        ))
    }
}

/// Milliseconds as a Retry-After value: `"2"`, `"2.5"`, `"2.128"`.
pub(crate) fn seconds_text(ms: i64) -> String {
    if ms % 1000 == 0 {
        (ms / 1000).to_string()
    } else {
        format!("{}.{:03}", ms / 1000, ms % 1000)
            .trim_end_matches('0')
            .to_string()
    }
}

/// Whole seconds (rounded up) of a Retry-After text, for messages that quote it.
pub(crate) fn whole_seconds(retry_after: &str) -> u64 {
    retry_after
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| s.ceil() as u64)
        .unwrap_or(2)
}

/// The throttling answer of each service (429 + `Retry-After`).
pub(crate) fn throttle_response(service: Service, retry_after: &str, limit: Option<u32>) -> Resp {
    let secs = whole_seconds(retry_after);
    let mut resp = match service {
        Service::Graph => graph::graph_error(
            429,
            "TooManyRequests",
            "Too many requests. Retry after the time given in the Retry-After header.",
        ),
        Service::Defender => defender::defender_error(
            429,
            "TooManyRequests",
            &match limit {
                Some(l) => format!(
                    "API calls quota exceeded! Maximum allowed {l} per 1 minute. Try again in {secs} seconds."
                ),
                None => format!("Too many requests. Try again in {secs} seconds."),
            },
        ),
        Service::Vmray => vmray::vmray_error(
            429,
            &format!("Request was throttled. Expected available in {secs} seconds."),
        ),
        Service::Entra => entra::aad_error(
            429,
            "temporarily_unavailable",
            50_196,
            "The server terminated an operation because it encountered a client request loop. Please retry later.",
        ),
    };
    resp.headers
        .push(("retry-after".into(), retry_after.to_string()));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str) -> Req {
        Req {
            method: "GET".into(),
            path: path.into(),
            query: vec![],
            headers: Default::default(),
            body: Default::default(),
            form: None,
            in_batch: false,
        }
    }

    #[test]
    fn retry_after_texts() {
        assert_eq!(seconds_text(2000), "2");
        assert_eq!(seconds_text(2500), "2.5");
        assert_eq!(seconds_text(2128), "2.128");
        assert_eq!(seconds_text(59_001), "59.001");
        assert_eq!(whole_seconds("2.128"), 3);
        assert_eq!(whole_seconds("2"), 2);
    }

    #[test]
    fn sliding_window() {
        let mut q = QuotaState::new(Quotas {
            hunting_per_minute: Some(2),
            ..Default::default()
        });
        let t0 = Utc::now();
        let hunt = req("/v1.0/security/runHuntingQuery");
        let alerts = req("/v1.0/security/alerts_v2");
        assert!(q.admit(Service::Graph, &hunt, t0).is_ok());
        let t1 = t0 + chrono::Duration::milliseconds(10_500);
        assert!(q.admit(Service::Graph, &hunt, t1).is_ok());
        // Other buckets are independent.
        assert!(q.admit(Service::Graph, &alerts, t1).is_ok());
        let refused = q.admit(Service::Graph, &hunt, t1).unwrap_err();
        assert_eq!(refused.status, 429);
        let retry = refused.headers.iter().find(|(k, _)| k == "retry-after");
        assert_eq!(retry.unwrap().1, "49.5");
        // The first call leaves the window 60 s after it was made.
        let t2 = t0 + chrono::Duration::seconds(60);
        assert!(q.admit(Service::Graph, &hunt, t2).is_ok());
        let refused = q.admit(Service::Graph, &hunt, t2).unwrap_err();
        let retry = refused.headers.iter().find(|(k, _)| k == "retry-after");
        assert_eq!(retry.unwrap().1, "10.5");
        assert_eq!(q.throttled.get("graph"), Some(&2));
    }
}
