//! Load: `LOAD_ALERTS` alerts (default 5,000) over `LOAD_ALERTS * 2 / 5`
//! distinct URLs (2,000 for the default), most in `urlEvidence`, every tenth
//! only through hunting, on the Redis backend, with the simulators enforcing
//! the documented rate quotas (429 beyond them). One round (poller, vmray,
//! defender) per simulated minute. Every alert must get its comment, every
//! URL exactly one submission, no alert more than one comment per URL.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde_json::json;
use simulators::{Quotas, Scenario};
use support::Harness;
use test_host::redis_server::TestRedis;
use test_host::KvBackend;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn url(i: usize) -> String {
    format!("http://load{}.example/p/{i}", i % 97)
}

fn scenario(alerts: usize, urls: usize) -> Scenario {
    let mut list = Vec::new();
    let mut mails = Vec::new();
    for a in 0..alerts {
        let u = url(a % urls);
        let evidence = if a % 10 == 9 {
            let nm = format!("22222222-0000-0000-0000-{a:012}");
            mails.push(json!({"network_message_id": nm, "urls": [{"url": u, "age_hours": 1}]}));
            json!([{"@odata.type": "#microsoft.graph.security.analyzedMessageEvidence",
                     "networkMessageId": nm, "urls": [], "urlCount": 1}])
        } else {
            json!([{"@odata.type": "#microsoft.graph.security.urlEvidence", "url": u}])
        };
        list.push(json!({
            "id": format!("load-{a}"),
            "incident_id": format!("{}", 5000 + a / 10),
            "severity": "medium",
            "age_minutes": 10,
            "evidence": evidence,
        }));
    }
    Scenario::from_json(
        &json!({"alerts": list, "mails": mails, "alert_page_size": 100}).to_string(),
    )
    .unwrap()
}

#[test]
fn thousands_of_alerts_under_the_documented_quotas() {
    let alerts = env_usize("LOAD_ALERTS", 5000);
    let urls = (alerts * 2 / 5).max(1);
    let max_rounds = env_usize("LOAD_MAX_ROUNDS", 600);
    let redis = TestRedis::start().expect("redis-server (apt-get install -y redis-server)");
    let h = Harness::start_with(
        scenario(alerts, urls),
        &[("log_level", "info")],
        "spin.toml",
        KvBackend::Redis(redis.url().to_string()),
    );
    h.sims.set_quotas(Quotas::documented());
    let started = Instant::now();
    let mut per_component = BTreeMap::<&str, f64>::new();
    let mut rounds = 0;
    let mut done = false;
    while rounds < max_rounds {
        rounds += 1;
        for c in support::COMPONENTS {
            let t = Instant::now();
            let _ = h.tick(c);
            *per_component.entry(c).or_default() += t.elapsed().as_secs_f64();
        }
        h.advance(60);
        let s = h.sims.state();
        if s.comments.len() >= alerts {
            done = true;
            break;
        }
    }
    let s = h.sims.state();
    eprintln!(
        "load: {alerts} alerts, {urls} URLs on Redis under documented quotas: {} of them commented after {rounds} rounds ({} ticks), {:.1} s wall; seconds per component {per_component:?}; throttled {:?}",
        s.comments.len(),
        rounds * 3,
        started.elapsed().as_secs_f64(),
        s.throttled
    );
    assert!(done, "not every alert was commented after {rounds} rounds");
    // No lost alert, no duplicate comment.
    for a in 0..alerts {
        let id = format!("load-{a}");
        let cs = s.comment_texts(&id);
        assert_eq!(cs.len(), 1, "alert {id}: {cs:?}");
    }
    // One submission per URL.
    let mut seen = BTreeSet::new();
    for sub in &s.vmray_submissions {
        let u = sub.url.clone().unwrap_or_default();
        assert!(seen.insert(u.clone()), "{u} submitted twice");
    }
    assert_eq!(seen.len(), urls, "every URL submitted once");
    let (max_key, max_value) = max_sizes(&h);
    eprintln!("load: longest key {max_key} bytes, largest value {max_value} bytes");
}

/// Longest key and largest value, within every Spin backend's limits
/// (Cosmos DB keys ≤ 255 characters; values far below the 1 MB all take).
fn max_sizes(h: &Harness) -> (usize, usize) {
    let keys = h.app.kv_keys("default");
    let max_key = keys.iter().map(String::len).max().unwrap_or(0);
    let max_value = keys
        .iter()
        .filter_map(|k| h.app.kv_get("default", k))
        .map(|v| v.len())
        .max()
        .unwrap_or(0);
    assert!(max_key <= 255, "a key of {max_key} bytes");
    assert!(max_value <= 512 * 1024, "a value of {max_value} bytes");
    (max_key, max_value)
}
