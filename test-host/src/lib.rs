//! A test host that runs the connector's Spin components (`wasm32-wasip2`,
//! spin-sdk 5.2) the way Spin does: `[[trigger.cron]]` ticks through the async
//! `spin:cron` export, `[[trigger.http]]` routes through
//! `wasi:http/incoming-handler`, with `fermyon:spin` key-value and variables,
//! and `allowed_outbound_hosts` enforced on `wasi:http/outgoing-handler`.

mod app;
mod clock;
mod host;
mod kv;
mod logs;
pub mod manifest;
mod outbound;
pub mod redis_server;
mod routes;
pub mod variables;

pub use app::{App, AppConfig, HttpResponse};
pub use kv::{KvBackend, KvFaults, KvStats, MAX_KEY_BYTES, MAX_VALUE_BYTES};
pub use logs::{LogLine, Stream};
pub use outbound::AllowedHosts;
