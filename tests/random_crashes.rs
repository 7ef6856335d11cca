//! Seeded random crashes, beyond `tests/crash.rs`'s one-kill-per-run sweep:
//! each world runs the usual schedule (rounds of poller, vmray, defender) and
//! kills one to three random ticks at a random key-value write
//! (`App::set_trap_after_kv_writes`), then runs to completion. What the
//! simulators recorded must equal the uninterrupted run: nothing lost,
//! nothing written or submitted twice.
//!
//! `RANDOM_CRASHES=N` (default 200) sets the number of worlds,
//! `RANDOM_CRASHES_SEED=S` the first seed (default 1; world i uses S + i).

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use support::{normalized, rich_scenario, Harness, Written, COMPONENTS};

/// Rounds in the schedule the kills are placed in, and rounds to finish after.
const ROUNDS: usize = 4;
const FINISH_ROUNDS: usize = 6;

/// xorshift64*: tiny, seeded, good enough to place kills.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One world: returns the kills that really trapped, or why it diverged.
fn world(seed: u64, baseline: &Written) -> Result<usize, String> {
    let mut rng = Rng::new(seed);
    let schedule: Vec<&str> = (0..ROUNDS).flat_map(|_| COMPONENTS).collect();
    let n_kills = 2 + rng.below(3) as usize;
    let mut plan: Vec<(usize, usize)> = (0..n_kills)
        .map(|_| {
            (
                rng.below(schedule.len() as u64) as usize,
                rng.below(7) as usize,
            )
        })
        .collect();
    plan.sort();
    plan.dedup_by_key(|(t, _)| *t);
    let h = Harness::start(rich_scenario(), &[]);
    let mut trapped = 0;
    for (t, c) in schedule.iter().enumerate() {
        let kill = plan.iter().find(|(k, _)| *k == t).map(|(_, w)| *w);
        h.app.set_trap_after_kv_writes(kill);
        let outcome = h.app.cron_tick(c, h.app.now_unix_secs());
        h.app.set_trap_after_kv_writes(None);
        match outcome {
            Err(_) if kill.is_some() => trapped += 1,
            Err(e) => return Err(format!("tick {t} ({c}) trapped unasked: {e:#}")),
            Ok(_) => {}
        }
    }
    for _ in 0..FINISH_ROUNDS {
        let errs = h.round_lenient();
        if !errs.is_empty() {
            return Err(format!("finishing ticks failed: {errs:?}"));
        }
    }
    let got = normalized(&h, &h.sims.state());
    if !support::equivalent(&got, baseline) {
        return Err(format!(
            "plan {plan:?} (tick, write index): diverged\n got: {got:#?}\n want: {baseline:#?}\n{}",
            h.log_text()
        ));
    }
    Ok(trapped)
}

#[test]
fn seeded_random_kills_converge_to_the_uninterrupted_result() {
    let worlds = env_u64("RANDOM_CRASHES", 200) as usize;
    let first_seed = env_u64("RANDOM_CRASHES_SEED", 1);
    let base = Harness::start(rich_scenario(), &[]);
    for _ in 0..FINISH_ROUNDS {
        base.round();
    }
    let baseline = normalized(&base, &base.sims.state());
    assert_eq!(baseline.comments.len(), 3, "{baseline:#?}");
    drop(base);

    let started = std::time::Instant::now();
    let next = AtomicUsize::new(0);
    let kills = AtomicUsize::new(0);
    let failures: Mutex<Vec<(u64, String)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= worlds {
                    break;
                }
                let seed = first_seed + i as u64;
                match world(seed, &baseline) {
                    Ok(k) => {
                        kills.fetch_add(k, Ordering::SeqCst);
                    }
                    Err(e) => failures.lock().unwrap().push((seed, e)),
                }
            });
        }
    });
    let kills = kills.into_inner();
    let failures = failures.into_inner().unwrap();
    eprintln!(
        "random crashes: {worlds} worlds (seeds {first_seed}..={}), {kills} kills that trapped a tick, {} diverged, {:.1} s",
        first_seed + worlds as u64 - 1,
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some((seed, e)) = failures.first() {
        panic!(
            "{} world(s) diverged, seeds {:?}; rerun one with RANDOM_CRASHES=1 RANDOM_CRASHES_SEED={seed}\n{e}",
            failures.len(),
            failures.iter().map(|(s, _)| *s).collect::<Vec<_>>()
        );
    }
    assert!(
        kills >= worlds.min(200),
        "only {kills} kills trapped over {worlds} worlds: the plan misses the writes"
    );
}
