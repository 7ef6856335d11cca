//! The `defender` component: thin I/O around the core; see `tick.rs`.

mod comments;
mod graph;
mod indicators;
mod tags;
mod tick;

connector_io::entry_points!(crate::tick::run);
