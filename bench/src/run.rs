//! Runs one scenario on the test host against the simulators and measures it.

use crate::scenario::{generate, Generated, Spec};
use crate::vendor::{self, VendorCalls};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use simulators::{CallRecord, SimState, Simulators};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use test_host::{App, AppConfig, KvBackend};

pub const COMPONENTS: [&str; 3] = ["poller", "vmray", "defender"];
/// Simulated time between rounds (the cron schedules run about once a minute).
pub const ROUND_SECS: u64 = 60;
/// How far both clocks jump to look at expiry: past the longest retention a
/// record could need (indicator expiration 30 days, resubmit window 7 days).
pub const EXPIRY_ADVANCE_DAYS: u64 = 31;
/// Rounds run after the jump, for the components to expire what they keep.
pub const EXPIRY_ROUNDS: usize = 2;

/// Thread CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Per component, summed over the scenario's ticks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ComponentFigures {
    pub ticks: u64,
    pub failed_ticks: u64,
    /// Wall time of the guest calls, instantiation included.
    pub wall_ms: f64,
    /// Part of `wall_ms` spent waiting for the services' response heads.
    pub service_wait_ms: f64,
    /// `wall_ms - service_wait_ms`: time inside the component and its host calls.
    pub inside_wall_ms: f64,
    /// Thread CPU time of the host thread that runs the guest (guest code plus
    /// the host functions it calls; the simulators run on other threads).
    pub cpu_ms: f64,
    pub max_tick_cpu_ms: f64,
    pub max_tick_inside_wall_ms: f64,
    pub instantiate_ms: f64,
    /// Largest linear memory of one instance over the scenario.
    pub peak_memory_bytes: u64,
    pub outbound_requests: u64,
}

/// Store figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreFigures {
    pub reads: u64,
    pub writes: u64,
    pub bytes_written: u64,
    pub keys: usize,
    pub bytes: usize,
    /// `None`: not measured (deterministic check).
    pub keys_after_expiry: Option<usize>,
    pub bytes_after_expiry: Option<usize>,
}

/// Everything measured for one scenario.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScenarioResult {
    pub name: String,
    pub alerts: usize,
    pub reuse_percent: u32,
    pub url_slots: usize,
    pub distinct_urls: usize,
    pub reused_slots: usize,
    pub rounds: usize,
    pub finished: bool,
    pub alerts_commented: usize,
    /// Divisor of the "per alert" figures: all alerts, or when the run was
    /// stopped by its time budget, the alerts written back so far.
    pub per_alert_basis: usize,
    /// The connector's calls by endpoint (`service METHOD /path/{id}`), from
    /// the simulators' call log. Inner requests of a Graph `$batch` are listed
    /// under their own endpoint as well as counted in the `$batch` line.
    pub calls: BTreeMap<String, u64>,
    /// Microsoft operations (Entra, Graph, Defender; `$batch` inner requests
    /// each count, the `$batch` envelope does not).
    pub ms_operations: u64,
    /// Microsoft HTTP round trips (the poller's and defender's outbound requests).
    pub ms_http_requests: u64,
    pub vmray_calls: u64,
    pub vmray_status_calls: u64,
    pub vmray_submits: u64,
    pub vendor: VendorCalls,
    pub components: BTreeMap<String, ComponentFigures>,
    /// Rounds (one tick of each component, one minute apart) from the round
    /// in which the alert was first available to the round its first comment
    /// was written, counting both (1 = same round).
    pub latency_rounds_median: Option<u64>,
    pub latency_rounds_p95: Option<u64>,
    pub latency_rounds_max: Option<u64>,
    pub store: StoreFigures,
    pub seconds: f64,
}

/// How to run a scenario.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub root: PathBuf,
    pub max_rounds: usize,
    /// Also measure expiry (jump the clocks and run more rounds).
    pub expiry: bool,
    pub progress: bool,
    /// Stop after the round that passes this much wall time (the scenario is
    /// then reported as partial, per alert written back).
    pub wall_budget: Option<Duration>,
}

impl RunOptions {
    pub fn new(root: &Path) -> RunOptions {
        RunOptions {
            root: root.to_path_buf(),
            max_rounds: 400,
            expiry: true,
            progress: false,
            wall_budget: None,
        }
    }
}

