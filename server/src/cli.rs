//! Flags every binary accepts, and the common `main` of a component binary.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::{BatonConfig, ConfigError};
use crate::process::{Context, Needs, ServeError, serve};

/// Flags shared by every Baton binary.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CommonArgs {
    /// Configuration file (TOML); `BATON_<SECTION>__<KEY>` variables override it.
    #[arg(long, env = "BATON_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration (defaults, file, environment, flags) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Broker URL, e.g. pulsar://127.0.0.1:6650 or kafka://127.0.0.1:9092 (overrides transport.url).
    #[arg(long)]
    pub transport_url: Option<String>,
    /// Store URL, e.g. redis://127.0.0.1:6379/0 (overrides storage.url).
    #[arg(long)]
    pub storage_url: Option<String>,
    /// Address of /health and /ready (overrides process.health_listen).
    #[arg(long)]
    pub health_listen: Option<SocketAddr>,
}

impl CommonArgs {
    /// Loads the configuration and applies these flags.
    pub fn load(&self) -> Result<BatonConfig, ConfigError> {
        let mut config = BatonConfig::load(self.config.as_deref())?;
        if let Some(url) = &self.transport_url {
            config.transport.url = url.clone();
        }
        if let Some(url) = &self.storage_url {
            config.storage.url = url.clone();
        }
        if let Some(address) = self.health_listen {
            config.process.health_listen = address;
        }
        Ok(config)
    }
}

/// Exit codes of the component binaries.
pub mod exit {
    /// Stopped cleanly.
    pub const OK: i32 = 0;
    /// The component failed, a backend stayed unreachable past the start-up deadline, or the
    /// shutdown deadline passed.
    pub const FAILED: i32 = 1;
    /// Bad flags or configuration.
    pub const BAD_CONFIG: i32 = 2;
    /// A second signal during shutdown.
    pub const SECOND_SIGNAL: i32 = crate::process::EXIT_SECOND_SIGNAL;
}

/// The `main` of a component binary: load and validate the configuration (exit 2 on error),
/// print it if asked, start logging, and serve the component until a signal (exit 1 if it
/// fails, 130 on a second signal). It ends the process itself: a task that cannot finish (a
/// call to a dead dependency) cannot keep it alive past its shutdown deadline.
pub async fn run_binary<A, F, Fut, E>(name: &str, common: &CommonArgs, needs: Needs, adjust: A, component: F) -> !
where
    A: FnOnce(&mut BatonConfig) -> Result<(), String>,
    F: FnOnce(Context) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let code = run(name, common, needs, adjust, component).await;
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(code)
}

async fn run<A, F, Fut, E>(name: &str, common: &CommonArgs, needs: Needs, adjust: A, component: F) -> i32
where
    A: FnOnce(&mut BatonConfig) -> Result<(), String>,
    F: FnOnce(Context) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let mut config = match common.load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{name}: {e}");
            return exit::BAD_CONFIG;
        }
    };
    if let Err(e) = adjust(&mut config) {
        eprintln!("{name}: {e}");
        return exit::BAD_CONFIG;
    }
    if let Err(e) = config
        .validate()
        .and_then(|()| config.check_secret_files(needs == Needs::BrokerAndStore))
    {
        eprintln!("{name}: {e}");
        return exit::BAD_CONFIG;
    }
    if common.print_config {
        print!("{}", config.to_toml());
        return exit::OK;
    }
    crate::init_logging(&config.process.log);
    // Kept until this function returns: dropping it sends the spans still buffered.
    let _traces = match &config.telemetry.otlp_endpoint {
        Some(endpoint) => match baton_telemetry::otlp::install(name, endpoint, config.telemetry.sample_ratio) {
            Ok(guard) => {
                tracing::info!(endpoint = %crate::config::redact_url(endpoint), "exporting traces over OTLP");
                Some(guard)
            }
            Err(e) => {
                eprintln!("{name}: {e}");
                return exit::BAD_CONFIG;
            }
        },
        None => None,
    };
    match serve(name, config, needs, component).await {
        Ok(()) => exit::OK,
        Err(ServeError::Backend(e)) if !e.is_transient() => {
            eprintln!("{name}: {e}");
            exit::BAD_CONFIG
        }
        Err(e) => {
            eprintln!("{name}: {e}");
            tracing::error!(error = %e, "{name} stopped with an error");
            exit::FAILED
        }
    }
}
