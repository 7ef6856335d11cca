//! Sans-IO core of the Defender for Office 365 ↔ VMRay connector.
//!
//! The components do the I/O (HTTP, key-value store, clock, variables); this
//! crate decides. Nothing here touches the network, the store or the clock:
//! callers pass data and time in and get decisions, records and texts out.

pub mod alert;
pub mod analysis;
pub mod attachments;
pub mod comment;
pub mod config;
pub mod exclusions;
pub mod graph_batch;
pub mod hunting;
pub mod indicators;
pub mod logline;
pub mod model;
pub mod poll;
pub mod records;
pub mod retention;
pub mod retry;
pub mod tags;
pub mod tick_auth;
pub mod urls;
pub mod vmray;

#[cfg(test)]
mod fixtures;
