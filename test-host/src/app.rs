//! [`App`]: a loaded `spin.toml` whose components can be ticked and called.

use crate::clock::ClockOffset;
use crate::host::{self, ComponentInfo, HostState, KvFaultState, Shared};
use crate::kv::{KvBackend, KvFaults, KvStats, KvStores};
use crate::logs::{LogBook, LogLine, Stream};
use crate::manifest::Manifest;
use crate::outbound::AllowedHosts;
use crate::routes::{self, Route};
use crate::variables;
use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::WasiHttpView;

mod cron_bindings {
    wasmtime::component::bindgen!({
        // The very WIT the components export (the repository's `wit/`).
        path: "../wit",
        world: "spin-cron",
        exports: { default: async },
    });
}

use cron_bindings::spin::cron::cron_types::{Error as CronError, Metadata};
use cron_bindings::SpinCronPre;

mod measured;

/// How long an HTTP request may take, guest included, before the host gives up.
const HTTP_CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// How to load an application.
#[derive(Debug, Clone, Default)]
pub struct AppConfig {
    /// Application variable values, like `SPIN_VARIABLE_*` (key: lower snake name).
    pub variables: HashMap<String, String>,
    pub kv: KvBackend,
    /// Where component `source` paths are resolved (default: the manifest's directory).
    pub wasm_dir: Option<PathBuf>,
}

/// The response of [`App::http`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

struct LoadedComponent {
    info: Arc<ComponentInfo>,
    cron: Option<SpinCronPre<HostState>>,
    http: Option<ProxyPre<HostState>>,
}

/// A loaded application. Every call runs a fresh instance of the component,
/// as Spin does; the key-value stores, logs and clock are shared.
pub struct App {
    runtime: tokio::runtime::Runtime,
    engine: Engine,
    components: BTreeMap<String, LoadedComponent>,
    cron: Vec<(String, String)>,
    routes: Vec<Route>,
    shared: Arc<Shared>,
}

/// One engine per process, so compiled components can be shared between
/// `App`s (crash and fault suites load the same components hundreds of times).
fn engine() -> Result<Engine> {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    if let Some(e) = ENGINE.get() {
        return Ok(e.clone());
    }
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.wasm_component_model_async(true);
    let engine =
        Engine::new(&config).map_err(|e| anyhow!("creating the wasmtime engine: {e:?}"))?;
    Ok(ENGINE.get_or_init(|| engine).clone())
}

/// Compile a `.wasm` file once per process and contents (keyed by path,
/// size and modification time, so a rebuilt file is compiled again).
fn compile_cached(engine: &Engine, path: &Path) -> Result<Component> {
    type Key = (PathBuf, u64, Option<std::time::SystemTime>);
    static CACHE: OnceLock<Mutex<HashMap<Key, Component>>> = OnceLock::new();
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let key = (path.to_path_buf(), meta.len(), meta.modified().ok());
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some(c) = cache.lock().expect("component cache").get(&key) {
        return Ok(c.clone());
    }
    let component = Component::from_file(engine, path).map_err(wasm_err)?;
    cache
        .lock()
        .expect("component cache")
        .insert(key, component.clone());
    Ok(component)
}

fn wasm_err(e: wasmtime::Error) -> anyhow::Error {
    anyhow!("{e:?}")
}

