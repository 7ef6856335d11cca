//! Key-value backends: one store per label, shared by every component.
//!
//! Limits are Spin's SQLite ones (the local default backend): key at most
//! 256 bytes, value at most 1 MB; both backends enforce them.

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const MAX_KEY_BYTES: usize = 256;
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

/// Which backend an [`crate::App`] keeps its key-value stores in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KvBackend {
    #[default]
    Memory,
    /// A SQLite file (created if missing), like Spin's `type = "spin"` store.
    Sqlite(PathBuf),
}

/// Checks Spin's SQLite limits; the message is what the guest gets in `error::other`.
pub fn check_limits(key: &str, value: Option<&[u8]>) -> Result<(), String> {
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "key is {} bytes; the limit is {MAX_KEY_BYTES} bytes",
            key.len()
        ));
    }
    if let Some(v) = value {
        if v.len() > MAX_VALUE_BYTES {
            return Err(format!(
                "value is {} bytes; the limit is {MAX_VALUE_BYTES} bytes",
                v.len()
            ));
        }
    }
    Ok(())
}

pub enum KvStores {
    Memory(Mutex<BTreeMap<(String, String), Vec<u8>>>),
    Sqlite(Mutex<Connection>),
}

impl KvStores {
    pub fn open(backend: &KvBackend) -> Result<KvStores> {
        match backend {
            KvBackend::Memory => Ok(KvStores::Memory(Mutex::default())),
            KvBackend::Sqlite(path) => Ok(KvStores::Sqlite(Mutex::new(open_sqlite(path)?))),
        }
    }

    pub fn get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>> {
        match self {
            KvStores::Memory(m) => Ok(m
                .lock()
                .unwrap()
                .get(&(store.to_string(), key.to_string()))
                .cloned()),
            KvStores::Sqlite(c) => Ok(c
                .lock()
                .unwrap()
                .query_row(
                    "SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2",
                    params![store, key],
                    |row| row.get(0),
                )
                .optional()?),
        }
    }

    pub fn set(&self, store: &str, key: &str, value: &[u8]) -> Result<()> {
        match self {
            KvStores::Memory(m) => {
                m.lock()
                    .unwrap()
                    .insert((store.to_string(), key.to_string()), value.to_vec());
            }
            KvStores::Sqlite(c) => {
                c.lock().unwrap().execute(
                    "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
                    params![store, key, value],
                )?;
            }
        }
        Ok(())
    }

    pub fn delete(&self, store: &str, key: &str) -> Result<()> {
        match self {
            KvStores::Memory(m) => {
                m.lock()
                    .unwrap()
                    .remove(&(store.to_string(), key.to_string()));
            }
            KvStores::Sqlite(c) => {
                c.lock().unwrap().execute(
                    "DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2",
                    params![store, key],
                )?;
            }
        }
        Ok(())
    }

    pub fn exists(&self, store: &str, key: &str) -> Result<bool> {
        Ok(self.get(store, key)?.is_some())
    }

    /// All keys of one store, sorted.
    pub fn keys(&self, store: &str) -> Result<Vec<String>> {
        match self {
            KvStores::Memory(m) => Ok(m
                .lock()
                .unwrap()
                .keys()
                .filter(|(s, _)| s == store)
                .map(|(_, k)| k.clone())
                .collect()),
            KvStores::Sqlite(c) => {
                let conn = c.lock().unwrap();
                let mut stmt =
                    conn.prepare("SELECT key FROM spin_key_value WHERE store = ?1 ORDER BY key")?;
                let keys = stmt
                    .query_map(params![store], |row| row.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()?;
                Ok(keys)
            }
        }
    }
}

fn open_sqlite(path: &Path) -> Result<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS spin_key_value (
             store TEXT NOT NULL,
             key   TEXT NOT NULL,
             value BLOB NOT NULL,
             PRIMARY KEY (store, key)
         )",
    )?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(kv: &KvStores) {
        kv.set("default", "b", b"2").unwrap();
        kv.set("default", "a", b"1").unwrap();
        kv.set("other", "a", b"x").unwrap();
        kv.set("default", "a", b"1b").unwrap();
        assert_eq!(kv.get("default", "a").unwrap().as_deref(), Some(&b"1b"[..]));
        assert_eq!(kv.keys("default").unwrap(), ["a", "b"]);
        assert!(kv.exists("other", "a").unwrap());
        kv.delete("default", "a").unwrap();
        assert_eq!(kv.get("default", "a").unwrap(), None);
        assert_eq!(kv.keys("other").unwrap(), ["a"]);
    }

    #[test]
    fn memory_backend() {
        exercise(&KvStores::open(&KvBackend::Memory).unwrap());
    }

    #[test]
    fn sqlite_backend_persists() {
        let dir = std::env::temp_dir().join(format!("test-host-kv-{}", std::process::id()));
        let path = dir.join("kv.db");
        let _ = std::fs::remove_file(&path);
        exercise(&KvStores::open(&KvBackend::Sqlite(path.clone())).unwrap());
        let again = KvStores::open(&KvBackend::Sqlite(path.clone())).unwrap();
        assert_eq!(again.keys("default").unwrap(), ["b"]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn limits() {
        assert!(check_limits(&"k".repeat(256), Some(&[0; 10])).is_ok());
        assert!(check_limits(&"k".repeat(257), None).is_err());
        assert!(check_limits("k", Some(&vec![0; MAX_VALUE_BYTES + 1])).is_err());
    }
}
