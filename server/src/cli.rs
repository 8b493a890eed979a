//! Flags every binary accepts, and the common `main` of a component binary.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{BatonConfig, ConfigError};
use crate::process::{Context, serve};

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

/// The `main` of a component binary: load and validate the configuration (exit 2 on error),
/// print it if asked, start logging, and serve the component until a signal (exit 1 if it
/// fails).
pub async fn run_binary<A, F, Fut, E>(name: &str, common: &CommonArgs, adjust: A, component: F) -> ExitCode
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
            return ExitCode::from(2);
        }
    };
    if let Err(e) = adjust(&mut config) {
        eprintln!("{name}: {e}");
        return ExitCode::from(2);
    }
    if let Err(e) = config.validate() {
        eprintln!("{name}: {e}");
        return ExitCode::from(2);
    }
    if common.print_config {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    crate::init_logging(&config.process.log);
    match serve(name, config, component).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            tracing::error!(error = %e, "{name} stopped with an error");
            ExitCode::FAILURE
        }
    }
}
