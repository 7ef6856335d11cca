//! Egress: the connector never fetches a URL it analyses (VMRay does), and it
//! refuses plain-`http://` base URLs that are not loopback before making any
//! request. (Per-component host allow-lists: tests/sandbox.rs.)

mod support;

use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use simulators::Scenario;
use support::Harness;

/// A loopback HTTP listener that counts every connection made to it.
struct Trap {
    url: String,
    port: u16,
    hits: Arc<AtomicUsize>,
}

fn trap() -> Trap {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut c = conn;
            let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf);
            let _ = std::io::Write::write_all(
                &mut c,
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            );
        }
    });
    Trap {
        url: format!("http://127.0.0.1:{port}/phish/login?user=a"),
        port,
        hits,
    }
}

#[test]
fn analysed_urls_are_never_fetched_by_the_connector() {
    let by_evidence = trap();
    let by_hunting = trap();
    let scenario = support::scenario(json!({
        "alerts": [
            support::url_alert("egress-1", "601", &[&by_evidence.url]),
            support::mail_alert("egress-2", "602", "0c1e7b0a-eeee-4444-8888-000000000001"),
        ],
        "mails": [{"network_message_id": "0c1e7b0a-eeee-4444-8888-000000000001",
                   "urls": [{"url": by_hunting.url, "location": "Body", "age_hours": 1}]}],
        "vmray": {"analysis_delay_seconds": 0, "urls": {
            by_evidence.url.clone(): {"verdict": "malicious",
                "iocs": {"urls": [{"url": by_evidence.url, "verdict": "malicious"}]}},
            by_hunting.url.clone(): {"verdict": "suspicious"}}}
    }));
    let h = Harness::start(scenario, &[]);
    h.run_until(8, |s| support::all_commented(s, &["egress-1", "egress-2"]));
    h.round();
    let s = h.sims.state();
    let submitted: Vec<String> = s
        .vmray_submissions
        .iter()
        .filter_map(|x| x.url.clone())
        .collect();
    assert!(
        submitted.contains(&by_evidence.url) && submitted.contains(&by_hunting.url),
        "both URLs went to VMRay: {submitted:?}"
    );
    assert!(
        s.indicator(&by_evidence.url).is_some(),
        "and became an indicator"
    );
    std::thread::sleep(Duration::from_millis(300));
    for t in [&by_evidence, &by_hunting] {
        assert_eq!(
            t.hits.load(Ordering::SeqCst),
            0,
            "the connector connected to the URL under analysis {}",
            t.url
        );
        let port = format!(":{}", t.port);
        assert!(
            !h.app
                .denied_requests()
                .iter()
                .any(|(_, u)| u.contains(&port)),
            "a component even tried to fetch {}: {:?}",
            t.url,
            h.app.denied_requests()
        );
    }
    println!(
        "egress: 2 analysed loopback URLs (evidence, hunting), 0 connections, 0 attempts; {} calls all to the simulators",
        s.calls.len()
    );
}

/// Which components read each base URL.
const BASE_URLS: [(&str, &[&str]); 4] = [
    ("login_base_url", &["poller", "defender"]),
    ("graph_base_url", &["poller", "defender"]),
    ("defender_base_url", &["defender"]),
    ("vmray_base_url", &["vmray"]),
];

#[test]
fn plain_http_base_urls_are_refused_unless_loopback() {
    let bad_values = [
        "http://graph.example.com",
        "http://10.0.0.1:8080",
        "http://169.254.169.254",
        "http://127.0.0.1.nip.io:8080",
        "http://localhost.attacker.example",
    ];
    let mut checked = 0;
    for (variable, components) in BASE_URLS {
        for value in bad_values {
            let h = Harness::start(Scenario::demo(), &[(variable, value)]);
            for c in components.iter().copied() {
                let r = h.app.cron_tick(c, 0).expect("no trap");
                let err = r.expect_err(&format!("{c} ran with {variable}={value}"));
                assert!(
                    err.contains(variable),
                    "{c}: the error names the variable: {err}"
                );
                let logged = h.events(c).iter().any(|e| {
                    e["level"] == "error"
                        && e.to_string().contains(variable)
                        && e["event"] == "config_invalid"
                });
                assert!(logged, "{c}: config_invalid logged naming {variable}");
                checked += 1;
            }
            assert!(
                h.sims.state().calls.is_empty(),
                "{variable}={value}: a request was made: {:?}",
                h.sims.state().calls
            );
            assert!(
                h.app.denied_requests().is_empty(),
                "{variable}={value}: a request was attempted: {:?}",
                h.app.denied_requests()
            );
        }
    }
    println!("egress: {checked} (variable, value, component) refusals, no request made");
}
