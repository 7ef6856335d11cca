//! A small model of the calls VMRay's own connector (the Azure Function,
//! `../shared/reference/vendor-connector.md`) would make for a generated
//! scenario. Its code is not public, so this follows what its README and
//! deployment template describe, and where they are silent takes the
//! cheapest reading (so the comparison flatters the vendor, never us):
//!
//! - **One run** handles the whole backlog (it waits for analyses inside the
//!   run), so one token pair (Graph + Defender) in all, and idle runs of its
//!   timer are not counted.
//! - **Alerts list**: pages of 100 (the simulators' and Graph's page size).
//! - **Hunting**: one `runHuntingQuery` per alert (its weakness 4); the 24 h
//!   window finds every mail of the scenario, so no second, longer query.
//! - **Alert GET**: one per alert, to read its comments for the de-duplication
//!   by exact text (weakness 5).
//! - **VMRay, per URL occurrence** (it keeps no state across alerts): one
//!   submission search ("analysed within `VmrayResubmitAfter` days?"); if no
//!   analysis exists yet (the URL's first occurrence): one submit and a status
//!   poll every 30 s while the analysis runs (`ANALYSIS_DELAY_SECS / 30`,
//!   at least one); then, for the sample and each child sample, three reads
//!   (sample — verdict, score, classifications, threat names, link —, IOCs,
//!   VTIs). A later occurrence of the URL finds the analysis by search and
//!   reads it again.
//! - **Writes, per alert**: one comment per sample (URL sample and children)
//!   of each of its URLs; per indicator IOC (malicious or suspicious) of each
//!   sample, one indicator look-up (`GET /api/indicators?$filter=…`) and one
//!   indicator call (`POST /api/indicators`); one incident GET and one PATCH
//!   (tags), alert by alert.

use crate::scenario::{Generated, ANALYSIS_DELAY_SECS};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

/// The model's calls by endpoint label (the labels of [`crate::label`]),
/// Microsoft (Entra, Graph, Defender) and VMRay apart.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VendorCalls {
    pub microsoft: BTreeMap<String, u64>,
    pub vmray: BTreeMap<String, u64>,
}

impl VendorCalls {
    pub fn microsoft_total(&self) -> u64 {
        self.microsoft.values().sum()
    }

    pub fn vmray_total(&self) -> u64 {
        self.vmray.values().sum()
    }
}

/// Runs the model over `g`.
pub fn model(g: &Generated) -> VendorCalls {
    let mut ms: BTreeMap<String, u64> = BTreeMap::new();
    let mut vm: BTreeMap<String, u64> = BTreeMap::new();
    fn add(m: &mut BTreeMap<String, u64>, k: &str, n: u64) {
        *m.entry(k.to_string()).or_default() += n;
    }
    let n = g.alerts.len() as u64;
    add(&mut ms, "token", 2);
    add(&mut ms, "alerts list", n.div_ceil(100).max(1));
    add(&mut ms, "hunting", n);
    add(&mut ms, "alert GET", n);
    add(&mut ms, "incident GET", n);
    add(&mut ms, "incident PATCH", n);
    let polls = (ANALYSIS_DELAY_SECS / 30).max(1);
    let mut analysed: HashSet<usize> = HashSet::new();
    for a in &g.alerts {
        for &u in &a.urls {
            let url = &g.urls[u];
            let samples = 1 + url.children as u64;
            add(&mut vm, "search", 1);
            if analysed.insert(u) {
                add(&mut vm, "submit", 1);
                add(&mut vm, "status", polls);
            }
            add(&mut vm, "sample reads", 3 * samples);
            add(&mut ms, "comments", samples);
            add(&mut ms, "indicators list", url.indicator_iocs as u64);
            add(&mut ms, "indicators POST", url.indicator_iocs as u64);
        }
    }
    VendorCalls {
        microsoft: ms,
        vmray: vm,
    }
}
