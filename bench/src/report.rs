//! The machine, the static figures (sizes, start-up), the table and the JSON.

use crate::by_label;
use crate::run::{ScenarioResult, COMPONENTS};
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use test_host::{App, AppConfig, KvBackend};

/// Each component at most this big.
pub const SIZE_TARGET: u64 = 1_572_864;
/// One tick of the 1,000-alert scenarios under this much CPU.
pub const TICK_CPU_TARGET_MS: f64 = 1_000.0;
/// Microsoft HTTP requests per alert at 1,000 alerts.
pub const MS_PER_ALERT_TARGET: f64 = 1.5;
/// VMRay calls per reused URL.
pub const VMRAY_REUSED_TARGET: f64 = 1.0;
/// VMRay calls per new URL, status look-ups aside.
pub const VMRAY_NEW_TARGET: f64 = 7.0;
/// Instantiations timed per component.
pub const INSTANTIATIONS: usize = 20;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub date: String,
    pub load_average: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Machine {
            nproc: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            cpu_model: cpuinfo
                .lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default(),
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            load_average: std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// Size and start-up of one component.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ComponentStatic {
    pub name: String,
    pub wasm_bytes: u64,
    pub compile_ms: f64,
    pub instantiate_pre_ms: f64,
    pub first_instantiate_ms: f64,
    pub instantiate_median_ms: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub machine: Machine,
    /// `[profile.release]` of the workspace (the `.wasm` build).
    pub release_profile: String,
    pub components: Vec<ComponentStatic>,
    pub scenarios: Vec<ScenarioResult>,
}

/// The `[profile.release]` settings, one line.
pub fn release_profile(root: &Path) -> String {
    let text = std::fs::read_to_string(root.join("Cargo.toml")).unwrap_or_default();
    text.lines()
        .skip_while(|l| l.trim() != "[profile.release]")
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sizes of the release `.wasm` files, and compile / instantiation times on
/// the test host's engine (the real host imports; nothing is called).
pub fn statics(root: &Path) -> Result<Vec<ComponentStatic>> {
    let mut vars = HashMap::new();
    for (k, v) in [
        ("tenant_id", "00000000-0000-0000-0000-0000000000aa"),
        ("client_id", "11111111-1111-1111-1111-111111111111"),
        ("client_secret", "bench-secret"),
        ("vmray_api_key", "bench-key"),
        ("login_base_url", "http://127.0.0.1:9"),
        ("graph_base_url", "http://127.0.0.1:9"),
        ("defender_base_url", "http://127.0.0.1:9"),
        ("vmray_base_url", "http://127.0.0.1:9"),
    ] {
        vars.insert(k.to_string(), v.to_string());
    }
    let app = App::load(
        &root.join("spin.toml"),
        AppConfig {
            variables: vars,
            kv: KvBackend::Memory,
            wasm_dir: None,
        },
    )?;
    let mut out = Vec::new();
    for c in COMPONENTS {
        let wasm = root.join(format!("target/wasm32-wasip2/release/{c}.wasm"));
        let bytes = std::fs::metadata(&wasm)
            .with_context(|| format!("{} (build the components first)", wasm.display()))?
            .len();
        let t = app.instantiation_times(c, &wasm, INSTANTIATIONS)?;
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        out.push(ComponentStatic {
            name: c.to_string(),
            wasm_bytes: bytes,
            compile_ms: ms(t.compile),
            instantiate_pre_ms: ms(t.instantiate_pre),
            first_instantiate_ms: ms(t.first_instantiate),
            instantiate_median_ms: ms(t.median()),
        });
    }
    Ok(out)
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "not met"
    }
}

