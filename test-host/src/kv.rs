//! Key-value backends: one store per label, shared by every component.
//!
//! Limits are Spin's SQLite ones (the local default backend): key at most
//! 256 bytes, value at most 1 MB; every backend enforces them (the check is
//! the host's, before the backend is reached), so a key Redis would accept
//! is still refused.
//!
//! Besides the backends this module keeps the optional *undo log* behind
//! [`crate::App::kv_checkpoint`] / [`crate::App::kv_lose_writes_since_checkpoint`],
//! and the public [`KvFaults`] and [`KvStats`] types.

use anyhow::{anyhow, bail, Context, Result};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

pub const MAX_KEY_BYTES: usize = 256;
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

/// How long the Redis backend waits to connect, and for each reply.
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

/// Which backend an [`crate::App`] keeps its key-value stores in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KvBackend {
    /// In the host process; gone with the [`crate::App`].
    #[default]
    Memory,
    /// A SQLite file (created if missing), like Spin's `type = "spin"` store.
    Sqlite(PathBuf),
    /// A Redis server, like Spin's `type = "redis"` store (what SpinKube
    /// deployments use): `redis://127.0.0.1:6379/0` (the path is the database
    /// number). Each label lives in its own key namespace, `spin:{label}:{key}`,
    /// so several labels — and several [`crate::App`]s — can share one database;
    /// `get-keys` lists a label's keys with `SCAN`, never `KEYS`. A dropped
    /// connection makes the operation fail (the guest gets `error::other`) and
    /// the next operation reconnects.
    Redis(String),
}

/// Faults injected into the key-value calls that guests make (not into the
/// test's own [`crate::App::kv_get`] / [`crate::App::kv_set`]), set with
/// [`crate::App::set_kv_faults`]. They stay in force for every later guest call
/// until replaced (`App::set_kv_faults(KvFaults::default())` clears them).
///
/// An injected fault reaches the guest as the Spin KV error
/// `error::other("injected: …")` — an `Err` from `Store::open`/`get`/`set`/…,
/// never a trap — and is logged as a [`crate::Stream::Host`] line. A failed
/// operation is not applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvFaults {
    /// Counting every `get`, `set`, `delete`, `exists` and `get-keys` that
    /// guests make from the moment the faults are set (across guest calls and
    /// components; `open` is not counted), the Nth, 2Nth, 3Nth… fail.
    /// `Some(0)` is refused by `set_kv_faults`.
    pub fail_every_nth_op: Option<usize>,
    /// The store is down: `Store::open` and every operation fail.
    pub unavailable: bool,
    /// Every `set` whose key contains this substring fails.
    pub fail_sets_matching: Option<String>,
}

/// Key-value calls made by guests (the test's own `App::kv_*` calls are not
/// counted), since the [`crate::App`] was loaded or since
/// [`crate::App::reset_kv_stats`].
///
/// `gets` … `get_keys` count the calls the store answered with `Ok`;
/// every call answered with an error (limits, injected faults, backend failure,
/// `open` refused) counts in `errors` instead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KvStats {
    pub gets: u64,
    pub sets: u64,
    pub deletes: u64,
    pub exists: u64,
    pub get_keys: u64,
    /// Key plus value bytes of the successful `set`s.
    pub bytes_written: u64,
    pub errors: u64,
}

impl KvStats {
    /// `gets + exists + get_keys`.
    pub fn reads(&self) -> u64 {
        self.gets + self.exists + self.get_keys
    }

    /// `sets + deletes`.
    pub fn writes(&self) -> u64 {
        self.sets + self.deletes
    }
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

/// `(label, key)` → the value it had at the checkpoint (`None`: absent).
type UndoLog = BTreeMap<(String, String), Option<Vec<u8>>>;

/// The stores of one [`crate::App`]: a backend plus the checkpoint's undo log.
pub struct KvStores {
    backend: Backend,
    /// `Some` while a checkpoint is set. Locked around every write, so the
    /// value recorded is the one the write replaced.
    undo: Mutex<Option<UndoLog>>,
}

enum Backend {
    Memory(Mutex<BTreeMap<(String, String), Vec<u8>>>),
    Sqlite(Mutex<Connection>),
    Redis(RedisStore),
}

impl KvStores {
    pub fn open(backend: &KvBackend) -> Result<KvStores> {
        let backend = match backend {
            KvBackend::Memory => Backend::Memory(Mutex::default()),
            KvBackend::Sqlite(path) => Backend::Sqlite(Mutex::new(open_sqlite(path)?)),
            KvBackend::Redis(url) => Backend::Redis(RedisStore::open(url)?),
        };
        Ok(KvStores {
            backend,
            undo: Mutex::default(),
        })
    }

