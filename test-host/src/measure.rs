//! Benchmark figures of one guest call: instantiation time, time spent
//! waiting for outbound HTTP responses, and linear memory held
//! ([`crate::App::cron_tick_measured`], [`crate::App::instantiation_times`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What [`crate::App::cron_tick_measured`] measured for one cron event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickMeasure {
    /// `InstancePre::instantiate` of the fresh instance.
    pub instantiate: Duration,
    /// Wall time of the `handle-cron-event` call (instantiation excluded).
    pub call: Duration,
    /// Part of `call` during which at least one outbound request was waiting
    /// for its response head (the services' latency, overlapping requests
    /// counted once). The response bodies are read by the guest and count as
    /// guest time.
    pub outbound_wait: Duration,
    /// Outbound requests sent (allowed ones).
    pub outbound_requests: u64,
    /// Linear memory of the instance at its largest: the sum of every
    /// memory's size after its last growth (wasm memories never shrink).
    pub peak_memory_bytes: u64,
}

/// Timings of [`crate::App::instantiation_times`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstantiationTimes {
    /// `Component::from_file`: Cranelift compiling the `.wasm` (no cache).
    pub compile: Duration,
    /// `Linker::instantiate_pre`: resolving the imports once.
    pub instantiate_pre: Duration,
    /// The first `InstancePre::instantiate` after compiling.
    pub first_instantiate: Duration,
    /// Each later `InstancePre::instantiate` (fresh store each time), sorted.
    pub instantiate: Vec<Duration>,
}

impl InstantiationTimes {
    /// The median of [`InstantiationTimes::instantiate`].
    pub fn median(&self) -> Duration {
        self.instantiate
            .get(self.instantiate.len() / 2)
            .copied()
            .unwrap_or_default()
    }
}

/// Union of the intervals during which outbound requests were in flight.
#[derive(Debug, Default)]
pub struct OutboundTimer {
    inner: Mutex<TimerState>,
}

#[derive(Debug, Default)]
struct TimerState {
    in_flight: usize,
    since: Option<Instant>,
    total: Duration,
    requests: u64,
}

/// Ends one request's wait when dropped (response head, error or cancel).
pub struct Waiting(Arc<OutboundTimer>);

impl OutboundTimer {
    pub fn start(timer: &Arc<OutboundTimer>) -> Waiting {
        let mut s = timer.inner.lock().unwrap();
        if s.in_flight == 0 {
            s.since = Some(Instant::now());
        }
        s.in_flight += 1;
        s.requests += 1;
        Waiting(timer.clone())
    }

    /// `(total wait, requests)` so far.
    pub fn totals(&self) -> (Duration, u64) {
        let s = self.inner.lock().unwrap();
        let open = s.since.map(|t| t.elapsed()).unwrap_or_default();
        (s.total + open, s.requests)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut s = self.0.inner.lock().unwrap();
        s.in_flight -= 1;
        if s.in_flight == 0 {
            if let Some(t) = s.since.take() {
                s.total += t.elapsed();
            }
        }
    }
}

/// A `ResourceLimiter` that allows everything and adds up memory growth.
#[derive(Debug, Default)]
pub struct MemoryPeak {
    pub bytes: u64,
}

impl wasmtime::ResourceLimiter for MemoryPeak {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.bytes += desired.saturating_sub(current) as u64;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}
