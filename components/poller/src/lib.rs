//! The `poller` component: thin I/O around the core; see `tick.rs`.

mod attachments;
mod tick;

connector_io::entry_points!(crate::tick::run);
