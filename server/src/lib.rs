//! What every Baton binary shares: one configuration format (defaults → TOML file → `BATON_*`
//! environment → flags, validated at start), backend selection by URL scheme, the `/health`
//! and `/ready` endpoints, and signal handling with a shutdown deadline. Each binary's
//! `main.rs` parses its flags and calls [`serve`] with its component.

pub mod backends;
mod cli;
pub mod config;
mod health;
mod process;

/// Starts logging with the configured filter (overridden by `RUST_LOG`).
pub fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub use backends::{connect_stores, connect_transport, redis_options};
pub use cli::{CommonArgs, exit, run_binary};
pub use config::{BatonConfig, ConfigError};
pub use health::Health;
pub use process::{Context, Needs, ServeError, serve};
