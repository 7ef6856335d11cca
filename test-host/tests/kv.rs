//! Key-value backends (memory, SQLite, Redis), injected KV faults,
//! checkpoint/loss and the KV counters, seen through the probe component.
//!
//! Redis: `TEST_REDIS_URL` if set, else a private `redis-server` per test
//! (see `test_host::redis_server`); without either the Redis tests fail.

mod common;

use common::{lines, load, load_kv, TempApp, MANIFEST};
use test_host::redis_server::TestRedis;
use test_host::{App, KvBackend, KvFaults, KvStats, Stream};

fn redis() -> TestRedis {
    TestRedis::start().unwrap_or_else(|e| panic!("\n\n*** {e:#} ***\n\n"))
}

/// The probe's `print`ed/collected stdout of `component`, one string.
fn stdout(app: &App, component: &str) -> String {
    lines(app, component, Stream::Stdout).join("\n")
}

/// Runs the reader's HTTP route with `actions` as body.
fn reader(app: &App, actions: &str) -> (u16, String) {
    let resp = app
        .http("POST", "/reader/", &[], actions.as_bytes())
        .unwrap();
    (resp.status, resp.body_text())
}

/// A raw connection to the test's Redis database.
fn raw(r: &TestRedis) -> redis::Connection {
    redis::Client::open(r.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

#[test]
fn redis_round_trip_shared_between_components() {
    let r = redis();
    let (_t, app) = load_kv(
        "redis-rt",
        &[(
            "writer_action",
            "kv-write:default:greeting:hi;kv-write:default:n:1",
        )],
        KvBackend::Redis(r.url().into()),
    );
    assert_eq!(app.cron_tick("writer", 1).unwrap(), Ok(()));
    assert_eq!(app.kv_keys("default"), ["greeting", "n"]);
    assert_eq!(
        app.kv_get("default", "greeting").as_deref(),
        Some(&b"hi"[..])
    );

    // Another component (HTTP trigger) sees and changes the same data.
    let (status, body) = reader(
        &app,
        "kv-read:default:greeting;kv-exists:default:n;kv-delete:default:n;kv-exists:default:n;kv-keys:default",
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("kv greeting=hi"), "{body}");
    assert!(body.contains("exists n=true\nexists n=false"), "{body}");
    assert!(body.contains("keys greeting\n"), "{body}");

    // Each label has its own namespace: `spin:{label}:{key}`.
    let mut conn = raw(&r);
    let value: Vec<u8> = redis::cmd("GET")
        .arg("spin:default:greeting")
        .query(&mut conn)
        .unwrap();
    assert_eq!(value, b"hi");
    let n: Option<Vec<u8>> = redis::cmd("GET")
        .arg("spin:default:n")
        .query(&mut conn)
        .unwrap();
    assert_eq!(n, None);
}

#[test]
fn redis_persists_across_apps_and_lists_only_the_labels_keys() {
    let r = redis();
    let url = r.url().to_string();
    let t = TempApp::new("redis-persist", MANIFEST);
    let vars = |action: &'static str| vec![("token", "t"), ("writer_action", action)];

    // Keys of other labels and of no label at all, in the same database.
    let mut conn = raw(&r);
    for k in [
        "spin:other:x",
        "spin:defaultx:y",
        "unrelated",
        "spin:default",
    ] {
        redis::cmd("SET")
            .arg(k)
            .arg("foreign")
            .query::<()>(&mut conn)
            .unwrap();
    }

    let first = t
        .load(
            &vars("kv-write:default:alert-1:done"),
            KvBackend::Redis(url.clone()),
        )
        .unwrap();
    let second = t
        .load(
            &vars("kv-write:default:alert-2:done"),
            KvBackend::Redis(url.clone()),
        )
        .unwrap();
    assert_eq!(first.cron_tick("writer", 1).unwrap(), Ok(()));
    assert_eq!(second.cron_tick("writer", 2).unwrap(), Ok(()));
    // Both apps see both writes, through a guest and through the host.
    let (status, body) = reader(&first, "kv-keys:default;kv-read:default:alert-2");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("keys alert-1,alert-2\n"), "{body}");
    assert!(body.contains("kv alert-2=done"), "{body}");
    assert_eq!(second.kv_keys("default"), ["alert-1", "alert-2"]);
    drop(first);
    drop(second);

    // A new App (a restarted Spin) finds the data.
    let third = t
        .load(&[("token", "t")], KvBackend::Redis(url.clone()))
        .unwrap();
    assert_eq!(third.kv_keys("default"), ["alert-1", "alert-2"]);
    assert_eq!(
        third.kv_total_bytes("default"),
        (2, 2 * ("alert-1".len() + 4))
    );
    let foreign: Vec<u8> = redis::cmd("GET")
        .arg("spin:other:x")
        .query(&mut conn)
        .unwrap();
    assert_eq!(foreign, b"foreign", "other labels are left alone");
}

#[test]
fn redis_enforces_the_key_limit() {
    let r = redis();
    let (_t, app) = load_kv(
        "redis-bigkey",
        &[("writer_action", "kv-bigkey:default:257")],
        KvBackend::Redis(r.url().into()),
    );
    let err = app.cron_tick("writer", 1).unwrap().expect_err("must fail");
    assert!(err.contains("limit is 256 bytes"), "{err}");
    assert!(app.kv_keys("default").is_empty());
    let mut conn = raw(&r);
    let size: usize = redis::cmd("DBSIZE").query(&mut conn).unwrap();
    assert_eq!(size, 0, "nothing reached Redis");

    let (_t2, app) = load_kv(
        "redis-bigkey-ok",
        &[("writer_action", "kv-bigkey:default:256")],
        KvBackend::Redis(r.url().into()),
    );
    assert_eq!(app.cron_tick("writer", 1).unwrap(), Ok(()));
    assert_eq!(app.kv_keys("default"), ["x".repeat(256)]);
}

#[test]
fn a_redis_outage_is_a_guest_error_and_the_next_tick_reconnects() {
    // Needs a server it can stop: always a private one.
    let mut r = TestRedis::spawn().unwrap_or_else(|e| panic!("\n\n*** {e:#} ***\n\n"));
    let (_t, app) = load_kv(
        "redis-outage",
        &[(
            "writer_action",
            "kv-read:default:seen;kv-write:default:seen:yes",
        )],
        KvBackend::Redis(r.url().into()),
    );
    assert_eq!(app.cron_tick("writer", 1).unwrap(), Ok(()));
    r.stop().unwrap();
    let err = app
        .cron_tick("writer", 2)
        .expect("an outage is not a trap")
        .expect_err("the store is down");
    assert!(err.contains("get seen") && err.contains("Redis"), "{err}");
    r.restart().unwrap();
    // Back, without persistence: the key is gone, the guest sees that.
    assert_eq!(app.cron_tick("writer", 3).unwrap(), Ok(()));
    assert!(stdout(&app, "writer").ends_with("kv seen missing"));
    assert_eq!(app.kv_keys("default"), ["seen"]);
}

#[test]
fn every_nth_op_fails_across_guest_calls_until_cleared() {
    let (_t, app) = load("fault-nth", &[("writer_action", "kv-writes:default:2")]);
    app.set_kv_faults(KvFaults {
        fail_every_nth_op: Some(3),
        ..KvFaults::default()
    });
    assert_eq!(app.cron_tick("writer", 1).unwrap(), Ok(())); // ops 1, 2
    let err = app.cron_tick("writer", 2).unwrap().expect_err("op 3 fails");
    assert!(
        err.contains(r#"injected: failure of key-value operation #3 (set \"k0\")"#),
        "{err}"
    );
    assert_eq!(app.cron_tick("writer", 3).unwrap(), Ok(())); // ops 4, 5
    let err = app.cron_tick("writer", 4).unwrap().expect_err("op 6 fails");
    assert!(err.contains("#6"), "{err}");
    // An HTTP component gets the same treatment (ops 7, 8, 9).
    let (status, body) = reader(
        &app,
        "kv-read:default:k0;kv-read:default:k1;kv-read:default:k0",
    );
    assert_eq!(status, 500, "{body}");
    assert!(body.contains(r#"get k0: Error::Other("injected"#), "{body}");
    assert!(lines(&app, "writer", Stream::Host)
        .iter()
        .any(|l| l.contains("injected: failure of key-value operation #3")));

    app.clear_kv_faults();
    for ts in 5..10 {
        assert_eq!(app.cron_tick("writer", ts).unwrap(), Ok(()));
    }
}

#[test]
fn an_unavailable_store_fails_open_until_it_is_back() {
    let (_t, app) = load("fault-down", &[("writer_action", "kv-write:default:a:1")]);
    app.kv_set("default", "before", b"1").unwrap();
    app.set_kv_faults(KvFaults {
        unavailable: true,
        ..KvFaults::default()
    });
    let err = app.cron_tick("writer", 1).unwrap().expect_err("store down");
    assert!(
        err.contains("open default") && err.contains("injected: key-value store unavailable"),
        "{err}"
    );
    let (status, body) = reader(&app, "kv-read:default:before");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("unavailable"), "{body}");
    // The test's own view is not affected, and nothing was written.
    assert_eq!(app.kv_keys("default"), ["before"]);
    assert_eq!(app.kv_stats().errors, 2);

    app.set_kv_faults(KvFaults::default());
    assert_eq!(app.cron_tick("writer", 2).unwrap(), Ok(()));
    assert_eq!(app.kv_keys("default"), ["a", "before"]);
}

#[test]
fn sets_of_matching_keys_fail_and_other_operations_work() {
    let (_t, app) = load(
        "fault-match",
        &[(
            "writer_action",
            "kv-write:default:a:1;kv-read:default:a;kv-write:default:my-secret:2;kv-write:default:b:3",
        )],
    );
    app.kv_set("default", "my-secret", b"old").unwrap();
    app.set_kv_faults(KvFaults {
        fail_sets_matching: Some("secret".into()),
        ..KvFaults::default()
    });
    let err = app.cron_tick("writer", 1).unwrap().expect_err("must fail");
    assert!(
        err.contains(r#"set my-secret: Error::Other("injected: set \"my-secret\" fails"#),
        "{err}"
    );
    assert_eq!(app.kv_keys("default"), ["a", "my-secret"]);
    assert_eq!(
        app.kv_get("default", "my-secret").as_deref(),
        Some(&b"old"[..])
    );
    // Reads and deletes of that key still work.
    let (status, body) = reader(
        &app,
        "kv-read:default:my-secret;kv-delete:default:my-secret",
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("kv my-secret=old"), "{body}");

    app.clear_kv_faults();
    assert_eq!(app.cron_tick("writer", 2).unwrap(), Ok(()));
    assert_eq!(app.kv_keys("default"), ["a", "b", "my-secret"]);
}

#[test]
fn faults_apply_to_the_redis_backend_too() {
    let r = redis();
    let (_t, app) = load_kv(
        "fault-redis",
        &[("writer_action", "kv-writes:default:3")],
        KvBackend::Redis(r.url().into()),
    );
    app.set_kv_faults(KvFaults {
        fail_every_nth_op: Some(2),
        ..KvFaults::default()
    });
    let err = app.cron_tick("writer", 1).unwrap().expect_err("op 2 fails");
    assert!(err.contains(r#"set k1"#), "{err}");
    assert_eq!(app.kv_keys("default"), ["k0"]);
    app.clear_kv_faults();
    assert_eq!(app.cron_tick("writer", 2).unwrap(), Ok(()));
    assert_eq!(app.kv_keys("default"), ["k0", "k1", "k2"]);
}

/// Checkpoint, guest writes, loss: the store is back to the checkpoint.
fn checkpoint_and_loss(name: &str, kv: KvBackend) {
    let (_t, app) = load_kv(
        name,
        &[(
            "writer_action",
            "kv-write:default:cursor:2;kv-delete:default:gone;kv-write:default:alert-9:sent",
        )],
        kv,
    );
    assert!(
        app.kv_lose_writes_since_checkpoint().is_err(),
        "no checkpoint yet"
    );
    app.kv_set("default", "cursor", b"1").unwrap();
    app.kv_set("default", "gone", b"x").unwrap();
    app.kv_checkpoint();
    assert_eq!(app.cron_tick("writer", 1).unwrap(), Ok(()));
    assert_eq!(app.kv_keys("default"), ["alert-9", "cursor"]);

    assert_eq!(app.kv_lose_writes_since_checkpoint().unwrap(), 3);
    assert_eq!(app.kv_keys("default"), ["cursor", "gone"], "{name}");
    assert_eq!(app.kv_get("default", "cursor").as_deref(), Some(&b"1"[..]));
    // The guest sees the rolled-back state; redoing the work lands it again.
    let (_, body) = reader(&app, "kv-read:default:cursor;kv-read:default:alert-9");
    assert!(body.contains("kv cursor=1\nkv alert-9 missing"), "{body}");
    assert_eq!(app.cron_tick("writer", 2).unwrap(), Ok(()));
    assert_eq!(app.kv_get("default", "cursor").as_deref(), Some(&b"2"[..]));
    // The checkpoint stays: a second loss goes back to the same state.
    assert_eq!(app.kv_lose_writes_since_checkpoint().unwrap(), 3);
    assert_eq!(app.kv_keys("default"), ["cursor", "gone"], "{name}");
}

#[test]
fn checkpoint_and_loss_roll_back_memory() {
    checkpoint_and_loss("ckpt-mem", KvBackend::Memory);
}

#[test]
fn checkpoint_and_loss_roll_back_sqlite() {
    let dir = std::env::temp_dir().join(format!("test-host-ckpt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    checkpoint_and_loss("ckpt-sqlite", KvBackend::Sqlite(dir.join("kv.db")));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn checkpoint_and_loss_roll_back_redis() {
    let r = redis();
    checkpoint_and_loss("ckpt-redis", KvBackend::Redis(r.url().into()));
}

#[test]
fn stats_count_guest_calls_only() {
    let (_t, app) = load(
        "stats",
        &[(
            "writer_action",
            "kv-write:default:a:12345;kv-read:default:a;kv-read:default:missing;kv-exists:default:a;kv-keys:default;kv-delete:default:a;kv-writes:default:3",
        )],
    );
    app.kv_set("default", "setup", b"not counted").unwrap();
    app.kv_get("default", "setup");
    assert_eq!(app.kv_stats(), KvStats::default());

    assert_eq!(app.cron_tick("writer", 1).unwrap(), Ok(()));
    let expected = KvStats {
        gets: 2,
        sets: 4,
        deletes: 1,
        exists: 1,
        get_keys: 1,
        // "a" + "12345", then three times "kN" + "v".
        bytes_written: 6 + 3 * 3,
        errors: 0,
    };
    assert_eq!(app.kv_stats(), expected);
    assert_eq!((expected.reads(), expected.writes()), (4, 5));
    // setup (5 + 11) and k0..k2 (3 * 3).
    assert_eq!(app.kv_total_bytes("default"), (4, 16 + 9));
    assert_eq!(app.kv_total_bytes("nothing"), (0, 0));

    // Refused calls count as errors, not as operations.
    let (status, _) = reader(&app, "kv-bigkey:default:300");
    assert_eq!(status, 500);
    assert_eq!(
        app.kv_stats(),
        KvStats {
            errors: 1,
            ..expected
        }
    );

    app.reset_kv_stats();
    assert_eq!(app.kv_stats(), KvStats::default());
    let (status, _) = reader(&app, "kv-read:default:setup");
    assert_eq!(status, 200);
    assert_eq!(
        app.kv_stats(),
        KvStats {
            gets: 1,
            ..KvStats::default()
        }
    );
}

#[test]
fn redis_and_sqlite_report_the_same_totals_as_memory() {
    let r = redis();
    let dir = std::env::temp_dir().join(format!("test-host-totals-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for kv in [
        KvBackend::Memory,
        KvBackend::Sqlite(dir.join("kv.db")),
        KvBackend::Redis(r.url().into()),
    ] {
        let (_t, app) = load_kv(
            "totals",
            &[(
                "writer_action",
                "kv-writes:default:3;kv-write:default:é:ünï",
            )],
            kv.clone(),
        );
        assert_eq!(app.cron_tick("writer", 1).unwrap(), Ok(()));
        // k0..k2 (3 * 3 bytes) and "é" (2 bytes) + "ünï" (5 bytes).
        assert_eq!(app.kv_total_bytes("default"), (4, 9 + 7), "{kv:?}");
        assert_eq!(app.kv_stats().bytes_written, 9 + 7, "{kv:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
