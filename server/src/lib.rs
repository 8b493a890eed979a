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
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| filter.to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(quiet_broker_clients(&directives))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The broker clients' own log lines (a warning per reconnection attempt while a broker is
/// down) are debugging detail: Baton reports what matters itself (readiness, waits through
/// outages). They are shown only when the filter names their target or asks for `debug` or
/// `trace` everywhere.
fn quiet_broker_clients(directives: &str) -> String {
    let everything_verbose = directives.split(',').any(|d| matches!(d.trim(), "debug" | "trace"));
    let mut quieted = directives.to_string();
    for target in ["pulsar", "rdkafka", "librdkafka"] {
        if !everything_verbose && !directives.contains(target) {
            quieted.push_str(&format!(",{target}=off"));
        }
    }
    quieted
}

pub use backends::{connect_stores, connect_transport, redis_options};
pub use cli::{CommonArgs, exit, run_binary};
pub use config::{BatonConfig, ConfigError};
pub use health::Health;
pub use process::{Context, Needs, ServeError, serve};

#[cfg(test)]
mod tests {
    use super::quiet_broker_clients;

    #[test]
    fn broker_client_lines_are_hidden_unless_asked_for() {
        assert_eq!(
            quiet_broker_clients("info"),
            "info,pulsar=off,rdkafka=off,librdkafka=off"
        );
        assert_eq!(quiet_broker_clients("debug"), "debug");
        assert_eq!(
            quiet_broker_clients("warn,pulsar=debug"),
            "warn,pulsar=debug,rdkafka=off,librdkafka=off"
        );
    }
}
