//! Runtime pieces every Baton component shares: the [`Clock`] through which engine and timer
//! code read time, the [`Supervisor`] that owns long-lived tasks and their shutdown, and
//! [`retry_transient`], which rides out a dependency outage without spending a message's
//! redeliveries.
//!
//! Depends only on `shared-schemas` and tokio; knows nothing of transports or storage.

mod clock;
mod retry;
mod supervisor;

pub use clock::{Clock, ManualClock, SystemClock};
pub use retry::{Backoff, Outage, Transient, retry_transient};
pub use supervisor::{Supervisor, TaskFailed};
pub use tokio_util::sync::CancellationToken;