    pub fn get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>> {
        self.backend.get(store, key)
    }

    pub fn set(&self, store: &str, key: &str, value: &[u8]) -> Result<()> {
        let mut undo = self.undo.lock().unwrap();
        self.record(&mut undo, store, key)?;
        self.backend.set(store, key, value)
    }

    pub fn delete(&self, store: &str, key: &str) -> Result<()> {
        let mut undo = self.undo.lock().unwrap();
        self.record(&mut undo, store, key)?;
        self.backend.delete(store, key)
    }

    pub fn exists(&self, store: &str, key: &str) -> Result<bool> {
        self.backend.exists(store, key)
    }

    /// All keys of one store, sorted.
    pub fn keys(&self, store: &str) -> Result<Vec<String>> {
        self.backend.keys(store)
    }

    /// `(number of keys, key bytes + value bytes)` of one store.
    pub fn totals(&self, store: &str) -> Result<(usize, usize)> {
        self.backend.totals(store)
    }

    /// Starts recording the value each written key had, dropping any earlier record.
    pub fn checkpoint(&self) {
        *self.undo.lock().unwrap() = Some(UndoLog::new());
    }

    /// Puts every key written since the checkpoint back to its value at the
    /// checkpoint; the checkpoint stays set (with an empty record). Returns how
    /// many keys were put back.
    pub fn rollback(&self) -> Result<usize> {
        let mut undo = self.undo.lock().unwrap();
        let Some(log) = undo.as_mut() else {
            bail!("no KV checkpoint: call App::kv_checkpoint first");
        };
        let entries = std::mem::take(log);
        let count = entries.len();
        for ((store, key), value) in entries {
            match value {
                Some(v) => self.backend.set(&store, &key, &v),
                None => self.backend.delete(&store, &key),
            }
            .with_context(|| format!("restoring {store}/{key}"))?;
        }
        Ok(count)
    }

    fn record(&self, undo: &mut Option<UndoLog>, store: &str, key: &str) -> Result<()> {
        if let Some(log) = undo {
            if let std::collections::btree_map::Entry::Vacant(slot) =
                log.entry((store.to_string(), key.to_string()))
            {
                slot.insert(self.backend.get(store, key)?);
            }
        }
        Ok(())
    }
}

impl Backend {
    fn get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>> {
        match self {
            Backend::Memory(m) => Ok(m
                .lock()
                .unwrap()
                .get(&(store.to_string(), key.to_string()))
                .cloned()),
            Backend::Sqlite(c) => Ok(c
                .lock()
                .unwrap()
                .query_row(
                    "SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2",
                    params![store, key],
                    |row| row.get(0),
                )
                .optional()?),
            Backend::Redis(r) => {
                let k = r.key(store, key)?;
                r.with_conn(|c| redis::cmd("GET").arg(&k).query(c))
            }
        }
    }

    fn set(&self, store: &str, key: &str, value: &[u8]) -> Result<()> {
        match self {
            Backend::Memory(m) => {
                m.lock()
                    .unwrap()
                    .insert((store.to_string(), key.to_string()), value.to_vec());
            }
            Backend::Sqlite(c) => {
                c.lock().unwrap().execute(
                    "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
                    params![store, key, value],
                )?;
            }
            Backend::Redis(r) => {
                let k = r.key(store, key)?;
                r.with_conn(|c| redis::cmd("SET").arg(&k).arg(value).query::<()>(c))?;
            }
        }
        Ok(())
    }

    fn delete(&self, store: &str, key: &str) -> Result<()> {
        match self {
            Backend::Memory(m) => {
                m.lock()
                    .unwrap()
                    .remove(&(store.to_string(), key.to_string()));
            }
            Backend::Sqlite(c) => {
                c.lock().unwrap().execute(
                    "DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2",
                    params![store, key],
                )?;
            }
            Backend::Redis(r) => {
                let k = r.key(store, key)?;
                r.with_conn(|c| redis::cmd("DEL").arg(&k).query::<()>(c))?;
            }
        }
        Ok(())
    }

