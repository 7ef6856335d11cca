//! Helpers shared by the test files: the probe fixture and a manifest using it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use test_host::{App, AppConfig, KvBackend, Stream};

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/wasm")
}

pub fn probe_wasm() -> PathBuf {
    let path = fixtures_dir().join("probe.wasm");
    if !path.exists() {
        panic!(
            "\n\n*** {} is missing: run `test-host/build-fixtures.sh` first ***\n\n",
            path.display()
        );
    }
    path
}

pub const MANIFEST: &str = r#"
spin_manifest_version = 2

[application]
name = "probe-test"

[variables]
upstream = { default = "http://127.0.0.1:1" }
token = { required = true, secret = true }
greeting = { default = "hello" }
writer_action = { default = "" }
nokv_action = { default = "" }

[component.writer]
source = "probe.wasm"
key_value_stores = ["default"]
allowed_outbound_hosts = ["{{ upstream }}"]
[component.writer.variables]
action = "{{ writer_action }}"
token = "Bearer {{ token }}"
greeting = "{{ greeting }}"

[component.reader]
source = "probe.wasm"
key_value_stores = ["default"]

[component.nokv]
source = "probe.wasm"
[component.nokv.variables]
action = "{{ nokv_action }}"

[[trigger.cron]]
component = "writer"
cron_expression = "0 */5 * * * *"

[[trigger.cron]]
component = "nokv"
cron_expression = "30 * * * * *"

[[trigger.http]]
route = "/reader/..."
component = "reader"
"#;

/// A temp dir holding `spin.toml`; removed on drop.
pub struct TempApp {
    pub dir: PathBuf,
}

impl TempApp {
    pub fn new(name: &str, manifest: &str) -> TempApp {
        let dir = std::env::temp_dir().join(format!("test-host-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("spin.toml"), manifest).unwrap();
        TempApp { dir }
    }

    pub fn manifest(&self) -> PathBuf {
        self.dir.join("spin.toml")
    }

    pub fn load(&self, vars: &[(&str, &str)], kv: KvBackend) -> anyhow::Result<App> {
        probe_wasm();
        App::load(
            &self.manifest(),
            AppConfig {
                variables: vars
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<HashMap<_, _>>(),
                kv,
                wasm_dir: Some(fixtures_dir()),
            },
        )
    }
}

impl Drop for TempApp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn load(name: &str, vars: &[(&str, &str)]) -> (TempApp, App) {
    load_kv(name, vars, KvBackend::Memory)
}

/// [`MANIFEST`] with `token` set, `vars` and the key-value backend `kv`.
pub fn load_kv(name: &str, vars: &[(&str, &str)], kv: KvBackend) -> (TempApp, App) {
    let t = TempApp::new(name, MANIFEST);
    let mut all = vec![("token", "t0k")];
    all.extend_from_slice(vars);
    let app = t.load(&all, kv).expect("load");
    (t, app)
}

pub fn lines(app: &App, component: &str, stream: Stream) -> Vec<String> {
    app.logs()
        .into_iter()
        .filter(|l| l.component == component && l.stream == stream)
        .map(|l| l.line)
        .collect()
}
