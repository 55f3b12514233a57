use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The fake server's notion of time, in milliseconds since the Unix epoch.
///
/// Wall-clock based so that expiry times survive a process restart through the
/// state file; it runs off a monotonic `Instant` so a clock step on the host
/// cannot make tokens live again.
///
/// Clones share the same time, so a test can keep a clone and `advance` it
/// while the server runs.
#[derive(Clone, Debug)]
pub struct Clock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    epoch_ms: u64,
    started: Instant,
    frozen: bool,
    offset: Mutex<Duration>,
}

impl Clock {
    /// Real time, which `advance` skips forward.
    pub fn system() -> Self {
        Self::new(false)
    }

    /// Time that stands still except when `advance`d, for deterministic tests of
    /// expiry and the throttle window.
    pub fn frozen() -> Self {
        Self::new(true)
    }

    fn new(frozen: bool) -> Self {
        let epoch_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Self {
            inner: Arc::new(Inner { epoch_ms, started: Instant::now(), frozen, offset: Mutex::new(Duration::ZERO) }),
        }
    }

    pub fn is_frozen(&self) -> bool {
        self.inner.frozen
    }

    /// Moves time forward for every holder of this clock.
    pub fn advance(&self, by: Duration) {
        *self.offset() += by;
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        let running = if self.inner.frozen { Duration::ZERO } else { self.inner.started.elapsed() };
        self.inner.epoch_ms + (running + *self.offset()).as_millis() as u64
    }

    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.now_ms())
    }

    fn offset(&self) -> std::sync::MutexGuard<'_, Duration> {
        self.inner.offset.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_clock_moves_only_when_advanced() {
        let clock = Clock::frozen();
        let start = clock.now_ms();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(clock.now_ms(), start);
        clock.clone().advance(Duration::from_secs(90));
        assert_eq!(clock.now_ms(), start + 90_000);
    }

    #[test]
    fn system_clock_runs_and_skips_ahead() {
        let clock = Clock::system();
        let start = clock.now_ms();
        std::thread::sleep(Duration::from_millis(20));
        assert!(clock.now_ms() >= start + 20);
        clock.advance(Duration::from_secs(3600));
        assert!(clock.now_ms() >= start + 3_600_020);
    }
}
