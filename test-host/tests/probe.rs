//! End-to-end tests of the test host with the probe component
//! (`fixtures/probe`, built by `test-host/build-fixtures.sh`).

mod common;

use common::{lines, load, TempApp, MANIFEST};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;
use test_host::{App, AppConfig, KvBackend, Stream};

/// Serves `count` HTTP/1.1 requests on loopback with body `hello`, then stops.
fn loopback_server(count: usize) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..count {
            let (mut conn, _) = listener.accept().unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buf);
            seen.push(head.lines().next().unwrap_or("").to_string());
            conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
            )
            .unwrap();
        }
        seen
    });
    (port, handle)
}

#[test]
fn cron_tick_writes_kv_that_an_http_component_reads() {
    let (_t, app) = load(
        "kv-share",
        &[("writer_action", "kv-write:default:greeting:hi;print:done")],
    );
    assert_eq!(app.cron_tick("writer", 42).unwrap(), Ok(()));
    assert_eq!(
        app.kv_get("default", "greeting").as_deref(),
        Some(&b"hi"[..])
    );
    assert_eq!(app.kv_keys("default"), ["greeting"]);
    assert_eq!(lines(&app, "writer", Stream::Stdout), ["tick 42", "done"]);

    let resp = app
        .http(
            "POST",
            "/reader/x?y=1",
            &[("x-test", "1")],
            b"kv-read:default:greeting",
        )
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body_text());
    assert_eq!(resp.header("x-probe"), Some("1"));
    let body = resp.body_text();
    assert!(body.contains("POST /reader/x?y=1"), "{body}");
    assert!(body.contains("kv greeting=hi"), "{body}");
}

#[test]
fn variables_are_rendered_per_component_with_overrides() {
    let (_t, app) = load(
        "vars",
        &[
            ("writer_action", "var:token;var:greeting;var:nope;var:Bad"),
            ("greeting", "hey"),
        ],
    );
    assert_eq!(app.cron_tick("writer", 1).unwrap(), Ok(()));
    let out = lines(&app, "writer", Stream::Stdout).join("\n");
    assert!(out.contains("var token=Bearer t0k"), "{out}");
    assert!(out.contains("var greeting=hey"), "{out}");
    assert!(out.contains("var-error nope: Error::Undefined"), "{out}");
    assert!(out.contains("var-error Bad: Error::InvalidName"), "{out}");

    // The reader declares no variables: it sees none of the writer's.
    let resp = app.http("POST", "/reader", &[], b"var:token").unwrap();
    assert!(
        resp.body_text()
            .contains("var-error token: Error::Undefined"),
        "{}",
        resp.body_text()
    );
}

#[test]
fn a_required_variable_without_value_fails_load() {
    let t = TempApp::new("required", MANIFEST);
    let err = format!(
        "{:#}",
        t.load(&[], KvBackend::Memory).err().expect("must fail")
    );
    assert!(err.contains("token"), "{err}");
}

#[test]
fn a_denied_outbound_request_fails_in_the_guest_and_is_recorded() {
    let (_t, app) = load(
        "denied",
        &[("writer_action", "http-get:http://127.0.0.1:9/x")],
    );
    let result = app.cron_tick("writer", 1).unwrap();
    let err = result.expect_err("request must fail");
    assert!(err.contains("HttpRequestDenied"), "{err}");
    assert_eq!(
        app.denied_requests(),
        [("writer".to_string(), "http://127.0.0.1:9/x".to_string())]
    );
    assert!(lines(&app, "writer", Stream::Host)
        .iter()
        .any(|l| l.contains("denied outbound request to http://127.0.0.1:9/x")));
}

#[test]
fn an_allowed_outbound_request_really_goes_out() {
    let (port, server) = loopback_server(1);
    let upstream = format!("http://127.0.0.1:{port}");
    let action = format!("http-get:{upstream}/api/thing");
    let (_t, app) = load(
        "allowed",
        &[
            ("upstream", upstream.as_str()),
            ("writer_action", action.as_str()),
        ],
    );
    assert_eq!(app.cron_tick("writer", 1).unwrap(), Ok(()));
    assert_eq!(server.join().unwrap(), ["GET /api/thing HTTP/1.1"]);
    let out = lines(&app, "writer", Stream::Stdout).join("\n");
    assert!(out.contains("http 200 hello"), "{out}");
    assert!(app.denied_requests().is_empty());
}

#[test]
fn kv_labels_not_declared_by_the_component_are_access_denied() {
    let (_t, app) = load(
        "kv-denied",
        &[
            ("nokv_action", "kv-write:default:a:b"),
            ("writer_action", "kv-write:other:a:b"),
        ],
    );
    let err = app
        .cron_tick("nokv", 1)
        .unwrap()
        .expect_err("must be denied");
    assert!(err.contains("AccessDenied"), "{err}");
    let err = app
        .cron_tick("writer", 1)
        .unwrap()
        .expect_err("must be denied");
    assert!(err.contains("AccessDenied"), "{err}");
    assert!(app.kv_keys("default").is_empty());
}

