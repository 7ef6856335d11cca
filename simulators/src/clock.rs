//! The simulated clock: real UTC now plus an offset that tests can advance.

use chrono::{DateTime, SubsecRound, Utc};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A shared clock. Cloning gives another handle on the same offset.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset: Arc<Mutex<chrono::Duration>>,
}

impl Clock {
    /// A clock that starts at real time (offset zero).
    pub fn new() -> Self {
        Self::default()
    }

    /// The simulated "now", truncated to milliseconds (the precision Graph serialises),
    /// so that a timestamp read from a response compares equal to the stored one.
    pub fn now(&self) -> DateTime<Utc> {
        (Utc::now() + self.offset()).trunc_subsecs(3)
    }

    /// How far the simulated clock is ahead of real time.
    pub fn offset(&self) -> chrono::Duration {
        *self.offset.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the simulated clock forward.
    pub fn advance(&self, by: Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        let mut offset = self.offset.lock().unwrap_or_else(|e| e.into_inner());
        *offset += by;
    }

    /// Moves the simulated clock forward by whole seconds.
    pub fn advance_secs(&self, seconds: u64) {
        self.advance(Duration::from_secs(seconds));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_moves_now_forward() {
        let clock = Clock::new();
        let before = clock.now();
        clock.advance_secs(3600);
        let after = clock.now();
        assert!(after - before >= chrono::Duration::seconds(3600));
        assert!(after - before < chrono::Duration::seconds(3700));
        let other = clock.clone();
        other.advance_secs(60);
        assert!(clock.offset() >= chrono::Duration::seconds(3660));
    }
}
