//! Wall-clock instants as carried in messages: milliseconds since the Unix epoch.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The instant `ms` milliseconds after the epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// The current system time. Engine and timer code take time from a `Clock` instead.
    pub fn now_system() -> Self {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Self(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    /// This instant plus a duration, saturating.
    pub fn saturating_add(self, d: Duration) -> Self {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self(self.0.saturating_add(ms))
    }

    /// Time from `earlier` to this instant, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

/// Instant `at` of a receiver's clock, read on the clock of the timer service that fired the
/// message the receiver is handling: the service's reading `fired_at` when it fired and the
/// receiver's reading `now` when it got the message give the offset between the two clocks.
/// So a timer due at the result fires when the receiver's clock reads `at`. Without
/// `fired_at` (a timer service that does not say), the service is taken to lead by at least
/// `at - now`, the amount the message came early.
pub fn on_firing_clock(at: Timestamp, now: Timestamp, fired_at: Option<Timestamp>) -> Timestamp {
    match fired_at {
        Some(fired_at) if fired_at >= now => Timestamp(at.0.saturating_add(fired_at.0 - now.0)),
        Some(fired_at) => Timestamp(at.0.saturating_sub(now.0 - fired_at.0)),
        None => Timestamp(at.0.saturating_add(at.0.saturating_sub(now.0))),
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}
