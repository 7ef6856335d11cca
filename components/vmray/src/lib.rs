//! The `vmray` component: thin I/O around the core; see `tick.rs`.

mod tick;

connector_io::entry_points!(crate::tick::run);