    fn exists(&self, store: &str, key: &str) -> Result<bool> {
        match self {
            Backend::Redis(r) => {
                let k = r.key(store, key)?;
                r.with_conn(|c| redis::cmd("EXISTS").arg(&k).query(c))
            }
            _ => Ok(self.get(store, key)?.is_some()),
        }
    }

    fn keys(&self, store: &str) -> Result<Vec<String>> {
        match self {
            Backend::Memory(m) => Ok(m
                .lock()
                .unwrap()
                .keys()
                .filter(|(s, _)| s == store)
                .map(|(_, k)| k.clone())
                .collect()),
            Backend::Sqlite(c) => {
                let conn = c.lock().unwrap();
                let mut stmt =
                    conn.prepare("SELECT key FROM spin_key_value WHERE store = ?1 ORDER BY key")?;
                let keys = stmt
                    .query_map(params![store], |row| row.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()?;
                Ok(keys)
            }
            Backend::Redis(r) => {
                let prefix = r.prefix(store)?;
                let mut keys = r
                    .scan(store)?
                    .into_iter()
                    .map(|full| {
                        let key = full
                            .strip_prefix(prefix.as_bytes())
                            .context("SCAN returned a key outside the label's namespace")?;
                        String::from_utf8(key.to_vec())
                            .map_err(|_| anyhow!("a key of store {store:?} is not UTF-8"))
                    })
                    .collect::<Result<Vec<String>>>()?;
                keys.sort();
                Ok(keys)
            }
        }
    }

    fn totals(&self, store: &str) -> Result<(usize, usize)> {
        match self {
            Backend::Memory(m) => Ok(m
                .lock()
                .unwrap()
                .iter()
                .filter(|((s, _), _)| s == store)
                .fold((0, 0), |(n, bytes), ((_, k), v)| {
                    (n + 1, bytes + k.len() + v.len())
                })),
            Backend::Sqlite(c) => {
                let (n, bytes): (i64, i64) = c.lock().unwrap().query_row(
                    "SELECT COUNT(*),
                            COALESCE(SUM(length(CAST(key AS BLOB)) + length(value)), 0)
                     FROM spin_key_value WHERE store = ?1",
                    params![store],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )?;
                Ok((n as usize, bytes as usize))
            }
            Backend::Redis(r) => {
                let prefix_len = r.prefix(store)?.len();
                let full_keys = r.scan(store)?;
                if full_keys.is_empty() {
                    return Ok((0, 0));
                }
                let mut pipe = redis::pipe();
                for k in &full_keys {
                    pipe.cmd("STRLEN").arg(k);
                }
                let lens: Vec<usize> = r.with_conn(|c| pipe.query(c))?;
                let key_bytes: usize = full_keys.iter().map(|k| k.len() - prefix_len).sum();
                Ok((full_keys.len(), key_bytes + lens.iter().sum::<usize>()))
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

/// One Redis database; a single connection, made again after it breaks.
struct RedisStore {
    /// The URL without its password, for messages.
    shown: String,
    client: redis::Client,
    conn: Mutex<Option<redis::Connection>>,
}

impl RedisStore {
    /// Connects and `PING`s, so that a wrong URL or a server that is not
    /// running fails [`crate::App::load`] with a clear message.
    fn open(url: &str) -> Result<RedisStore> {
        let shown = match url::Url::parse(url) {
            Ok(mut u) => {
                if u.password().is_some() {
                    let _ = u.set_password(Some("***"));
                }
                u.to_string()
            }
            Err(_) => url.to_string(),
        };
        let client = redis::Client::open(url)
            .with_context(|| format!("KV backend: invalid Redis URL {shown:?}"))?;
        let store = RedisStore {
            shown,
            client,
            conn: Mutex::default(),
        };
        let pong: String = store
            .with_conn(|c| redis::cmd("PING").query(c))
            .context("KV backend: Redis does not answer (is redis-server running?)")?;
        if pong != "PONG" {
            bail!("KV backend: Redis answered {pong:?} to PING");
        }
        Ok(store)
    }

    /// `spin:{label}:` — refuses labels that would make namespaces overlap
    /// (`:`) or that `SCAN MATCH` would read as a pattern.
    fn prefix(&self, label: &str) -> Result<String> {
        if label.is_empty() || label.contains([':', '*', '?', '[', ']', '\\']) {
            bail!("the Redis backend cannot hold a store labelled {label:?}");
        }
        Ok(format!("spin:{label}:"))
    }

    fn key(&self, label: &str, key: &str) -> Result<Vec<u8>> {
        let mut full = self.prefix(label)?.into_bytes();
        full.extend_from_slice(key.as_bytes());
        Ok(full)
    }

    /// Every full key in the label's namespace, by `SCAN … MATCH spin:{label}:*`.
    fn scan(&self, label: &str) -> Result<Vec<Vec<u8>>> {
        let pattern = format!("{}*", self.prefix(label)?);
        self.with_conn(|c| {
            let mut all = Vec::new();
            let mut cursor: u64 = 0;
            loop {
                let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query(c)?;
                all.extend(batch);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            // SCAN may return a key more than once.
            all.sort();
            all.dedup();
            Ok(all)
        })
    }

    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let mut guard = self.conn.lock().unwrap();
        let conn = match guard.as_mut() {
            Some(c) => c,
            None => {
                let c = self
                    .client
                    .get_connection_with_timeout(REDIS_TIMEOUT)
                    .with_context(|| format!("connecting to Redis at {}", self.shown))?;
                c.set_read_timeout(Some(REDIS_TIMEOUT))?;
                c.set_write_timeout(Some(REDIS_TIMEOUT))?;
                guard.insert(c)
            }
        };
        let result = f(conn);
        if let Err(e) = &result {
            if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
                *guard = None;
            }
        }
        result.with_context(|| format!("Redis at {}", self.shown))
    }
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
        assert_eq!(kv.totals("default").unwrap(), (1, 2));
        assert_eq!(kv.totals("nothing").unwrap(), (0, 0));
    }

    fn rollback(kv: &KvStores) {
        kv.set("default", "keep", b"old").unwrap();
        kv.set("default", "gone", b"x").unwrap();
        assert!(kv.rollback().is_err(), "no checkpoint yet");
        kv.checkpoint();
        kv.set("default", "keep", b"new").unwrap();
        kv.set("default", "keep", b"newer").unwrap();
        kv.delete("default", "gone").unwrap();
        kv.set("default", "fresh", b"y").unwrap();
        kv.set("other", "z", b"z").unwrap();
        assert_eq!(kv.rollback().unwrap(), 4);
        assert_eq!(kv.keys("default").unwrap(), ["gone", "keep"]);
        assert_eq!(kv.get("default", "keep").unwrap().unwrap(), b"old");
        assert!(kv.keys("other").unwrap().is_empty());
        // The checkpoint stays: a second loss goes back to the same state.
        kv.set("default", "keep", b"again").unwrap();
        assert_eq!(kv.rollback().unwrap(), 1);
        assert_eq!(kv.get("default", "keep").unwrap().unwrap(), b"old");
    }

    #[test]
    fn memory_backend() {
        exercise(&KvStores::open(&KvBackend::Memory).unwrap());
        rollback(&KvStores::open(&KvBackend::Memory).unwrap());
    }

    #[test]
    fn sqlite_backend_persists() {
        let dir = std::env::temp_dir().join(format!("test-host-kv-{}", std::process::id()));
        let path = dir.join("kv.db");
        let _ = std::fs::remove_file(&path);
        exercise(&KvStores::open(&KvBackend::Sqlite(path.clone())).unwrap());
        let again = KvStores::open(&KvBackend::Sqlite(path.clone())).unwrap();
        assert_eq!(again.keys("default").unwrap(), ["b"]);
        let _ = std::fs::remove_file(&path);
        rollback(&KvStores::open(&KvBackend::Sqlite(path.clone())).unwrap());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn redis_open_fails_clearly() {
        // Port 1 on loopback: nothing listens there.
        let err = format!(
            "{:#}",
            KvStores::open(&KvBackend::Redis("redis://127.0.0.1:1/0".into()))
                .err()
                .expect("must fail")
        );
        assert!(err.contains("redis-server running"), "{err}");
        let err = format!(
            "{:#}",
            KvStores::open(&KvBackend::Redis("http://x".into()))
                .err()
                .expect("must fail")
        );
        assert!(err.contains("invalid Redis URL"), "{err}");
    }

    #[test]
    fn limits() {
        assert!(check_limits(&"k".repeat(256), Some(&[0; 10])).is_ok());
        assert!(check_limits(&"k".repeat(257), None).is_err());
        assert!(check_limits("k", Some(&vec![0; MAX_VALUE_BYTES + 1])).is_err());
    }
}
