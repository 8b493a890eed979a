//! Runnable Baton examples: the [`booking`] saga, [`billing`] and [`loan`]. Each lives in the
//! library so the integration tests run the same services and workflows the demos do.

pub mod billing;
pub mod booking;
pub mod loan;
#[cfg(feature = "cluster")]
pub mod partition;

/// The Rust examples of these guides, compiled as doc tests against the examples' types, so a
/// guide cannot show code that does not build.
#[cfg(doctest)]
pub mod guides {
    #[doc = include_str!("../../README.md")]
    pub struct Readme;
    #[doc = include_str!("../../docs/client.md")]
    pub struct Client;
    #[doc = include_str!("../../docs/tags.md")]
    pub struct Tags;
    #[doc = include_str!("../../docs/workflows.md")]
    pub struct Workflows;
    #[doc = include_str!("../../docs/services.md")]
    pub struct Services;
    #[doc = include_str!("../../docs/signals.md")]
    pub struct Signals;
    #[doc = include_str!("../../docs/methods.md")]
    pub struct Methods;
    #[doc = include_str!("../../docs/cancellation-and-timeouts.md")]
    pub struct CancellationAndTimeouts;
    #[doc = include_str!("../../docs/saga.md")]
    pub struct Saga;
}

/// Starts logging to stderr with `filter`, unless `RUST_LOG` says otherwise.
pub fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
