//! Randomness for run ids and retry jitter, seeded by the host (WASI random)
//! through std's hash seeds, so no extra crate is needed.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// A random 64-bit number.
pub fn u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x9e37_79b9_7f4a_7c15);
    h.finish()
}

/// A random number in [0, 1).
pub fn unit() -> f64 {
    (u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A short run id for log lines.
pub fn run_id() -> String {
    format!("{:016x}", u64())
}
