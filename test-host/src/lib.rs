//! A test host that runs the connector's Spin components (`wasm32-wasip2`,
//! spin-sdk 5.2) the way Spin does: `[[trigger.cron]]` ticks through the async
//! `spin:cron` export, `[[trigger.http]]` routes through
//! `wasi:http/incoming-handler`, with `fermyon:spin` key-value and variables,
//! and `allowed_outbound_hosts` enforced on `wasi:http/outgoing-handler`.
//!
//! - Load a manifest with [`App::load`] ([`AppConfig`]: variables, KV backend,
//!   where the `.wasm` files are); run [`App::cron_tick`] and [`App::http`];
//!   read [`App::logs`] and [`App::denied_requests`].
//! - Key-value ([`KvBackend`]): `Memory`, `Sqlite(path)` (Spin's local
//!   default) or `Redis(url)` (SpinKube's), one store per label shared by all
//!   components; every backend enforces [`MAX_KEY_BYTES`] and
//!   [`MAX_VALUE_BYTES`]. The test side reads and writes with
//!   [`App::kv_get`], [`App::kv_set`], [`App::kv_keys`], [`App::kv_total_bytes`].
//! - Fault injection: [`App::set_trap_after_kv_writes`] (the guest traps at a
//!   KV write, once), [`App::set_kv_faults`] ([`KvFaults`]: every Nth KV
//!   operation, store unavailable, sets of matching keys — seen by the guest as
//!   Spin KV errors), and [`App::kv_checkpoint`] +
//!   [`App::kv_lose_writes_since_checkpoint`] (a store without persistence
//!   restarting).
//! - Counters: [`App::kv_stats`] / [`App::reset_kv_stats`] ([`KvStats`]).
//! - Time: [`App::advance_clock`] shifts the guests' wall clock.
//! - [`redis_server::TestRedis`]: a Redis for tests (`TEST_REDIS_URL` or a
//!   private `redis-server`).

mod app;
mod clock;
mod host;
mod kv;
mod logs;
pub mod manifest;
mod measure;
mod outbound;
pub mod redis_server;
mod routes;
pub mod variables;

pub use app::{App, AppConfig, HttpResponse};
pub use kv::{KvBackend, KvFaults, KvStats, MAX_KEY_BYTES, MAX_VALUE_BYTES};
pub use logs::{LogLine, Stream};
pub use measure::{InstantiationTimes, TickMeasure};
pub use outbound::AllowedHosts;
