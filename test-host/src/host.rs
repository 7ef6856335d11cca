//! Per-instance host state: WASI, wasi:http with outbound enforcement, and the
//! `fermyon:spin` key-value and variables interfaces.

use crate::clock::{ClockOffset, ShiftedWallClock};
use crate::kv::{self, KvFaults, KvStats, KvStores};
use crate::logs::{LineCapture, LogBook, Stream};
use crate::outbound::AllowedHosts;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
    WasiHttpView,
};

/// Per-request timeouts for allowed outbound requests (unless the guest sets its own).
pub const OUTBOUND_TIMEOUT: Duration = Duration::from_secs(30);

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/host",
        world: "spin-imports",
        imports: { default: trappable },
        with: {
            "fermyon:spin/key-value.store": crate::host::StoreHandle,
        },
    });
}

use bindings::fermyon::spin::key_value::{self, Error as KvError};
use bindings::fermyon::spin::variables::{self, Error as VarError};

/// The host side of a `fermyon:spin/key-value.store` resource.
pub struct StoreHandle {
    label: String,
}

/// What every instance of an [`crate::App`] shares.
pub struct Shared {
    pub kv: KvStores,
    pub logs: LogBook,
    pub clock: ClockOffset,
    pub denied: Mutex<Vec<(String, String)>>,
    /// One-shot: taken by the next guest call.
    pub trap_after_kv_writes: Mutex<Option<usize>>,
    pub kv_faults: Mutex<KvFaultState>,
    pub kv_stats: Mutex<KvStats>,
}

/// The injected KV faults in force and the guest operations counted since they were set.
#[derive(Debug, Default)]
pub struct KvFaultState {
    pub faults: KvFaults,
    pub ops: usize,
}

/// What the host knows about one component.
pub struct ComponentInfo {
    pub id: String,
    pub variables: HashMap<String, String>,
    pub kv_stores: HashSet<String>,
    pub allowed_hosts: AllowedHosts,
}

