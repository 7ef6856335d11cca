//! Kill a tick at each recorded state transition (the test host traps the
//! component instead of applying its next key-value write), then run ticks to
//! completion: what the simulators recorded must equal an uninterrupted run —
//! nothing lost, nothing written or submitted twice.

mod support;

use support::{normalized, rich_scenario as scenario, Harness, COMPONENTS};

/// The uninterrupted schedule: rounds of poller, vmray, defender.
const ROUNDS: usize = 4;

fn schedule() -> Vec<&'static str> {
    (0..ROUNDS).flat_map(|_| COMPONENTS).collect()
}

fn finish(h: &Harness) {
    for _ in 0..ROUNDS + 2 {
        h.round();
    }
}

#[test]
fn a_tick_killed_at_any_transition_changes_nothing_in_the_end() {
    let base = Harness::start(scenario(), &[]);
    finish(&base);
    let baseline = normalized(&base, &base.sims.state());
    assert_eq!(
        baseline.submissions,
        vec!["http://drop.example/get".to_string()]
    );
    assert_eq!(baseline.comments.len(), 3, "{:#?}", baseline.comments);
    assert!(baseline.indicators.len() >= 3);
    drop(base);

    let mut kills = 0;
    for (t, victim) in schedule().into_iter().enumerate() {
        for w in 0.. {
            let h = Harness::start(scenario(), &[]);
            for c in &schedule()[..t] {
                h.tick(c).unwrap_or_else(|e| panic!("{c}: {e}"));
            }
            h.app.set_trap_after_kv_writes(Some(w));
            let outcome = h.app.cron_tick(victim, h.app.now_unix_secs());
            if matches!(outcome, Ok(Ok(()))) {
                break; // the tick made fewer than w+1 writes: every point of it was tried
            }
            assert!(
                outcome.is_err(),
                "tick {t} ({victim}) should have trapped, got {outcome:?}"
            );
            kills += 1;
            finish(&h);
            let got = normalized(&h, &h.sims.state());
            assert_eq!(
                got,
                baseline,
                "killed {victim} (tick {t}) before its write #{}",
                w + 1
            );
        }
    }
    println!(
        "crash test: {kills} kills over {} ticks, every run converged to the uninterrupted result",
        schedule().len()
    );
    assert!(kills >= 15, "only {kills} transitions were exercised");
}
