//! Benchmark variants of [`App::cron_tick`] and of loading a component.

use super::{wasm_err, App, CronError, Metadata, SpinCronPre};
use crate::host::{self, HostState};
use crate::logs::Stream;
use crate::measure::{InstantiationTimes, TickMeasure};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::Instant;
use wasmtime::component::{Component, Linker};
use wasmtime::Store;

impl App {
    /// [`App::cron_tick`] that also measures the instantiation, the call's
    /// wall time, the time spent waiting for outbound responses and the
    /// instance's peak linear memory (a `ResourceLimiter` on the store).
    pub fn cron_tick_measured(
        &self,
        component_id: &str,
        timestamp: u64,
    ) -> Result<(Result<(), String>, TickMeasure)> {
        let component = self.component(component_id)?;
        let pre = component
            .cron
            .as_ref()
            .with_context(|| format!("component {component_id:?} has no cron trigger"))?;
        let mut store = Store::new(
            &self.engine,
            HostState::new(component.info.clone(), self.shared.clone()),
        );
        store.limiter(|s| &mut s.memory);
        let timer = store.data().outbound_timer();
        let mut m = TickMeasure::default();
        let outcome = self.runtime.block_on(async {
            let t = Instant::now();
            let instance = pre.instantiate_async(&mut store).await?;
            m.instantiate = t.elapsed();
            let t = Instant::now();
            let r = store
                .run_concurrent(async |accessor| {
                    instance
                        .call_handle_cron_event(accessor, Metadata { timestamp })
                        .await
                })
                .await;
            m.call = t.elapsed();
            r?
        });
        store.data().finish_logs();
        (m.outbound_wait, m.outbound_requests) = timer.totals();
        m.peak_memory_bytes = store.data().memory.bytes;
        match outcome {
            Ok(Ok(())) => Ok((Ok(()), m)),
            Ok(Err(CronError::Other(message))) => Ok((Err(message), m)),
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

    /// Compiles `wasm` afresh (no cache), pre-instantiates it with the host's
    /// imports, and instantiates it `1 + n` times, each in a fresh store,
    /// without calling it. `component_id` gives the host state (variables,
    /// stores) the instances get.
    pub fn instantiation_times(
        &self,
        component_id: &str,
        wasm: &Path,
        n: usize,
    ) -> Result<InstantiationTimes> {
        let info = self.component(component_id)?.info.clone();
        let mut out = InstantiationTimes::default();
        let t = Instant::now();
        let component = Component::from_file(&self.engine, wasm).map_err(wasm_err)?;
        out.compile = t.elapsed();
        let mut linker = Linker::new(&self.engine);
        host::add_to_linker(&mut linker)?;
        let t = Instant::now();
        let pre = linker.instantiate_pre(&component).map_err(wasm_err)?;
        let pre = SpinCronPre::new(pre).map_err(wasm_err)?;
        out.instantiate_pre = t.elapsed();
        for i in 0..=n {
            let mut store = Store::new(
                &self.engine,
                HostState::new(info.clone(), self.shared.clone()),
            );
            let t = Instant::now();
            self.runtime
                .block_on(pre.instantiate_async(&mut store))
                .map_err(wasm_err)?;
            let d = t.elapsed();
            if i == 0 {
                out.first_instantiate = d;
            } else {
                out.instantiate.push(d);
            }
        }
        out.instantiate.sort();
        Ok(out)
    }
}
