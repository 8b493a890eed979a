//! Time as a dependency, so tests can drive it by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use baton_shared_schemas::Timestamp;
use tokio::sync::Notify;

/// A source of wall-clock time and of sleeping.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Timestamp;
    /// Completes when `now() >= until`, or earlier; callers re-check.
    fn sleep_until(&self, until: Timestamp) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The system clock with tokio's timer.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now_system()
    }

    fn sleep_until(&self, until: Timestamp) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let wait = until.saturating_duration_since(self.now());
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that only moves when told to.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

#[derive(Debug, Default)]
struct ManualInner {
    now: AtomicU64,
    moved: Notify,
}

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: Timestamp) -> Self {
        let clock = Self::default();
        clock.inner.now.store(start.as_millis(), Ordering::SeqCst);
        clock
    }

    /// Moves the clock forward and wakes sleepers.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.inner.now.fetch_add(ms, Ordering::SeqCst);
        self.inner.moved.notify_waiters();
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.inner.now.load(Ordering::SeqCst))
    }

    fn sleep_until(&self, until: Timestamp) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            loop {
                let moved = self.inner.moved.notified();
                if self.now() >= until {
                    return;
                }
                moved.await;
            }
        })
    }
}