/// Enforces `allowed_outbound_hosts` and sends allowed requests for real.
pub struct OutboundHooks {
    component: Arc<ComponentInfo>,
    shared: Arc<Shared>,
    /// Time spent waiting for outbound responses (benchmarks).
    pub(crate) outbound: Arc<crate::measure::OutboundTimer>,
}

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                    ),
                    HttpError,
                >,
            > + Send,
    > {
        drop(fut);
        let uri = request.uri().clone();
        if !self.component.allowed_hosts.allows_uri(&uri) {
            let url = uri.to_string();
            self.shared.logs.push(
                &self.component.id,
                Stream::Host,
                format!(
                    "denied outbound request to {url}: not in allowed_outbound_hosts of component {:?}",
                    self.component.id
                ),
            );
            self.shared
                .denied
                .lock()
                .unwrap()
                .push((self.component.id.clone(), url));
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let options = options.unwrap_or_default();
        let options = RequestOptions {
            connect_timeout: options.connect_timeout.or(Some(OUTBOUND_TIMEOUT)),
            first_byte_timeout: options.first_byte_timeout.or(Some(OUTBOUND_TIMEOUT)),
            between_bytes_timeout: options.between_bytes_timeout.or(Some(OUTBOUND_TIMEOUT)),
        };
        let waiting = crate::measure::OutboundTimer::start(&self.outbound);
        Box::new(async move {
            use http_body_util::BodyExt;
            let sent = wasmtime_wasi_http::default_send_request(request, Some(options)).await;
            drop(waiting);
            let (response, io) = sent?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// The `T` of each `Store<T>`: one per guest call.
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: OutboundHooks,
    component: Arc<ComponentInfo>,
    shared: Arc<Shared>,
    kv_writes: usize,
    trap_after_kv_writes: Option<usize>,
    captures: [LineCapture; 2],
    /// Linear memory the instance holds (benchmarks; see `App::cron_tick_measured`).
    pub(crate) memory: crate::measure::MemoryPeak,
}

impl HostState {
    pub fn new(component: Arc<ComponentInfo>, shared: Arc<Shared>) -> HostState {
        let stdout = LineCapture::new(&component.id, Stream::Stdout, shared.logs.clone());
        let stderr = LineCapture::new(&component.id, Stream::Stderr, shared.logs.clone());
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(ShiftedWallClock(shared.clock.clone()))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let trap_after_kv_writes = shared.trap_after_kv_writes.lock().unwrap().take();
        HostState {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: OutboundHooks {
                component: component.clone(),
                shared: shared.clone(),
                outbound: Arc::default(),
            },
            component,
            shared,
            kv_writes: 0,
            trap_after_kv_writes,
            captures: [stdout, stderr],
            memory: Default::default(),
        }
    }

    /// Flushes a last stdout/stderr line that had no newline.
    pub fn finish_logs(&self) {
        for c in &self.captures {
            c.finish();
        }
    }

    /// Counts a KV write; traps once the injected limit is passed.
    fn count_kv_write(&mut self, what: &str) -> wasmtime::Result<()> {
        self.kv_writes += 1;
        if let Some(n) = self.trap_after_kv_writes {
            if self.kv_writes > n {
                let msg = format!(
                    "test-host: injected trap at KV write #{} ({what}) after {n} allowed write(s)",
                    self.kv_writes
                );
                self.shared
                    .logs
                    .push(&self.component.id, Stream::Host, msg.clone());
                wasmtime::bail!(msg);
            }
        }
        Ok(())
    }

    fn label(&self, store: &Resource<StoreHandle>) -> wasmtime::Result<String> {
        Ok(self.table.get(store)?.label.clone())
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// The five data operations of `fermyon:spin/key-value.store`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KvOp {
    Get,
    Set,
    Delete,
    Exists,
    GetKeys,
}

impl KvOp {
    fn name(self) -> &'static str {
        match self {
            KvOp::Get => "get",
            KvOp::Set => "set",
            KvOp::Delete => "delete",
            KvOp::Exists => "exists",
            KvOp::GetKeys => "get-keys",
        }
    }
}

/// What the guest is told when an injected fault refuses an operation.
fn describe(op: KvOp, key: Option<&str>) -> String {
    match key {
        Some(k) => format!("{} {k:?}", op.name()),
        None => op.name().to_string(),
    }
}

impl HostState {
    /// Logs an injected fault and makes it the guest's `error::other`.
    fn injected(&self, message: String) -> KvError {
        self.shared.logs.push(
            &self.component.id,
            Stream::Host,
            format!("test-host: {message}"),
        );
        KvError::Other(message)
    }

    /// The injected fault, if any, that refuses this operation (counts it
    /// towards `fail_every_nth_op`).
    fn kv_fault(&self, op: KvOp, key: Option<&str>) -> Option<KvError> {
        let mut state = self.shared.kv_faults.lock().unwrap();
        let state = &mut *state;
        if state.faults.unavailable {
            return Some(self.injected(format!(
                "injected: key-value store unavailable ({})",
                describe(op, key)
            )));
        }
        state.ops += 1;
        if let Some(n) = state.faults.fail_every_nth_op {
            if state.ops.is_multiple_of(n) {
                return Some(self.injected(format!(
                    "injected: failure of key-value operation #{} ({})",
                    state.ops,
                    describe(op, key)
                )));
            }
        }
        if let (KvOp::Set, Some(pattern), Some(key)) = (op, &state.faults.fail_sets_matching, key) {
            if key.contains(pattern.as_str()) {
                return Some(self.injected(format!(
                    "injected: set {key:?} fails (key contains {pattern:?})"
                )));
            }
        }
        None
    }

    /// One guest KV operation: injected faults, Spin's limits, the write-trap
    /// counter, then the store; counts the outcome in the stats.
    fn kv_call<T>(
        &mut self,
        store: &Resource<StoreHandle>,
        op: KvOp,
        key: Option<&str>,
        value: Option<&[u8]>,
        run: impl FnOnce(&KvStores, &str) -> anyhow::Result<T>,
    ) -> wasmtime::Result<Result<T, KvError>> {
        let label = self.label(store)?;
        let outcome = match self.kv_fault(op, key) {
            Some(e) => Err(e),
            None => match key.map(|k| kv::check_limits(k, value)) {
                Some(Err(e)) => Err(KvError::Other(e)),
                _ => {
                    if matches!(op, KvOp::Set | KvOp::Delete) {
                        self.count_kv_write(&describe(op, key))?;
                    }
                    run(&self.shared.kv, &label).map_err(|e| KvError::Other(format!("{e:#}")))
                }
            },
        };
        let mut stats = self.shared.kv_stats.lock().unwrap();
        match (&outcome, op) {
            (Err(_), _) => stats.errors += 1,
            (Ok(_), KvOp::Get) => stats.gets += 1,
            (Ok(_), KvOp::Set) => {
                stats.sets += 1;
                stats.bytes_written +=
                    (key.map_or(0, str::len) + value.map_or(0, <[u8]>::len)) as u64;
            }
            (Ok(_), KvOp::Delete) => stats.deletes += 1,
            (Ok(_), KvOp::Exists) => stats.exists += 1,
            (Ok(_), KvOp::GetKeys) => stats.get_keys += 1,
        }
        Ok(outcome)
    }
}

impl key_value::Host for HostState {}

impl key_value::HostStore for HostState {
    fn open(&mut self, label: String) -> wasmtime::Result<Result<Resource<StoreHandle>, KvError>> {
        // As Spin: a label the component did not declare is access-denied
        // (every declared label exists in this host).
        let refused = if !self.component.kv_stores.contains(&label) {
            Some(KvError::AccessDenied)
        } else if self.shared.kv_faults.lock().unwrap().faults.unavailable {
            Some(self.injected(format!(
                "injected: key-value store unavailable (open {label:?})"
            )))
        } else {
            None
        };
        if let Some(e) = refused {
            self.shared.kv_stats.lock().unwrap().errors += 1;
            return Ok(Err(e));
        }
        Ok(Ok(self.table.push(StoreHandle { label })?))
    }

    fn get(
        &mut self,
        store: Resource<StoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, KvError>> {
        self.kv_call(&store, KvOp::Get, Some(&key), None, |kv, label| {
            kv.get(label, &key)
        })
    }

    fn set(
        &mut self,
        store: Resource<StoreHandle>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), KvError>> {
        self.kv_call(&store, KvOp::Set, Some(&key), Some(&value), |kv, label| {
            kv.set(label, &key, &value)
        })
    }

    fn delete(
        &mut self,
        store: Resource<StoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<(), KvError>> {
        self.kv_call(&store, KvOp::Delete, Some(&key), None, |kv, label| {
            kv.delete(label, &key)
        })
    }

    fn exists(
        &mut self,
        store: Resource<StoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<bool, KvError>> {
        self.kv_call(&store, KvOp::Exists, Some(&key), None, |kv, label| {
            kv.exists(label, &key)
        })
    }

    fn get_keys(
        &mut self,
        store: Resource<StoreHandle>,
    ) -> wasmtime::Result<Result<Vec<String>, KvError>> {
        self.kv_call(&store, KvOp::GetKeys, None, None, |kv, label| {
            kv.keys(label)
        })
    }

    fn drop(&mut self, store: Resource<StoreHandle>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

impl variables::Host for HostState {
    fn get(&mut self, name: String) -> wasmtime::Result<Result<String, VarError>> {
        if let Err(e) = crate::variables::validate_name(&name) {
            return Ok(Err(VarError::InvalidName(format!("{name:?} {e}"))));
        }
        Ok(self
            .component
            .variables
            .get(&name)
            .cloned()
            .ok_or(VarError::Undefined(format!(
                "no variable {name:?} for component {:?}",
                self.component.id
            ))))
    }
}

/// Everything a guest may import from this host.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    key_value::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    variables::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    Ok(())
}

impl HostState {
    /// The instance's outbound wait timer (benchmarks).
    pub(crate) fn outbound_timer(&self) -> Arc<crate::measure::OutboundTimer> {
        self.hooks.outbound.clone()
    }
}
