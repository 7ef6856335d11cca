//! Deterministic check of the API economy: the 10-alert scenarios' calls by
//! endpoint must equal the committed baseline (`bench/baseline-10.json`).
//! Exact counts are deterministic: no faults, no quotas, simulated time.

use bench::report::read_baseline;
use bench::run::{run, RunOptions};
use bench::scenario::Spec;
use std::collections::{BTreeMap, BTreeSet};

#[test]
fn ten_alert_call_counts_match_the_baseline() {
    let root = bench::root();
    for c in bench::run::COMPONENTS {
        let p = root.join(format!("target/wasm32-wasip2/release/{c}.wasm"));
        assert!(
            p.exists(),
            "{} is missing: build the components first (scripts/test.sh does)",
            p.display()
        );
    }
    let baseline =
        read_baseline().unwrap_or_else(|e| panic!("{e:#}\nwrite it with: {}", bench::REGENERATE));
    let mut opts = RunOptions::new(&root);
    opts.expiry = false;
    opts.max_rounds = 30;
    let mut diffs = Vec::new();
    for spec in Spec::set("small").expect("small set") {
        let r = run(spec, &opts).expect("scenario runs");
        assert!(
            r.finished,
            "{}: not written back in {} rounds",
            r.name, r.rounds
        );
        let empty = BTreeMap::new();
        let want = baseline.get(&r.name).unwrap_or(&empty);
        let keys: BTreeSet<&String> = want.keys().chain(r.calls.keys()).collect();
        for k in keys {
            let (w, g) = (
                want.get(k).copied().unwrap_or(0),
                r.calls.get(k).copied().unwrap_or(0),
            );
            if w != g {
                diffs.push(format!("{}: {k}: baseline {w}, now {g}", r.name));
            }
        }
    }
    assert!(
        diffs.is_empty(),
        "API call counts drifted from bench/baseline-10.json:\n  {}\n\
         If the change is intended, regenerate the baseline: {}",
        diffs.join("\n  "),
        bench::REGENERATE
    );
}