#[test]
fn keys_over_256_bytes_are_rejected() {
    let (_t, app) = load("bigkey", &[("writer_action", "kv-bigkey:default:257")]);
    let err = app.cron_tick("writer", 1).unwrap().expect_err("must fail");
    assert!(err.contains("limit is 256 bytes"), "{err}");
    assert!(app.kv_keys("default").is_empty());

    let (_t2, app) = load("bigkey-ok", &[("writer_action", "kv-bigkey:default:256")]);
    assert_eq!(app.cron_tick("writer", 1).unwrap(), Ok(()));
    assert_eq!(app.kv_keys("default"), ["x".repeat(256)]);
}

#[test]
fn the_sqlite_backend_persists_across_apps() {
    let t = TempApp::new("sqlite", MANIFEST);
    let db = t.dir.join(".spin/kv.db");
    {
        let app = t
            .load(
                &[
                    ("token", "t"),
                    ("writer_action", "kv-write:default:k:persisted"),
                ],
                KvBackend::Sqlite(db.clone()),
            )
            .unwrap();
        assert_eq!(app.cron_tick("writer", 1).unwrap(), Ok(()));
    }
    let app = t
        .load(&[("token", "t")], KvBackend::Sqlite(db.clone()))
        .unwrap();
    assert_eq!(
        app.kv_get("default", "k").as_deref(),
        Some(&b"persisted"[..])
    );
    let resp = app
        .http("POST", "/reader/", &[], b"kv-read:default:k")
        .unwrap();
    assert!(
        resp.body_text().contains("kv k=persisted"),
        "{}",
        resp.body_text()
    );
}

#[test]
fn injected_trap_stops_the_guest_after_n_writes_once() {
    let (_t, app) = load("trap", &[("writer_action", "kv-writes:default:5")]);
    app.set_trap_after_kv_writes(Some(2));
    let err = format!("{:#}", app.cron_tick("writer", 1).expect_err("must trap"));
    assert!(err.contains("injected trap"), "{err}");
    assert_eq!(app.kv_keys("default"), ["k0", "k1"]);
    // One-shot: the next tick runs normally.
    assert_eq!(app.cron_tick("writer", 2).unwrap(), Ok(()));
    assert_eq!(app.kv_keys("default").len(), 5);
}

#[test]
fn guest_errors_and_panics_are_told_apart() {
    let (_t, app) = load("fail", &[("writer_action", "eprint:oops;fail:boom")]);
    assert_eq!(app.cron_tick("writer", 1).unwrap(), Err("boom".to_string()));
    assert_eq!(lines(&app, "writer", Stream::Stderr), ["oops"]);

    let (_t2, app) = load("panic", &[("writer_action", "panic")]);
    let err = format!("{:#}", app.cron_tick("writer", 1).expect_err("must trap"));
    assert!(err.contains("writer"), "{err}");
    assert!(lines(&app, "writer", Stream::Stderr)
        .join("\n")
        .contains("probe asked to panic"));
}

#[test]
fn advance_clock_shifts_the_guest_wall_clock() {
    let (_t, app) = load("clock", &[("writer_action", "clock")]);
    let read = |app: &App| -> u64 {
        app.cron_tick("writer", 1).unwrap().unwrap();
        let last = lines(app, "writer", Stream::Stdout)
            .into_iter()
            .rev()
            .find(|l| l.starts_with("clock "))
            .unwrap();
        last["clock ".len()..].parse().unwrap()
    };
    let before = read(&app);
    app.advance_clock(Duration::from_secs(86_400));
    let after = read(&app);
    assert!(
        after >= before + 86_400 && after < before + 86_400 + 60,
        "{before} {after}"
    );
}

#[test]
fn routes_and_triggers_are_listed_and_unmatched_paths_are_404() {
    let (_t, app) = load("routes", &[]);
    assert_eq!(
        app.cron_components(),
        [
            ("writer".to_string(), "0 */5 * * * *".to_string()),
            ("nokv".to_string(), "30 * * * * *".to_string())
        ]
    );
    assert_eq!(
        app.http_routes(),
        [("/reader/...".to_string(), "reader".to_string())]
    );
    assert_eq!(app.http("GET", "/nowhere", &[], b"").unwrap().status, 404);
    assert!(
        app.cron_tick("reader", 1).is_err(),
        "reader has no cron trigger"
    );
}

#[test]
fn a_component_importing_something_unprovided_fails_to_load() {
    let t = TempApp::new(
        "unprovided",
        r#"
spin_manifest_version = 2
[application]
name = "x"
[component.llm]
source = "llm.wasm"
[[trigger.cron]]
component = "llm"
cron_expression = "0 * * * * *"
"#,
    );
    let wasm = wat::parse_str(
        r#"(component
             (import "fermyon:spin/llm@2.0.0" (instance (export "infer" (func))))
           )"#,
    )
    .unwrap();
    std::fs::write(t.dir.join("llm.wasm"), wasm).unwrap();
    let err = App::load(&t.manifest(), AppConfig::default())
        .err()
        .expect("must fail");
    let err = format!("{err:#}");
    assert!(err.contains("fermyon:spin/llm@2.0.0"), "{err}");
}
