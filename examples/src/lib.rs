//! Runnable Baton examples: the [`booking`] saga, [`billing`] and [`loan`]. Each lives in the
//! library so the integration tests run the same services and workflows the demos do.

pub mod billing;
pub mod booking;
pub mod loan;
