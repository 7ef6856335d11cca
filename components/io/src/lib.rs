//! What the three components share and the core must not do: talk HTTP,
//! fetch tokens, read and write the key-value store, print logs, and serve
//! the two tick entry points (cron export and HTTP route).

pub mod api;
pub mod entra;
pub mod kv;
pub mod log;
pub mod rand;
pub mod sweep;
pub mod tick;
pub mod vars;
pub mod wire;