impl App {
    /// Parses `manifest`, resolves variables and allowed hosts, and compiles and
    /// links every triggered component once.
    pub fn load(manifest_path: &Path, config: AppConfig) -> Result<App> {
        let manifest = Manifest::from_file(manifest_path)?;
        let app_values = variables::resolve_app_variables(&manifest, &config.variables)?;
        let base_dir = match &config.wasm_dir {
            Some(dir) => dir.clone(),
            None => manifest_path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        };
        let shared = Arc::new(Shared {
            kv: KvStores::open(&config.kv)?,
            logs: LogBook::new(std::env::var("TEST_HOST_ECHO").is_ok_and(|v| v == "1")),
            clock: ClockOffset::default(),
            denied: Mutex::default(),
            trap_after_kv_writes: Mutex::default(),
            kv_faults: Mutex::default(),
            kv_stats: Mutex::default(),
        });

        let engine = engine()?;
        let mut linker = Linker::new(&engine);
        host::add_to_linker(&mut linker)?;

        let mut routes = Vec::new();
        for t in &manifest.http {
            routes.push(Route::new(&t.route, &t.component)?);
        }
        let mut components = BTreeMap::new();
        let triggered: Vec<&String> = manifest
            .cron
            .iter()
            .map(|t| &t.component)
            .chain(manifest.http.iter().map(|t| &t.component))
            .collect();
        for id in triggered {
            if components.contains_key(id) {
                continue;
            }
            let decl = &manifest.components[id];
            let info = ComponentInfo {
                id: id.clone(),
                variables: variables::resolve_component_variables(
                    id,
                    &decl.variables,
                    &app_values,
                )?,
                kv_stores: decl.key_value_stores.iter().cloned().collect(),
                allowed_hosts: AllowedHosts::resolve(&decl.allowed_outbound_hosts, &app_values)
                    .with_context(|| format!("component {id:?}"))?,
            };
            let source = base_dir.join(&decl.source);
            let component = compile_cached(&engine, &source)
                .with_context(|| format!("component {id:?}: compiling {}", source.display()))?;
            let pre = linker
                .instantiate_pre(&component)
                .map_err(wasm_err)
                .with_context(|| {
                    format!("component {id:?}: an import is not provided by the test host")
                })?;
            let cron = if manifest.cron.iter().any(|t| &t.component == id) {
                Some(
                    SpinCronPre::new(pre.clone())
                        .map_err(wasm_err)
                        .with_context(|| {
                            format!("component {id:?} has a cron trigger but does not export spin:cron handle-cron-event")
                        })?,
                )
            } else {
                None
            };
            let http = if manifest.http.iter().any(|t| &t.component == id) {
                Some(ProxyPre::new(pre).map_err(wasm_err).with_context(|| {
                    format!("component {id:?} has an http trigger but does not export wasi:http/incoming-handler")
                })?)
            } else {
                None
            };
            components.insert(
                id.clone(),
                LoadedComponent {
                    info: Arc::new(info),
                    cron,
                    http,
                },
            );
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        Ok(App {
            runtime,
            engine,
            components,
            cron: manifest
                .cron
                .iter()
                .map(|t| (t.component.clone(), t.cron_expression.clone()))
                .collect(),
            routes,
            shared,
        })
    }

    fn component(&self, id: &str) -> Result<&LoadedComponent> {
        self.components
            .get(id)
            .with_context(|| format!("no triggered component {id:?} in the manifest"))
    }

    /// Runs one cron event in a fresh instance of `component_id`.
    ///
    /// Outer `Err`: the guest trapped or the host failed (the message has the
    /// trap). Inner `Err`: the component returned `error::other(message)`.
    pub fn cron_tick(&self, component_id: &str, timestamp: u64) -> Result<Result<(), String>> {
        let component = self.component(component_id)?;
        let pre = component
            .cron
            .as_ref()
            .with_context(|| format!("component {component_id:?} has no cron trigger"))?;
        let mut store = Store::new(
            &self.engine,
            HostState::new(component.info.clone(), self.shared.clone()),
        );
        let outcome = self.runtime.block_on(async {
            let instance = pre.instantiate_async(&mut store).await?;
            store
                .run_concurrent(async |accessor| {
                    instance
                        .call_handle_cron_event(accessor, Metadata { timestamp })
                        .await
                })
                .await?
        });
        store.data().finish_logs();
        match outcome {
            Ok(Ok(())) => Ok(Ok(())),
            Ok(Err(CronError::Other(message))) => Ok(Err(message)),
            Err(trap) => {
                let message = format!("{trap:?}");
                self.shared.logs.push(
                    component_id,
                    Stream::Host,
                    format!("cron event failed: {message}"),
                );
                bail!("component {component_id:?} trapped in handle-cron-event: {message}")
            }
        }
    }

    /// Sends one request through the `[[trigger.http]]` routes (404 if none
    /// matches, as Spin answers).
    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<HttpResponse> {
        let path_only = path.split('?').next().unwrap_or(path);
        let Some(found) = routes::find(&self.routes, path_only) else {
            return Ok(HttpResponse {
                status: 404,
                headers: Vec::new(),
                body: b"Not Found".to_vec(),
            });
        };
        let component_id = found.route.component.clone();
        let component = self.component(&component_id)?;
        let pre = component
            .http
            .clone()
            .with_context(|| format!("component {component_id:?} has no http trigger"))?;

        let authority = "127.0.0.1:3000";
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{authority}{path}"))
            .header("host", authority)
            .header("spin-full-url", format!("http://{authority}{path}"))
            .header("spin-path-info", &found.path_info)
            .header("spin-matched-route", &found.route.route)
            .header("spin-raw-component-route", &found.route.route)
            .header("spin-component-route", &found.component_route)
            .header("spin-base-path", "/")
            .header("spin-client-addr", "127.0.0.1:0");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request
            .body(Full::new(Bytes::copy_from_slice(body)))
            .context("building the request")?;

        let mut store = Store::new(
            &self.engine,
            HostState::new(component.info.clone(), self.shared.clone()),
        );
        let logs = self.shared.logs.clone();
        let id = component_id.clone();
        self.runtime.block_on(async move {
            let req = store
                .data_mut()
                .http()
                .new_incoming_request(Scheme::Http, request)
                .map_err(wasm_err)?;
            let (tx, rx) = tokio::sync::oneshot::channel();
            let out = store
                .data_mut()
                .http()
                .new_response_outparam(tx)
                .map_err(wasm_err)?;
            let task = tokio::spawn(async move {
                let result = async {
                    let proxy = pre.instantiate_async(&mut store).await?;
                    proxy
                        .wasi_http_incoming_handler()
                        .call_handle(&mut store, req, out)
                        .await
                }
                .await;
                store.data().finish_logs();
                result.map_err(|e| format!("{e:?}"))
            });
            let call = async {
                match rx.await {
                    Ok(Ok(response)) => {
                        let (parts, body) = response.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map_err(|e| anyhow!("reading the response body: {e:?}"))?
                            .to_bytes();
                        Ok(HttpResponse {
                            status: parts.status.as_u16(),
                            headers: parts
                                .headers
                                .iter()
                                .map(|(k, v)| {
                                    (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into())
                                })
                                .collect(),
                            body: body.to_vec(),
                        })
                    }
                    Ok(Err(code)) => bail!("component {id:?} answered with error {code:?}"),
                    Err(_) => Err(anyhow!(
                        "component {id:?} never called response-outparam::set"
                    )),
                }
            };
            let response = tokio::time::timeout(HTTP_CALL_TIMEOUT, call)
                .await
                .map_err(|_| anyhow!("component {id:?}: request timed out"))?;
            let guest = task.await.context("joining the guest task")?;
            if let Err(trap) = &guest {
                logs.push(&id, Stream::Host, format!("http handler failed: {trap}"));
            }
            match (response, guest) {
                (Ok(r), _) => Ok(r),
                (Err(e), Err(trap)) => Err(e.context(format!("trap: {trap}"))),
                (Err(e), Ok(())) => Err(e),
            }
        })
    }

    /// `(component id, cron_expression)` for each `[[trigger.cron]]`.
    pub fn cron_components(&self) -> Vec<(String, String)> {
        self.cron.clone()
    }

    /// `(route, component id)` for each `[[trigger.http]]`.
    pub fn http_routes(&self) -> Vec<(String, String)> {
        self.routes
            .iter()
            .map(|r| (r.route.clone(), r.component.clone()))
            .collect()
    }

    /// Every line the guests wrote to stdout/stderr, plus the host's lines.
    pub fn logs(&self) -> Vec<LogLine> {
        self.shared.logs.lines()
    }

    /// `(component, url)` of every outbound request refused by `allowed_outbound_hosts`.
    pub fn denied_requests(&self) -> Vec<(String, String)> {
        self.shared.denied.lock().unwrap().clone()
    }

    /// Keys of the store `label`, sorted.
    pub fn kv_keys(&self, label: &str) -> Vec<String> {
        self.shared.kv.keys(label).unwrap_or_default()
    }

    pub fn kv_get(&self, label: &str, key: &str) -> Option<Vec<u8>> {
        self.shared.kv.get(label, key).ok().flatten()
    }

    /// Writes a value directly (test setup), bypassing every component's grants.
    pub fn kv_set(&self, label: &str, key: &str, value: &[u8]) -> Result<()> {
        self.shared.kv.set(label, key, value)
    }

    /// Moves the wall clock the guests see forward by `d` (cumulative).
    pub fn advance_clock(&self, d: Duration) {
        self.shared.clock.advance(d);
    }

    /// Unix seconds of the guests' (shifted) wall clock.
    pub fn now_unix_secs(&self) -> u64 {
        self.shared.clock.now_unix_secs()
    }

    /// The next guest call (cron tick or HTTP request) may make `n` KV
    /// `set`/`delete` calls; the `(n+1)`-th traps the guest instead of being
    /// applied. One-shot: the call after that runs normally. `None` clears it.
    pub fn set_trap_after_kv_writes(&self, n: Option<usize>) {
        *self.shared.trap_after_kv_writes.lock().unwrap() = n;
    }

    /// Injects `faults` into every later guest KV call until replaced (see
    /// [`KvFaults`] for each kind); restarts the `fail_every_nth_op` count.
    /// `KvFaults::default()` clears them.
    ///
    /// # Panics
    /// If `fail_every_nth_op` is `Some(0)`.
    pub fn set_kv_faults(&self, faults: KvFaults) {
        assert!(
            faults.fail_every_nth_op != Some(0),
            "KvFaults::fail_every_nth_op must be at least 1"
        );
        *self.shared.kv_faults.lock().unwrap() = KvFaultState { faults, ops: 0 };
    }

    /// Same as `set_kv_faults(KvFaults::default())`.
    pub fn clear_kv_faults(&self) {
        self.set_kv_faults(KvFaults::default());
    }

    /// Marks the current content of every store (all labels) as the state a
    /// store without persistence comes back with after a restart. From now on
    /// each write (guest or [`App::kv_set`]) is applied normally and the value
    /// it replaced is recorded, until [`App::kv_lose_writes_since_checkpoint`].
    /// Calling it again moves the checkpoint to now.
    ///
    /// Only writes made through this `App` are recorded: another `App` sharing
    /// the same SQLite file or Redis database is not rolled back.
    pub fn kv_checkpoint(&self) {
        self.shared.kv.checkpoint();
    }

    /// Simulates a restart of a store without persistence: every key written
    /// since [`App::kv_checkpoint`] gets back the value it had then (or is
    /// deleted if it did not exist), on every backend. The checkpoint stays
    /// where it was, so a later loss rolls back to the same state. Returns the
    /// number of keys put back; fails without a checkpoint or if the backend
    /// cannot be written.
    pub fn kv_lose_writes_since_checkpoint(&self) -> Result<usize> {
        let restored = self.shared.kv.rollback()?;
        self.shared.logs.push(
            "test-host",
            Stream::Host,
            format!("key-value writes since the checkpoint lost ({restored} key(s) rolled back)"),
        );
        Ok(restored)
    }

    /// Guest KV calls since load or [`App::reset_kv_stats`] (see [`KvStats`]).
    pub fn kv_stats(&self) -> KvStats {
        *self.shared.kv_stats.lock().unwrap()
    }

    /// Sets every [`KvStats`] counter back to zero.
    pub fn reset_kv_stats(&self) {
        *self.shared.kv_stats.lock().unwrap() = KvStats::default();
    }

    /// `(number of keys, bytes)` held in the store `label`, where bytes are
    /// the keys' plus the values' lengths (the test's view: injected faults do
    /// not apply).
    ///
    /// # Panics
    /// If the backend cannot be read (e.g. Redis is down).
    pub fn kv_total_bytes(&self, label: &str) -> (usize, usize) {
        self.shared
            .kv
            .totals(label)
            .unwrap_or_else(|e| panic!("reading the size of KV store {label:?}: {e:#}"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn app_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<super::App>();
    }
}
