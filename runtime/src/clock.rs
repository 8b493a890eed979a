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

/// The system clock moved by a fixed offset: what a process whose clock is off reads. For
/// fault runs (`chaos.clock_offset_secs`) and tests of clock skew.
#[derive(Clone, Copy, Debug, Default)]
pub struct OffsetClock {
    offset_ms: i64,
}

impl OffsetClock {
    /// The system clock read `offset_ms` milliseconds ahead (behind, when negative).
    pub fn new(offset_ms: i64) -> Self {
        Self { offset_ms }
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        Timestamp(Timestamp::now_system().0.saturating_add_signed(self.offset_ms))
    }

    fn sleep_until(&self, until: Timestamp) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let wait = until.saturating_duration_since(self.now());
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A lead this large of a consumed message's emission time over the process's clock makes
/// readiness report a warning: some clock differs from this one by more than NTP allows.
pub const CLOCK_LEAD_WARNING: Duration = Duration::from_secs(1);

/// How far ahead of this process's clock the messages it consumed lately were emitted (the
/// largest lead seen over the last 30 to 60 s), fed by the consume loops: a sender's clock, or
/// a timer service's, runs ahead of this one by at least that much.
pub struct ClockLead {
    windows: std::sync::Mutex<LeadWindows>,
    /// The lead last reported by [`observe`](Self::observe): while it is zero and messages
    /// come on time, observing takes no lock.
    reported_ms: AtomicU64,
}

struct LeadWindows {
    started: Option<std::time::Instant>,
    current_ms: u64,
    previous_ms: u64,
}

/// The process's [`ClockLead`].
pub static CLOCK_LEAD: ClockLead = ClockLead {
    windows: std::sync::Mutex::new(LeadWindows {
        started: None,
        current_ms: 0,
        previous_ms: 0,
    }),
    reported_ms: AtomicU64::new(0),
};

impl ClockLead {
    const WINDOW: Duration = Duration::from_secs(30);

    /// Records that a message emitted at `emitted_at` was consumed at `now`. Returns the
    /// largest lead seen lately when it may have changed (for a gauge to show), `None` while
    /// messages come on time and none came early lately: then it costs one atomic load.
    pub fn observe(&self, emitted_at: Timestamp, now: Timestamp) -> Option<Duration> {
        let lead = emitted_at.0.saturating_sub(now.0);
        if lead == 0 && self.reported_ms.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut w = self.lock();
        w.current_ms = w.current_ms.max(lead);
        let recent = w.current_ms.max(w.previous_ms);
        self.reported_ms.store(recent, Ordering::Relaxed);
        Some(Duration::from_millis(recent))
    }

    /// The largest lead seen lately (zero when none).
    pub fn recent(&self) -> Duration {
        let w = self.lock();
        Duration::from_millis(w.current_ms.max(w.previous_ms))
    }

    /// Rolls the windows over when the current one is over, so an old lead is forgotten.
    fn lock(&self) -> std::sync::MutexGuard<'_, LeadWindows> {
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        match w.started {
            None => w.started = Some(now),
            Some(started) => {
                let age = now.saturating_duration_since(started);
                if age >= Self::WINDOW {
                    w.previous_ms = if age < 2 * Self::WINDOW { w.current_ms } else { 0 };
                    w.current_ms = 0;
                    w.started = Some(now);
                }
            }
        }
        w
    }
}
