//! Typed access to the shared key-value store: records are encoded and
//! decoded by the core (`records::encode` / `records::decode`).

use mdo_vmray::records::{decode, encode};
use serde::{de::DeserializeOwned, Serialize};
use spin_sdk::key_value::Store;

/// The store label every component lists in `key_value_stores`.
pub const STORE: &str = "default";

pub struct Kv {
    store: Store,
}

impl Kv {
    pub fn open() -> Result<Kv, String> {
        Store::open(STORE)
            .map(|store| Kv { store })
            .map_err(|e| format!("key-value store `{STORE}`: {e}"))
    }

    /// A record, `None` when absent; a store error or an unreadable record is an error naming the key.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, String> {
        match self.store.get(key) {
            Ok(None) => Ok(None),
            Ok(Some(bytes)) => decode(key, &bytes).map(Some).map_err(|e| e.to_string()),
            Err(e) => Err(format!("key-value get `{key}`: {e}")),
        }
    }

    pub fn put<T: Serialize>(&self, key: &str, record: &T) -> Result<(), String> {
        self.store
            .set(key, &encode(record))
            .map_err(|e| format!("key-value set `{key}`: {e}"))
    }

    /// Raw bytes (attachment chunks), `None` when absent.
    pub fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.store
            .get(key)
            .map_err(|e| format!("key-value get `{key}`: {e}"))
    }

    /// Store raw bytes (attachment chunks).
    pub fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<(), String> {
        self.store
            .set(key, bytes)
            .map_err(|e| format!("key-value set `{key}`: {e}"))
    }

    pub fn delete(&self, key: &str) -> Result<(), String> {
        self.store
            .delete(key)
            .map_err(|e| format!("key-value delete `{key}`: {e}"))
    }

    /// Every key of the store that starts with `prefix` (Spin lists all keys;
    /// used only by the hourly sweep).
    pub fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, String> {
        let all = self
            .store
            .get_keys()
            .map_err(|e| format!("key-value get-keys: {e}"))?;
        Ok(all.into_iter().filter(|k| k.starts_with(prefix)).collect())
    }

    pub fn exists(&self, key: &str) -> Result<bool, String> {
        self.store
            .exists(key)
            .map_err(|e| format!("key-value exists `{key}`: {e}"))
    }
}
