//! `simulators --demo` or `simulators --scenario FILE [--entra-port N --graph-port N
//! --defender-port N --vmray-port N]`: prints one JSON line with the four base URLs on stdout,
//! then serves until killed.

use anyhow::{bail, Context};
use simulators::{Ports, Scenario, Simulators};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut scenario = None;
    let mut ports = Ports::default();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--demo" => scenario = Some(Scenario::demo()),
            "--scenario" => {
                let path = value("--scenario")?;
                scenario = Some(Scenario::from_file(std::path::Path::new(&path))?);
            }
            "--entra-port" => ports.entra = value(&arg)?.parse().context("--entra-port")?,
            "--graph-port" => ports.graph = value(&arg)?.parse().context("--graph-port")?,
            "--defender-port" => {
                ports.defender = value(&arg)?.parse().context("--defender-port")?
            }
            "--vmray-port" => ports.vmray = value(&arg)?.parse().context("--vmray-port")?,
            "-h" | "--help" => {
                println!("usage: simulators (--demo | --scenario FILE) [--entra-port N] [--graph-port N] [--defender-port N] [--vmray-port N]");
                return Ok(());
            }
            other => bail!("unknown argument '{other}' (try --help)"),
        }
    }
    let Some(scenario) = scenario else {
        bail!("give --demo or --scenario FILE (try --help)");
    };
    let sims = Simulators::start_on(scenario, ports)?;
    let b = sims.bases();
    println!(
        "{}",
        serde_json::json!({"entra": b.entra, "graph": b.graph, "defender": b.defender, "vmray": b.vmray})
    );
    use std::io::Write;
    std::io::stdout().flush()?;
    loop {
        std::thread::park();
    }
}
