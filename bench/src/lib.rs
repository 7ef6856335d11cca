//! The connector's benchmark (`scripts/bench.sh`): fixed scenarios run on the
//! test host against the simulators; prints API economy next to a model of
//! the vendor's algorithm, speed, size and start-up, and store use. It never
//! fails on a figure: targets are printed with "met" / "not met".

pub mod report;
pub mod run;
pub mod scenario;
pub mod vendor;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The workspace root (where `spin.toml` is).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

/// Where the deterministic check's baseline is committed.
pub fn baseline_path() -> PathBuf {
    root().join("bench/baseline-10.json")
}

/// The command that regenerates the baseline.
pub const REGENERATE: &str = "scripts/bench.sh --scenarios small --write-baseline";

/// Short label of a normalised endpoint (`run::endpoint`), and whether it is
/// a Microsoft (Entra, Graph, Defender) one.
pub fn label(endpoint: &str) -> (bool, String) {
    let known = [
        ("entra POST /{id}/oauth2/v2.0/token", "token"),
        ("graph GET /v1.0/security/alerts_v2", "alerts list"),
        ("graph POST /v1.0/security/runHuntingQuery", "hunting"),
        (
            "graph POST /v1.0/security/alerts_v2/{id}/comments",
            "comments",
        ),
        ("graph GET /v1.0/security/alerts_v2/{id}", "alert GET"),
        ("graph GET /v1.0/security/incidents/{id}", "incident GET"),
        (
            "graph PATCH /v1.0/security/incidents/{id}",
            "incident PATCH",
        ),
        ("graph POST /v1.0/$batch", "$batch (envelopes)"),
        ("defender POST /api/indicators/import", "indicators import"),
        ("defender GET /api/indicators", "indicators list"),
        ("defender POST /api/indicators", "indicators POST"),
        ("vmray GET /rest/submission/search", "search"),
        ("vmray POST /rest/sample/submit", "submit"),
        ("vmray GET /rest/submission/{id}", "status"),
    ];
    if let Some((_, l)) = known.iter().find(|(e, _)| *e == endpoint) {
        return (!endpoint.starts_with("vmray "), l.to_string());
    }
    if endpoint.starts_with("vmray GET /rest/sample/{id}") {
        return (false, "sample reads".into());
    }
    let ms = !endpoint.starts_with("vmray ");
    let short = endpoint.split_once(' ').map(|x| x.1).unwrap_or(endpoint);
    (ms, short.to_string())
}

/// Calls by label, Microsoft and VMRay apart.
pub fn by_label(calls: &BTreeMap<String, u64>) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let mut ms = BTreeMap::new();
    let mut vm = BTreeMap::new();
    for (e, n) in calls {
        let (is_ms, l) = label(e);
        *if is_ms { &mut ms } else { &mut vm }.entry(l).or_default() += n;
    }
    (ms, vm)
}
