//! Runnable Baton examples. The booking saga lives in [`booking`] so the integration tests can
//! run the same services and workflow the demo does.

pub mod booking;
