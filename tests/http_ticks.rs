//! Hosts without cron: the same crates, built without the cron export, serve
//! `POST /tick/<component>` behind `tick_token` (spin-http.toml).

mod support;

use simulators::Scenario;
use support::{Harness, COMPONENTS};
use test_host::KvBackend;

const TOKEN: &str = "a-long-scheduler-token-0123456789";

fn harness() -> Harness {
    Harness::start_with(
        Scenario::demo(),
        &[("tick_token", TOKEN)],
        "spin-http.toml",
        KvBackend::Memory,
    )
}

#[test]
fn routes_need_the_token_and_post() {
    let h = harness();
    let routes = h.app.http_routes();
    assert_eq!(routes.len(), 3, "{routes:?}");
    assert!(
        h.app.cron_components().is_empty(),
        "spin-http.toml names no cron trigger"
    );
    let bearer = format!("Bearer {TOKEN}");
    for c in COMPONENTS {
        let path = format!("/tick/{c}");
        let none = h.app.http("POST", &path, &[], b"").unwrap();
        assert_eq!(none.status, 401, "{c} without a token");
        let wrong = h
            .app
            .http(
                "POST",
                &path,
                &[("authorization", "Bearer a-long-scheduler-token-0123456780")],
                b"",
            )
            .unwrap();
        assert_eq!(wrong.status, 401, "{c} with a wrong token");
        let get = h
            .app
            .http("GET", &path, &[("authorization", &bearer)], b"")
            .unwrap();
        assert_eq!(get.status, 405, "{c} with GET");
    }
    assert!(h.sims.state().calls.is_empty(), "refused ticks did no work");
}

#[test]
fn http_ticks_run_the_connector_end_to_end() {
    let h = harness();
    let bearer = format!("Bearer {TOKEN}");
    for _ in 0..6 {
        for c in COMPONENTS {
            let r = h
                .app
                .http(
                    "POST",
                    &format!("/tick/{c}"),
                    &[("authorization", &bearer)],
                    b"",
                )
                .unwrap();
            assert_eq!(r.status, 200, "{c}: {}", r.body_text());
            let summary: serde_json::Value =
                serde_json::from_slice(&r.body).expect("summary is JSON");
            assert!(summary.is_object());
        }
    }
    let s = h.sims.state();
    for alert in [
        "da-user-reported-1",
        "da-url-click-2",
        "da-url-removed-3",
        "da-teams-4",
    ] {
        assert!(!s.comment_texts(alert).is_empty(), "{alert} got no comment");
    }
    assert!(!s.indicators.is_empty());
}

#[test]
fn a_short_configured_token_refuses_everything() {
    let h = Harness::start_with(
        Scenario::demo(),
        &[("tick_token", "short")],
        "spin-http.toml",
        KvBackend::Memory,
    );
    let r = h
        .app
        .http(
            "POST",
            "/tick/poller",
            &[("authorization", "Bearer short")],
            b"",
        )
        .unwrap();
    assert_eq!(r.status, 401);
}
