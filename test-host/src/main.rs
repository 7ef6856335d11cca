//! `test-host`: run a Spin app's components once, from the command line.
//!
//! ```text
//! test-host --manifest spin.toml [--var name=value]... [--kv memory|sqlite:PATH|redis://HOST:PORT/DB]
//!           [--wasm-dir DIR] tick <component> | tick-all [--repeat N]
//! test-host ... http METHOD PATH [--header K:V]... [--body B]
//! ```

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};
use test_host::{App, AppConfig, KvBackend};

const USAGE: &str = "usage: test-host --manifest spin.toml [--var name=value]... [--kv memory|sqlite:PATH|redis://HOST:PORT/DB] [--wasm-dir DIR]
                 (tick <component> | tick-all) [--repeat N]
       test-host ... http METHOD PATH [--header K:V]... [--body B]";

enum Command {
    Tick(Option<String>),
    Http {
        method: String,
        path: String,
        headers: Vec<(String, String)>,
        body: String,
    },
}

struct Args {
    manifest: PathBuf,
    config: AppConfig,
    repeat: usize,
    command: Command,
}

fn value(args: &mut impl Iterator<Item = String>, flag: &str) -> Result<String> {
    args.next()
        .with_context(|| format!("{flag} needs a value\n{USAGE}"))
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args> {
    let mut manifest = None;
    let mut config = AppConfig::default();
    let mut repeat = 1;
    let mut positional = Vec::new();
    let mut headers = Vec::new();
    let mut body = String::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--manifest" => manifest = Some(PathBuf::from(value(&mut args, &arg)?)),
            "--var" => {
                let v = value(&mut args, &arg)?;
                let (k, v) = v.split_once('=').context("--var needs name=value")?;
                config.variables.insert(k.to_string(), v.to_string());
            }
            "--kv" => {
                let v = value(&mut args, &arg)?;
                config.kv = match v.strip_prefix("sqlite:") {
                    Some(path) => KvBackend::Sqlite(path.into()),
                    None if v == "memory" => KvBackend::Memory,
                    None if v.starts_with("redis://") => KvBackend::Redis(v),
                    None => bail!("--kv must be memory, sqlite:PATH or redis://HOST:PORT/DB"),
                };
            }
            "--wasm-dir" => config.wasm_dir = Some(value(&mut args, &arg)?.into()),
            "--repeat" => repeat = value(&mut args, &arg)?.parse().context("--repeat N")?,
            "--header" => {
                let v = value(&mut args, &arg)?;
                let (k, v) = v.split_once(':').context("--header needs K:V")?;
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
            "--body" => body = value(&mut args, &arg)?,
            "-h" | "--help" => bail!("{USAGE}"),
            _ => positional.push(arg),
        }
    }
    let command = match positional.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["tick", component] => Command::Tick(Some(component.to_string())),
        ["tick-all"] => Command::Tick(None),
        ["http", method, path] => Command::Http {
            method: method.to_string(),
            path: path.to_string(),
            headers,
            body,
        },
        _ => bail!("{USAGE}"),
    };
    Ok(Args {
        manifest: manifest.context(USAGE)?,
        config,
        repeat,
        command,
    })
}

fn main() -> Result<()> {
    let args = parse_args(std::env::args().skip(1))?;
    let app = App::load(&args.manifest, args.config)?;
    let mut failed = false;
    for _ in 0..args.repeat {
        match &args.command {
            Command::Tick(which) => {
                let components: Vec<String> = match which {
                    Some(c) => vec![c.clone()],
                    None => app.cron_components().into_iter().map(|(c, _)| c).collect(),
                };
                for c in components {
                    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
                    let outcome = app.cron_tick(&c, now);
                    match &outcome {
                        Ok(Ok(())) => println!("tick {c}: ok"),
                        Ok(Err(e)) => println!("tick {c}: error: {e}"),
                        Err(e) => println!("tick {c}: trap: {e:#}"),
                    }
                    failed |= !matches!(outcome, Ok(Ok(())));
                }
            }
            Command::Http {
                method,
                path,
                headers,
                body,
            } => {
                let headers: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let resp = app.http(method, path, &headers, body.as_bytes())?;
                println!("HTTP {}", resp.status);
                for (k, v) in &resp.headers {
                    println!("{k}: {v}");
                }
                println!();
                println!("{}", resp.body_text());
                failed |= resp.status >= 500;
            }
        }
    }
    eprintln!("--- logs ---");
    for line in app.logs() {
        eprintln!("{line}");
    }
    eprintln!("kv calls: {:?}", app.kv_stats());
    for (component, url) in app.denied_requests() {
        eprintln!("denied: {component} -> {url}");
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}