/// `service METHOD /path` with ids replaced by `{id}`.
pub fn endpoint(c: &CallRecord) -> String {
    const LITERAL: [&str; 4] = ["v1.0", "v2.0", "oauth2", "alerts_v2"];
    let path: Vec<String> = c
        .path
        .split('/')
        .map(|s| {
            if s.bytes().any(|b| b.is_ascii_digit()) && !LITERAL.contains(&s) {
                "{id}".to_string()
            } else {
                s.to_string()
            }
        })
        .collect();
    format!("{} {} {}", c.service.name(), c.method, path.join("/"))
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

fn vars(sims: &Simulators, g: &Generated) -> HashMap<String, String> {
    sims.spin_variables(&g.scenario)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

/// One round: each component once, measured.
fn round(app: &App, figs: &mut BTreeMap<String, ComponentFigures>) -> Result<()> {
    for c in COMPONENTS {
        let cpu0 = thread_cpu();
        let (outcome, m) = app
            .cron_tick_measured(c, app.now_unix_secs())
            .with_context(|| format!("{c} tick"))?;
        let cpu = thread_cpu().saturating_sub(cpu0);
        let f = figs.entry(c.to_string()).or_default();
        f.ticks += 1;
        if outcome.is_err() {
            f.failed_ticks += 1;
        }
        let wall = m.instantiate + m.call;
        let inside = wall.saturating_sub(m.outbound_wait);
        f.wall_ms += ms(wall);
        f.service_wait_ms += ms(m.outbound_wait);
        f.inside_wall_ms += ms(inside);
        f.cpu_ms += ms(cpu);
        f.max_tick_cpu_ms = f.max_tick_cpu_ms.max(ms(cpu));
        f.max_tick_inside_wall_ms = f.max_tick_inside_wall_ms.max(ms(inside));
        f.instantiate_ms += ms(m.instantiate);
        f.peak_memory_bytes = f.peak_memory_bytes.max(m.peak_memory_bytes);
        f.outbound_requests += m.outbound_requests;
    }
    Ok(())
}

fn advance(sims: &Simulators, app: &App, secs: u64) {
    sims.clock().advance_secs(secs);
    app.advance_clock(Duration::from_secs(secs));
}

/// Runs `spec` until every alert is written back (or `max_rounds`).
pub fn run(spec: Spec, opts: &RunOptions) -> Result<ScenarioResult> {
    let started = Instant::now();
    let g = generate(spec);
    let sims = Simulators::start(g.scenario.clone())?;
    let start_time = sims.clock().now();
    let app = App::load(
        &opts.root.join("spin.toml"),
        AppConfig {
            variables: vars(&sims, &g),
            kv: KvBackend::Memory,
            wasm_dir: None,
        },
    )
    .context("loading spin.toml (build the components: scripts/bench.sh does)")?;
    let mut figs: BTreeMap<String, ComponentFigures> = BTreeMap::new();
    let mut rounds = 0;
    let mut finished = false;
    while rounds < opts.max_rounds {
        rounds += 1;
        round(&app, &mut figs)?;
        if rounds > 1 && open_alerts(&app) == 0 {
            let commented = sims.state().comments.len();
            if commented >= g.alerts.len() {
                finished = true;
                break;
            }
        }
        if opts.wall_budget.is_some_and(|b| started.elapsed() > b) {
            break;
        }
        if opts.progress && rounds % 10 == 0 {
            eprintln!(
                "  {} round {rounds}: {} open, {:.0?}",
                spec.name(),
                open_alerts(&app),
                started.elapsed()
            );
        }
        advance(&sims, &app, ROUND_SECS);
    }
    let state: SimState = sims.state();
    let kv = app.kv_stats();
    let (keys, bytes) = app.kv_total_bytes("default");
    let mut r = ScenarioResult {
        name: spec.name(),
        alerts: spec.alerts,
        reuse_percent: spec.reuse_percent,
        url_slots: g.url_slots(),
        distinct_urls: g.urls.len(),
        reused_slots: g.reused_slots(),
        rounds,
        finished,
        alerts_commented: state.comments.len(),
        vendor: vendor::model(&g),
        store: StoreFigures {
            reads: kv.reads(),
            writes: kv.writes(),
            bytes_written: kv.bytes_written,
            keys,
            bytes,
            keys_after_expiry: None,
            bytes_after_expiry: None,
        },
        ..ScenarioResult::default()
    };
    for c in &state.calls {
        *r.calls.entry(endpoint(c)).or_default() += 1;
    }
    for (k, n) in &r.calls {
        if k.starts_with("vmray ") {
            r.vmray_calls += n;
        } else if !k.ends_with("/$batch") {
            r.ms_operations += n;
        }
    }
    r.vmray_status_calls = r
        .calls
        .get("vmray GET /rest/submission/{id}")
        .copied()
        .unwrap_or(0);
    r.vmray_submits = r
        .calls
        .get("vmray POST /rest/sample/submit")
        .copied()
        .unwrap_or(0);
    r.ms_http_requests = ["poller", "defender"]
        .iter()
        .filter_map(|c| figs.get(*c))
        .map(|f| f.outbound_requests)
        .sum();
    let mut lat: Vec<u64> = state
        .comments
        .values()
        .filter_map(|cs| cs.first())
        .filter_map(|c| chrono::DateTime::parse_from_rfc3339(&c.created_date_time).ok())
        .map(|t| {
            let secs = (t.with_timezone(&chrono::Utc) - start_time)
                .num_seconds()
                .max(0) as u64;
            secs / ROUND_SECS + 1
        })
        .collect();
    lat.sort_unstable();
    r.latency_rounds_median = percentile(&lat, 0.5);
    r.latency_rounds_p95 = percentile(&lat, 0.95);
    r.latency_rounds_max = lat.last().copied();
    r.components = figs;
    r.per_alert_basis = if finished {
        spec.alerts
    } else {
        r.alerts_commented
    };

    if opts.expiry {
        advance(&sims, &app, EXPIRY_ADVANCE_DAYS * 86_400);
        let mut scratch = BTreeMap::new();
        for _ in 0..EXPIRY_ROUNDS {
            round(&app, &mut scratch)?;
            advance(&sims, &app, ROUND_SECS);
        }
        let (k, b) = app.kv_total_bytes("default");
        r.store.keys_after_expiry = Some(k);
        r.store.bytes_after_expiry = Some(b);
    }
    r.seconds = started.elapsed().as_secs_f64();
    if r.alerts_commented == 0 && spec.alerts > 0 {
        bail!(
            "{}: no alert was written back in {rounds} rounds; logs:\n{}",
            r.name,
            app.logs()
                .iter()
                .rev()
                .take(40)
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        );
    }
    Ok(r)
}
