//! A Redis server for tests of the [`crate::KvBackend::Redis`] backend.
//!
//! [`TestRedis::start`] uses the server named by the environment variable
//! `TEST_REDIS_URL` (e.g. `redis://127.0.0.1:6390`) if it is set, giving each
//! `TestRedis` of the process its own database number (1, 2, … 15), emptied
//! with `FLUSHDB` first — so point it at a server whose databases 1–15 tests
//! may wipe. Otherwise it starts a private `redis-server` child process
//! (no persistence, loopback, a free port) that is killed when the
//! `TestRedis` is dropped. If there is no `redis-server` binary either, it
//! fails with a message saying to install it: tests never skip silently.

use anyhow::{anyhow, bail, Context, Result};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

/// The environment variable naming an already running Redis server.
pub const TEST_REDIS_URL: &str = "TEST_REDIS_URL";

/// The next database number handed out on a `TEST_REDIS_URL` server.
static NEXT_DB: AtomicU8 = AtomicU8::new(1);

/// A Redis server (shared or private) and the database a test uses on it.
pub struct TestRedis {
    url: String,
    own: Option<OwnServer>,
}

struct OwnServer {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl TestRedis {
    /// `TEST_REDIS_URL` if set (with a database of its own, flushed), else a
    /// private `redis-server` ([`TestRedis::spawn`]).
    pub fn start() -> Result<TestRedis> {
        match std::env::var(TEST_REDIS_URL) {
            Ok(base) if !base.trim().is_empty() => {
                let db = NEXT_DB.fetch_add(1, Ordering::SeqCst);
                if db > 15 {
                    bail!("{TEST_REDIS_URL}: more than 15 Redis databases asked for by one test process");
                }
                let mut url = url::Url::parse(base.trim())
                    .with_context(|| format!("{TEST_REDIS_URL}={base:?} is not a URL"))?;
                url.set_path(&format!("/{db}"));
                let url = url.to_string();
                let client = redis::Client::open(url.as_str())?;
                let mut conn = client
                    .get_connection_with_timeout(Duration::from_secs(5))
                    .with_context(|| format!("{TEST_REDIS_URL}: connecting to {url}"))?;
                redis::cmd("FLUSHDB").query::<()>(&mut conn)?;
                Ok(TestRedis { url, own: None })
            }
            _ => TestRedis::spawn(),
        }
    }

    /// Always a private `redis-server` child on a free loopback port (tests
    /// that stop and restart the server need one).
    pub fn spawn() -> Result<TestRedis> {
        let mut last_error = None;
        // A free port may be taken between finding and binding it: retry.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let mut own = OwnServer {
                child: None,
                port,
                log: std::env::temp_dir()
                    .join(format!("test-host-redis-{}-{port}.log", std::process::id())),
            };
            match own.run() {
                Ok(()) => {
                    return Ok(TestRedis {
                        url: format!("redis://127.0.0.1:{port}/0"),
                        own: Some(own),
                    })
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap())
    }

    /// `redis://host:port/db`, for [`crate::KvBackend::Redis`].
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether this is a private server (which [`TestRedis::stop`] and
    /// [`TestRedis::restart`] can act on).
    pub fn is_private(&self) -> bool {
        self.own.is_some()
    }

    /// Kills the private server (SIGKILL: nothing is saved — it has no
    /// persistence anyway). Fails on a `TEST_REDIS_URL` server.
    pub fn stop(&mut self) -> Result<()> {
        let own = self
            .own
            .as_mut()
            .context("cannot stop the TEST_REDIS_URL server")?;
        own.kill();
        Ok(())
    }

    /// Starts the private server again on the same port (empty, as a server
    /// without persistence comes back).
    pub fn restart(&mut self) -> Result<()> {
        let own = self
            .own
            .as_mut()
            .context("cannot restart the TEST_REDIS_URL server")?;
        own.kill();
        own.run()
    }
}

impl OwnServer {
    fn run(&mut self) -> Result<()> {
        let log = std::fs::File::create(&self.log)?;
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "redis-server is not installed: install it (`apt-get install -y redis-server`; \
                 CI installs it) or set {TEST_REDIS_URL} to a running server"
            ),
            Err(e) => return Err(anyhow!(e).context("starting redis-server")),
        };
        let url = format!("redis://127.0.0.1:{}/0", self.port);
        let client = redis::Client::open(url.as_str())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                bail!(
                    "redis-server on port {} exited ({status}):\n{log}",
                    self.port
                );
            }
            let pong = client
                .get_connection_with_timeout(Duration::from_millis(500))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if pong.is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("redis-server on port {} did not answer PING", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}
