//! Runtime pieces every Baton component shares: the [`Clock`] through which engine and timer
//! code read time, and the [`Supervisor`] that owns long-lived tasks and their shutdown.
//!
//! Depends only on `shared-schemas` and tokio; knows nothing of transports or storage.

mod clock;
mod supervisor;

pub use clock::{Clock, ManualClock, SystemClock};
pub use supervisor::{Supervisor, TaskFailed};
pub use tokio_util::sync::CancellationToken;
