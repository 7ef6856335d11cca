//! Key-value faults and real stores: errors every Nth operation, a store that
//! is down, sets of one record kind failing, and a store without persistence
//! that restarts and loses its recent writes (checkpoint / loss). In every
//! case the connector either recovers — what was written ends equal to the
//! fault-free run, nothing lost, nothing repeated — or stops with a clear
//! error in its log. Also: the end-to-end scenario on Redis, and the key and
//! value sizes the connector writes stay within every Spin backend's limits.

mod support;

use support::{normalized, rich_scenario, Harness, Written, COMPONENTS};
use test_host::redis_server::TestRedis;
use test_host::{KvBackend, KvFaults};

const FINISH_ROUNDS: usize = 8;

fn baseline() -> Written {
    let h = Harness::start(rich_scenario(), &[]);
    for _ in 0..6 {
        h.round();
    }
    let w = normalized(&h, &h.sims.state());
    assert_eq!(w.comments.len(), 3, "{w:#?}");
    w
}

fn finish(h: &Harness) {
    h.app.clear_kv_faults();
    for _ in 0..FINISH_ROUNDS {
        h.round_lenient();
    }
}

fn assert_same(h: &Harness, want: &Written, what: &str) {
    let got = normalized(h, &h.sims.state());
    assert!(
        support::equivalent(&got, want),
        "{what}\n got: {got:#?}\n want: {want:#?}\n{}",
        h.log_text()
    );
}

/// Every tick that met a store error failed with an error naming the store.
fn assert_store_errors_logged(h: &Harness, what: &str) {
    let logs = h.app.logs();
    let failed: Vec<_> = logs
        .iter()
        .filter(|l| l.line.contains("\"event\":\"tick_failed\""))
        .collect();
    for l in &failed {
        assert!(
            l.line.contains("key-value") || l.line.contains("injected"),
            "{what}: a tick failed without naming the store: {}",
            l.line
        );
    }
}

#[test]
fn errors_every_nth_operation() {
    let want = baseline();
    for n in [2, 3, 5, 7, 11, 17] {
        let h = Harness::start(rich_scenario(), &[]);
        h.app.set_kv_faults(KvFaults {
            fail_every_nth_op: Some(n),
            ..Default::default()
        });
        for _ in 0..6 {
            h.round_lenient();
        }
        assert_store_errors_logged(&h, &format!("every {n}th op"));
        finish(&h);
        assert_same(&h, &want, &format!("every {n}th KV op failing"));
    }
    eprintln!("kv faults: every Nth op failing for N in 2,3,5,7,11,17: converged");
}

#[test]
fn store_down_then_back() {
    let want = baseline();
    for down_from_round in 0..3 {
        let h = Harness::start(rich_scenario(), &[]);
        for _ in 0..down_from_round {
            h.round();
        }
        h.app.set_kv_faults(KvFaults {
            unavailable: true,
            ..Default::default()
        });
        for _ in 0..2 {
            let errs = h.round_lenient();
            assert_eq!(
                errs.len(),
                3,
                "every tick must fail while the store is down"
            );
        }
        let logged = h
            .app
            .logs()
            .iter()
            .filter(|l| l.line.contains("\"level\":\"error\"") && l.line.contains("key-value"))
            .count();
        assert!(
            logged >= 3,
            "the outage is not logged as an error naming the store"
        );
        finish(&h);
        assert_same(
            &h,
            &want,
            &format!("store down from round {down_from_round}"),
        );
    }
    eprintln!("kv faults: store down for two rounds (from rounds 0, 1, 2): stopped with a logged error, then converged");
}

#[test]
fn sets_of_one_record_kind_failing() {
    let want = baseline();
    let kinds = [
        "poll:cursor",
        "poll:open",
        ":alert:",
        ":url:",
        ":sample:",
        ":va:",
        ":wb:",
        ":ind:",
        ":inc:",
    ];
    for kind in kinds {
        let h = Harness::start(rich_scenario(), &[]);
        h.app.set_kv_faults(KvFaults {
            fail_sets_matching: Some(kind.to_string()),
            ..Default::default()
        });
        for _ in 0..4 {
            h.round_lenient();
        }
        finish(&h);
        assert_same(&h, &want, &format!("sets of `{kind}` failing for 4 rounds"));
    }
    eprintln!("kv faults: sets failing for {kinds:?}: converged");
}

/// For every tick of the schedule: the store loses what that tick wrote
/// (a Redis without persistence restarting right after it), and also what a
/// whole round wrote.
#[test]
fn lost_writes_are_redone_without_repeating_work() {
    let want = baseline();
    let schedule: Vec<&str> = (0..4).flat_map(|_| COMPONENTS).collect();
    let mut lost_total = 0;
    for t in 0..schedule.len() {
        let h = Harness::start(rich_scenario(), &[]);
        for c in &schedule[..t] {
            h.tick(c).unwrap_or_else(|e| panic!("{c}: {e}"));
        }
        h.app.kv_checkpoint();
        let _ = h.tick(schedule[t]);
        let lost = h.app.kv_lose_writes_since_checkpoint().expect("undo");
        lost_total += lost;
        finish(&h);
        assert_same(
            &h,
            &want,
            &format!("tick {t} ({}) lost its {lost} writes", schedule[t]),
        );
    }
    for r in 0..4 {
        let h = Harness::start(rich_scenario(), &[]);
        for _ in 0..r {
            h.round();
        }
        h.app.kv_checkpoint();
        h.round_lenient();
        h.round_lenient();
        let lost = h.app.kv_lose_writes_since_checkpoint().expect("undo");
        lost_total += lost;
        finish(&h);
        assert_same(
            &h,
            &want,
            &format!("rounds {r}–{} lost {lost} writes", r + 1),
        );
    }
    eprintln!(
        "kv faults: lost writes after each of {} ticks and each of 4 round pairs ({lost_total} keys rolled back): converged, nothing repeated",
        schedule.len()
    );
}

#[test]
fn end_to_end_on_redis_and_sizes_within_limits() {
    let want = baseline();
    let redis = TestRedis::start().expect("redis-server (apt-get install -y redis-server)");
    let h = Harness::start_with(
        rich_scenario(),
        &[],
        "spin.toml",
        KvBackend::Redis(redis.url().to_string()),
    );
    for _ in 0..6 {
        h.round();
    }
    assert_same(&h, &want, "on Redis");
    let (max_key, max_value) = max_sizes(&h);
    eprintln!(
        "kv on redis: converged; longest key {max_key} bytes, largest value {max_value} bytes"
    );
}

/// The longest key and largest value in the store, asserted within the
/// tightest Spin backend's limits (Cosmos DB: keys ≤ 255 characters; values
/// kept far below the 1 MB every backend takes, and Cosmos' 2 MB item).
pub fn max_sizes(h: &Harness) -> (usize, usize) {
    let keys = h.app.kv_keys("default");
    assert!(!keys.is_empty());
    let max_key = keys.iter().map(String::len).max().unwrap();
    let max_value = keys
        .iter()
        .filter_map(|k| h.app.kv_get("default", k))
        .map(|v| v.len())
        .max()
        .unwrap();
    assert!(max_key <= 255, "a key of {max_key} bytes");
    assert!(
        keys.iter().all(|k| !k.contains(['/', '\\', '?', '#'])),
        "keys must not hold / \\ ? # (Cosmos ids)"
    );
    assert!(max_value <= 512 * 1024, "a value of {max_value} bytes");
    (max_key, max_value)
}