fn f2(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn div(a: u64, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// VMRay calls per new URL, status look-ups aside: every VMRay call but the
/// status look-ups over the distinct URLs (with reuse, the reused URLs' calls
/// are in it too: an upper bound).
fn vmray_new(total: u64, status: u64, distinct: usize) -> f64 {
    div(total.saturating_sub(status), distinct)
}

/// VMRay calls per reused URL, estimated: the calls beyond what the distinct
/// URLs cost at the 0 % reuse scenario's rate, over the reused URL slots.
fn vmray_reused(r: &ScenarioResult, rate_new: Option<f64>, total: u64, status: u64) -> String {
    match rate_new {
        Some(rate) if r.reused_slots > 0 => {
            let extra = total.saturating_sub(status) as f64 - rate * r.distinct_urls as f64;
            f2(extra / r.reused_slots as f64)
        }
        _ => "–".into(),
    }
}

impl Report {
    fn r0_rate(&self, alerts: usize, ours: bool) -> Option<f64> {
        self.scenarios
            .iter()
            .find(|s| s.alerts == alerts && s.reuse_percent == 0)
            .map(|s| {
                if ours {
                    vmray_new(s.vmray_calls, s.vmray_status_calls, s.distinct_urls)
                } else {
                    vmray_new(
                        s.vendor.vmray_total(),
                        s.vendor.vmray.get("status").copied().unwrap_or(0),
                        s.distinct_urls,
                    )
                }
            })
    }

    /// The Markdown table (plus the machine and build lines above it).
    pub fn table(&self) -> String {
        let mut o = String::new();
        let m = &self.machine;
        let _ = writeln!(
            o,
            "Machine: {} × {} (nproc {}), load {}, {}. Components: release `.wasm` ({}); host: test host on wasmtime 48 (Cranelift), native debug build.\n",
            m.nproc, m.cpu_model, m.nproc, m.load_average, m.date, self.release_profile
        );
        let s = &self.scenarios;
        let mut head = String::from("| figure | target |");
        let mut rule = String::from("|---|---|");
        for r in s {
            let _ = write!(head, " {} alerts, {} % reuse |", r.alerts, r.reuse_percent);
            rule.push_str("---:|");
        }
        head.push_str(" result |");
        rule.push_str("---|");
        let _ = writeln!(o, "{head}\n{rule}");
        let ncols = s.len();
        let mut row = |name: &str, target: &str, cells: Vec<String>, result: String| {
            let _ = write!(o, "| {name} | {target} |");
            for i in 0..ncols {
                let _ = write!(o, " {} |", cells.get(i).map(String::as_str).unwrap_or(""));
            }
            let _ = writeln!(o, " {result} |");
        };
        type Row<'a> = dyn FnMut(&str, &str, Vec<String>, String) + 'a;
        let section = |row: &mut Row, t: &str| {
            row(&format!("**{t}**"), "", vec![], String::new());
        };

        // Shape.
        section(&mut row, "Scenario");
        row(
            "URL slots / distinct URLs",
            "",
            s.iter()
                .map(|r| format!("{} / {}", r.url_slots, r.distinct_urls))
                .collect(),
            String::new(),
        );
        row(
            "rounds until all written back",
            "",
            s.iter()
                .map(|r| {
                    if r.finished {
                        r.rounds.to_string()
                    } else {
                        format!(
                            "stopped after {} (time budget): {} written back; per-alert figures per alert written back",
                            r.rounds, r.alerts_commented
                        )
                    }
                })
                .collect(),
            String::new(),
        );

        // API economy.
        section(&mut row, "API economy (ours · vendor model)");
        let at_1000: Vec<&ScenarioResult> = s.iter().filter(|r| r.alerts == 1_000).collect();
        let ms_ok = !at_1000.is_empty()
            && at_1000
                .iter()
                .all(|r| div(r.ms_http_requests, r.per_alert_basis) <= MS_PER_ALERT_TARGET);
        row(
            "Microsoft HTTP requests / alert",
            "≤ 1.5 at 1,000",
            s.iter()
                .map(|r| {
                    format!(
                        "{} · {}",
                        f2(div(r.ms_http_requests, r.per_alert_basis)),
                        f2(div(r.vendor.microsoft_total(), r.alerts))
                    )
                })
                .collect(),
            if at_1000.is_empty() {
                "n/a (1,000-alert scenarios not run)".into()
            } else {
                met(ms_ok).into()
            },
        );
        row(
            "Microsoft operations / alert ($batch items each)",
            "",
            s.iter()
                .map(|r| f2(div(r.ms_operations, r.per_alert_basis)))
                .collect(),
            String::new(),
        );
        let labelled: Vec<_> = s.iter().map(|r| by_label(&r.calls)).collect();
        let mut ms_labels: Vec<String> = labelled
            .iter()
            .flat_map(|(m, _)| m.keys().cloned())
            .chain(s.iter().flat_map(|r| r.vendor.microsoft.keys().cloned()))
            .collect();
        ms_labels.sort();
        ms_labels.dedup();
        for l in &ms_labels {
            row(
                &format!("  {l} / alert"),
                "",
                s.iter()
                    .zip(&labelled)
                    .map(|(r, (m, _))| {
                        format!(
                            "{} · {}",
                            f2(div(m.get(l).copied().unwrap_or(0), r.per_alert_basis)),
                            f2(div(
                                r.vendor.microsoft.get(l).copied().unwrap_or(0),
                                r.alerts
                            ))
                        )
                    })
                    .collect(),
                String::new(),
            );
        }
        let new_ours: Vec<f64> = s
            .iter()
            .map(|r| vmray_new(r.vmray_calls, r.vmray_status_calls, r.distinct_urls))
            .collect();
        row(
            "VMRay calls / new URL, status look-ups aside",
            "≤ 7",
            s.iter()
                .zip(&new_ours)
                .map(|(r, n)| {
                    if !r.finished {
                        return "– (stopped)".to_string();
                    }
                    let v = vmray_new(
                        r.vendor.vmray_total(),
                        r.vendor.vmray.get("status").copied().unwrap_or(0),
                        r.distinct_urls,
                    );
                    format!("{} · {}", f2(*n), f2(v))
                })
                .collect(),
            met(s
                .iter()
                .zip(&new_ours)
                .all(|(r, n)| !r.finished || *n <= VMRAY_NEW_TARGET))
            .into(),
        );
        row(
            "VMRay status look-ups / new URL",
            "1 per tick while running (analysis: 2 rounds)",
            s.iter()
                .map(|r| {
                    format!(
                        "{} · {}",
                        f2(div(r.vmray_status_calls, r.distinct_urls)),
                        f2(div(
                            r.vendor.vmray.get("status").copied().unwrap_or(0),
                            r.distinct_urls
                        ))
                    )
                })
                .collect(),
            met(s
                .iter()
                .all(|r| div(r.vmray_status_calls, r.distinct_urls) <= 2.0))
            .into(),
        );
        let mut reused_ok = true;
        let mut reused_any = false;
        let reused_cells: Vec<String> = s
            .iter()
            .map(|r| {
                if !r.finished {
                    return "– (stopped)".to_string();
                }
                let ours = vmray_reused(
                    r,
                    self.r0_rate(r.alerts, true),
                    r.vmray_calls,
                    r.vmray_status_calls,
                );
                if let Ok(v) = ours.parse::<f64>() {
                    reused_any = true;
                    reused_ok &= v <= VMRAY_REUSED_TARGET;
                }
                let vendor = vmray_reused(
                    r,
                    self.r0_rate(r.alerts, false),
                    r.vendor.vmray_total(),
                    r.vendor.vmray.get("status").copied().unwrap_or(0),
                );
                format!("{ours} · {vendor}")
            })
            .collect();
        row(
            "VMRay calls / reused URL (estimated)",
            "≤ 1",
            reused_cells,
            if reused_any {
                met(reused_ok).into()
            } else {
                "n/a".into()
            },
        );
        let mut vm_labels: Vec<String> = labelled
            .iter()
            .flat_map(|(_, v)| v.keys().cloned())
            .chain(s.iter().flat_map(|r| r.vendor.vmray.keys().cloned()))
            .collect();
        vm_labels.sort();
        vm_labels.dedup();
        for l in &vm_labels {
            row(
                &format!("  VMRay {l} / distinct URL"),
                "",
                s.iter()
                    .zip(&labelled)
                    .map(|(r, (_, v))| {
                        format!(
                            "{} · {}",
                            f2(div(v.get(l).copied().unwrap_or(0), r.distinct_urls)),
                            f2(div(
                                r.vendor.vmray.get(l).copied().unwrap_or(0),
                                r.distinct_urls
                            ))
                        )
                    })
                    .collect(),
                String::new(),
            );
        }

        // Speed.
        section(
            &mut row,
            "Speed (inside the components; service latency apart)",
        );
        let cpu_1000: Vec<f64> = at_1000
            .iter()
            .flat_map(|r| r.components.values().map(|c| c.max_tick_cpu_ms))
            .collect();
        row(
            "largest CPU of one tick, ms",
            "< 1,000 at 1,000 alerts",
            s.iter()
                .map(|r| {
                    let (c, v) = r
                        .components
                        .iter()
                        .map(|(c, f)| (c.as_str(), f.max_tick_cpu_ms))
                        .fold(("", 0.0), |a, b| if b.1 > a.1 { b } else { a });
                    format!("{} ({c})", f2(v))
                })
                .collect(),
            if cpu_1000.is_empty() {
                "n/a (1,000-alert scenarios not run)".into()
            } else {
                met(cpu_1000.iter().all(|v| *v < TICK_CPU_TARGET_MS)).into()
            },
        );
        for c in COMPONENTS {
            row(
                &format!("{c}: CPU / tick, ms (mean · max)"),
                "",
                s.iter()
                    .map(|r| {
                        r.components
                            .get(c)
                            .map(|f| {
                                format!(
                                    "{} · {}",
                                    f2(f.cpu_ms / f.ticks.max(1) as f64),
                                    f2(f.max_tick_cpu_ms)
                                )
                            })
                            .unwrap_or_default()
                    })
                    .collect(),
                String::new(),
            );
            row(
                &format!("{c}: wall inside / tick, ms (mean · max)"),
                "",
                s.iter()
                    .map(|r| {
                        r.components
                            .get(c)
                            .map(|f| {
                                format!(
                                    "{} · {}",
                                    f2(f.inside_wall_ms / f.ticks.max(1) as f64),
                                    f2(f.max_tick_inside_wall_ms)
                                )
                            })
                            .unwrap_or_default()
                    })
                    .collect(),
                String::new(),
            );
        }
        let sum = |r: &ScenarioResult, f: fn(&crate::run::ComponentFigures) -> f64| -> f64 {
            r.components.values().map(f).sum()
        };
        row(
            "all components: CPU / alert, ms",
            "",
            s.iter()
                .map(|r| f2(sum(r, |f| f.cpu_ms) / r.per_alert_basis.max(1) as f64))
                .collect(),
            String::new(),
        );
        row(
            "all components: wall inside / alert, ms",
            "",
            s.iter()
                .map(|r| f2(sum(r, |f| f.inside_wall_ms) / r.per_alert_basis.max(1) as f64))
                .collect(),
            String::new(),
        );
        row(
            "simulators' latency (waiting for responses) / alert, ms",
            "(excluded above)",
            s.iter()
                .map(|r| f2(sum(r, |f| f.service_wait_ms) / r.per_alert_basis.max(1) as f64))
                .collect(),
            String::new(),
        );
        row(
            "alert → comment, rounds (median · p95 · max)",
            "",
            s.iter()
                .map(|r| {
                    let o = |x: Option<u64>| x.map(|v| v.to_string()).unwrap_or("–".into());
                    format!(
                        "{} · {} · {}",
                        o(r.latency_rounds_median),
                        o(r.latency_rounds_p95),
                        o(r.latency_rounds_max)
                    )
                })
                .collect(),
            String::new(),
        );

        // Size and start.
        section(&mut row, "Size and start");
        for c in &self.components {
            row(
                &format!("{}.wasm, bytes", c.name),
                "≤ 1.5 MiB",
                vec![],
                format!(
                    "{} ({:.2} MiB) — {}",
                    c.wasm_bytes,
                    c.wasm_bytes as f64 / 1_048_576.0,
                    met(c.wasm_bytes <= SIZE_TARGET)
                ),
            );
            row(
                &format!(
                    "{}: compile · InstancePre · 1st · median instantiate, ms",
                    c.name
                ),
                "",
                vec![],
                format!(
                    "{} · {} · {} · {}",
                    f2(c.compile_ms),
                    f2(c.instantiate_pre_ms),
                    f2(c.first_instantiate_ms),
                    f2(c.instantiate_median_ms)
                ),
            );
        }
        for c in COMPONENTS {
            row(
                &format!("{c}: peak linear memory, MiB"),
                "",
                s.iter()
                    .map(|r| {
                        r.components
                            .get(c)
                            .map(|f| format!("{:.2}", f.peak_memory_bytes as f64 / 1_048_576.0))
                            .unwrap_or_default()
                    })
                    .collect(),
                String::new(),
            );
        }

        // Store.
        section(&mut row, "Store");
        row(
            "KV reads · writes / alert",
            "",
            s.iter()
                .map(|r| {
                    format!(
                        "{} · {}",
                        f2(div(r.store.reads, r.per_alert_basis)),
                        f2(div(r.store.writes, r.per_alert_basis))
                    )
                })
                .collect(),
            String::new(),
        );
        row(
            "keys · KiB left after the scenario",
            "",
            s.iter()
                .map(|r| format!("{} · {:.0}", r.store.keys, r.store.bytes as f64 / 1024.0))
                .collect(),
            String::new(),
        );
        row(
            &format!(
                "keys · KiB after expiry (+{} days, {} rounds)",
                crate::run::EXPIRY_ADVANCE_DAYS,
                crate::run::EXPIRY_ROUNDS
            ),
            "",
            s.iter()
                .map(
                    |r| match (r.store.keys_after_expiry, r.store.bytes_after_expiry) {
                        (Some(k), Some(_)) if k >= r.store.keys => {
                            "n/a: no expiry (no key removed)".into()
                        }
                        (Some(k), Some(b)) => format!("{k} · {:.0}", b as f64 / 1024.0),
                        _ => "not measured".into(),
                    },
                )
                .collect(),
            String::new(),
        );
        o
    }
}

/// The deterministic check's baseline: each 10-alert scenario's calls by endpoint.
pub fn baseline_of(results: &[ScenarioResult]) -> BTreeMap<String, BTreeMap<String, u64>> {
    results
        .iter()
        .filter(|r| r.alerts == 10)
        .map(|r| (r.name.clone(), r.calls.clone()))
        .collect()
}

pub fn write_baseline(results: &[ScenarioResult]) -> Result<()> {
    let b = baseline_of(results);
    anyhow::ensure!(!b.is_empty(), "no 10-alert scenario was run");
    let text = serde_json::to_string_pretty(&b)? + "\n";
    std::fs::write(crate::baseline_path(), text)?;
    Ok(())
}

pub fn read_baseline() -> Result<BTreeMap<String, BTreeMap<String, u64>>> {
    let p = crate::baseline_path();
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    Ok(serde_json::from_str(&text)?)
}
