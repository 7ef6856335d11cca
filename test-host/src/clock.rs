//! The wall clock guests see: the real one plus an offset tests can advance.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wasmtime_wasi::HostWallClock;

/// Shared offset (nanoseconds) added to the real wall clock.
#[derive(Debug, Clone, Default)]
pub struct ClockOffset(Arc<AtomicU64>);

impl ClockOffset {
    pub fn advance(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(nanos, Ordering::SeqCst);
    }

    pub fn offset(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::SeqCst))
    }

    /// Seconds since the Unix epoch as the guests currently see them.
    pub fn now_unix_secs(&self) -> u64 {
        ShiftedWallClock(self.clone()).now().as_secs()
    }
}

/// `wasi:clocks/wall-clock` shifted by a [`ClockOffset`].
pub struct ShiftedWallClock(pub ClockOffset);

impl HostWallClock for ShiftedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        real + self.0.offset()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_shifts_now() {
        let offset = ClockOffset::default();
        let clock = ShiftedWallClock(offset.clone());
        let before = clock.now();
        offset.advance(Duration::from_secs(3600));
        let after = clock.now();
        assert!(after >= before + Duration::from_secs(3600));
        assert!(after < before + Duration::from_secs(3660));
    }
}
