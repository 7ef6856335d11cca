//! The hourly sweep of a component's expired records (decisions in
//! `mdo_vmray::retention`; each component deletes only keys it writes).

use chrono::Utc;
use mdo_vmray::records::{keys, Sweep, SCHEMA};
use mdo_vmray::retention::{split_key, sweep_due, MAX_DELETES_PER_SWEEP};
use serde_json::json;

use crate::kv::Kv;
use crate::log::Log;

/// Delete the keys of the given kinds for which `expired(kind, key)` holds,
/// if a sweep is due. Returns how many were deleted.
pub fn sweep(
    kv: &Kv,
    log: &Log,
    tenant: &str,
    component: &str,
    kinds: &[&str],
    mut expired: impl FnMut(&str, &str) -> Result<bool, String>,
) -> Result<usize, String> {
    let now = Utc::now();
    let gc_key = keys::gc(tenant, component);
    let last: Option<Sweep> = kv.get(&gc_key).unwrap_or(None);
    if !sweep_due(last.map(|s| s.at), now) {
        return Ok(0);
    }
    let prefix = keys::prefix(tenant);
    let mut deleted = 0;
    for key in kv.keys_with_prefix(&prefix)? {
        if deleted >= MAX_DELETES_PER_SWEEP {
            break;
        }
        let Some((kind, _)) = split_key(&prefix, &key) else {
            continue;
        };
        if kinds.contains(&kind) && expired(kind, &key)? {
            kv.delete(&key)?;
            deleted += 1;
        }
    }
    kv.put(&gc_key, &Sweep { v: SCHEMA, at: now })?;
    log.info("sweep", &[("deleted", json!(deleted))]);
    Ok(deleted)
}
