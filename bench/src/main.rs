//! `scripts/bench.sh [--json FILE] [--scenarios small|all] [--write-baseline]`

use anyhow::{bail, Context, Result};
use bench::report::{self, Machine, Report};
use bench::run::{self, RunOptions};
use bench::scenario::Spec;
use std::path::PathBuf;
use std::time::Instant;

/// Wall-time budget of each 10,000-alert scenario.
const WALL_BUDGET_10K_SECS: u64 = 150;

fn main() -> Result<()> {
    let mut json: Option<PathBuf> = None;
    let mut which = "all".to_string();
    let mut write_baseline = false;
    let mut only: Option<String> = None;
    let mut max_rounds: Option<usize> = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => json = Some(it.next().context("--json needs a file")?.into()),
            "--scenarios" => which = it.next().context("--scenarios needs small or all")?,
            "--write-baseline" => write_baseline = true,
            // For investigating one scenario: `--only 10000-r0 --max-rounds 30`.
            "--only" => only = Some(it.next().context("--only needs a scenario name")?),
            "--max-rounds" => {
                max_rounds = Some(it.next().context("--max-rounds needs a number")?.parse()?)
            }
            "--help" | "-h" => {
                println!("bench [--json FILE] [--scenarios small|all] [--write-baseline]");
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    let Some(mut specs) = Spec::set(&which) else {
        bail!("--scenarios: small or all, not {which:?}")
    };
    if let Some(o) = &only {
        specs.retain(|s| &s.name() == o);
    }
    let root = bench::root();
    let started = Instant::now();
    let mut rep = Report {
        machine: Machine::probe(),
        release_profile: report::release_profile(&root),
        ..Report::default()
    };
    eprintln!("bench: sizes and instantiation…");
    rep.components = report::statics(&root)?;
    let mut opts = RunOptions::new(&root);
    opts.progress = true;
    if let Some(n) = max_rounds {
        opts.max_rounds = n;
    }
    for spec in specs {
        eprintln!("bench: scenario {} …", spec.name());
        // The 10,000-alert backlog takes ~150 one-minute rounds to drain (the
        // defender's per-tick call budget); on a 2-core machine that is more
        // than the benchmark's 10 minutes, so those runs stop after a time
        // budget and are reported per alert written back.
        let mut o = opts.clone();
        if spec.alerts >= 10_000 && max_rounds.is_none() {
            o.wall_budget = Some(std::time::Duration::from_secs(WALL_BUDGET_10K_SECS));
        }
        let r = run::run(spec, &o)?;
        eprintln!(
            "bench: scenario {} done in {:.1} s ({} rounds)",
            r.name, r.seconds, r.rounds
        );
        rep.scenarios.push(r);
    }
    println!("{}", rep.table());
    println!("(total {:.0} s)", started.elapsed().as_secs_f64());
    if let Some(p) = json {
        std::fs::write(&p, serde_json::to_string_pretty(&rep)? + "\n")
            .with_context(|| format!("writing {}", p.display()))?;
        eprintln!("bench: wrote {}", p.display());
    }
    if write_baseline {
        report::write_baseline(&rep.scenarios)?;
        eprintln!("bench: wrote {}", bench::baseline_path().display());
    }
    Ok(())
}
