//! Runtime pieces every Baton component shares: the [`Clock`] through which engine and timer
//! code read time, the [`Supervisor`] that owns long-lived tasks and their shutdown, and
//! [`retry_transient`], which rides out a dependency outage without spending a message's
//! redeliveries, and [`redact_url`], which keeps credentials out of what is printed.
//!
//! Depends only on `shared-schemas` and tokio; knows nothing of transports or storage.

mod clock;
mod redact;
mod retry;
mod supervisor;

pub use clock::{CLOCK_LEAD, CLOCK_LEAD_WARNING, Clock, ClockLead, ManualClock, OffsetClock, SystemClock};
pub use redact::{REDACTED, redact_url};
pub use retry::{Backoff, Classify, ErrorClass, Outage, Transient, retry_transient};
pub use supervisor::{Supervisor, TaskFailed};
pub use tokio_util::sync::CancellationToken;

/// Locks a mutex, taking the data of one poisoned by a panic: every critical section in Baton
/// is a few map or queue operations, which a panic elsewhere cannot leave half done.
pub fn locked<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
