//! `cargo run -p demo`: the connector end to end with no cloud account.
//!
//! Starts the simulators with the built-in demo scenario (or `--scenario
//! FILE`), loads `spin.toml` with the real `.wasm` components on the test
//! host, runs rounds of ticks (poller, vmray, defender) until every alert is
//! written back, and prints what was written.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use simulators::{Scenario, SimState, Simulators};
use test_host::{App, AppConfig, KvBackend};

const COMPONENTS: [&str; 3] = ["poller", "vmray", "defender"];
/// Simulated time between rounds (the cron schedules run about once a minute).
const ROUND: Duration = Duration::from_secs(60);

struct Args {
    manifest: PathBuf,
    scenario: Option<PathBuf>,
    max_rounds: usize,
    verbose: bool,
}

fn args() -> Result<Args> {
    let mut a = Args {
        manifest: PathBuf::from("spin.toml"),
        scenario: None,
        max_rounds: 15,
        verbose: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--manifest" => a.manifest = it.next().context("--manifest needs a path")?.into(),
            "--scenario" => a.scenario = Some(it.next().context("--scenario needs a path")?.into()),
            "--rounds" => a.max_rounds = it.next().context("--rounds needs a number")?.parse()?,
            "--verbose" | "-v" => a.verbose = true,
            "--help" | "-h" => {
                println!("demo [--manifest spin.toml] [--scenario FILE] [--rounds N] [--verbose]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(a)
}

fn main() -> Result<()> {
    let args = args()?;
    let scenario = match &args.scenario {
        Some(p) => Scenario::from_file(p)?,
        None => Scenario::demo(),
    };
    let alert_ids: Vec<String> = scenario.alerts.iter().map(|a| a.id.clone()).collect();
    let sims = Simulators::start(scenario.clone())?;
    println!(
        "Simulators: entra {}  graph {}  defender {}  vmray {}",
        sims.entra_url(),
        sims.graph_url(),
        sims.defender_url(),
        sims.vmray_url()
    );

    let mut vars: HashMap<String, String> = sims.spin_variables(&scenario);
    // SPIN_VARIABLE_* in the environment win, as with `spin up`.
    for (k, v) in std::env::vars() {
        if let Some(name) = k.strip_prefix("SPIN_VARIABLE_") {
            vars.insert(name.to_ascii_lowercase(), v);
        }
    }
    let started = Instant::now();
    let app = App::load(
        &args.manifest,
        AppConfig {
            variables: vars,
            kv: KvBackend::Memory,
            wasm_dir: None,
        },
    )
    .with_context(|| {
        format!(
            "loading {} (build the components first: scripts/demo.sh does)",
            args.manifest.display()
        )
    })?;
    println!(
        "Loaded {} components from {} in {:.1?}\n",
        app.cron_components().len(),
        args.manifest.display(),
        started.elapsed()
    );

    let mut rounds = 0;
    let mut seen_logs = 0;
    while rounds < args.max_rounds {
        rounds += 1;
        for c in COMPONENTS {
            let t = Instant::now();
            let outcome = app.cron_tick(c, app.now_unix_secs())?;
            let summary = tick_summary(&app, c, seen_logs);
            println!(
                "round {rounds:>2}  {c:<8} {:>6.1?}  {}",
                t.elapsed(),
                match &outcome {
                    Ok(()) => summary,
                    Err(e) => format!("FAILED: {e}"),
                }
            );
            if args.verbose {
                for l in &app.logs()[seen_logs..] {
                    println!("          {l}");
                }
            }
            seen_logs = app.logs().len();
        }
        let state = sims.state();
        if alert_ids.iter().all(|a| !state.comment_texts(a).is_empty()) && open_alerts(&app) == 0 {
            break;
        }
        // Let simulated time pass between rounds, for the analyses and the components alike.
        sims.clock().advance(ROUND);
        app.advance_clock(ROUND);
    }
    report(&sims.state(), &alert_ids, rounds);
    Ok(())
}

/// The `tick_end` summary the component logged in its last tick.
fn tick_summary(app: &App, component: &str, from: usize) -> String {
    app.logs()[from..]
        .iter()
        .rev()
        .filter(|l| l.component == component)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l.line).ok())
        .filter(|v| v["event"] == "tick_end")
        .map(|v| v["summary"].to_string())
        .next()
        .unwrap_or_default()
}

fn open_alerts(app: &App) -> usize {
    app.kv_keys("default")
        .iter()
        .filter(|k| k.ends_with(":poll:open"))
        .filter_map(|k| app.kv_get("default", k))
        .filter_map(|v| serde_json::from_slice::<serde_json::Value>(&v).ok())
        .map(|v| v["ids"].as_array().map(Vec::len).unwrap_or(0))
        .sum()
}

fn report(s: &SimState, alert_ids: &[String], rounds: usize) {
    let done = alert_ids
        .iter()
        .filter(|a| !s.comment_texts(a).is_empty())
        .count();
    println!(
        "\n=== {done} of {} alerts written back after {rounds} rounds ===\n",
        alert_ids.len()
    );
    println!("VMRay submissions ({}):", s.vmray_submissions.len());
    for sub in &s.vmray_submissions {
        println!(
            "  #{:<5} sample {:<5} {}  tags [{}]",
            sub.submission_id,
            sub.sample_id,
            sub.url
                .as_deref()
                .or(sub.filename.as_deref())
                .unwrap_or("?"),
            sub.tags.join(", ")
        );
    }
    println!("\nComments:");
    for a in alert_ids {
        let texts = s.comment_texts(a);
        println!("  alert {a}: {} comment(s)", texts.len());
        for t in texts {
            for line in t.lines().take(12) {
                println!("    | {line}");
            }
            println!("    +--");
        }
    }
    println!("\nIndicators ({}):", s.indicators.len());
    for i in &s.indicators {
        println!(
            "  {:<11} {:<8} {:<6} {}",
            i.indicator_type,
            i.action,
            i.severity.as_deref().unwrap_or("-"),
            i.indicator_value
        );
    }
    println!("\nIncident tags:");
    for inc in s.incidents.values() {
        println!("  incident {}: [{}]", inc.id, inc.custom_tags.join(", "));
    }
    let mut by: std::collections::BTreeMap<String, usize> = Default::default();
    for c in &s.calls {
        let via = if c.in_batch { "  (inside $batch)" } else { "" };
        *by.entry(format!("{} {} {}{via}", c.service.name(), c.method, c.path))
            .or_default() += 1;
    }
    let requests = s.calls.iter().filter(|c| !c.in_batch).count();
    println!(
        "\nAPI calls ({requests} HTTP requests; Graph operations inside $batch listed apart):"
    );
    for (k, n) in by {
        println!("  {n:>4}  {k}");
    }
}
