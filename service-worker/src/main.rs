//! The generic `service-worker` binary: bridges services to existing HTTP APIs, described in a
//! TOML file, so API-driven microservices join workflows with no code.
//!
//! ```toml
//! [[services]]
//! name = "Inventory"
//! [services.methods.reserve]
//! url = "http://inventory.internal:8080/reserve"
//! timeout_ms = 5000
//! max_attempts = 5
//! retryable_statuses = [429, 502, 503, 504]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use baton_server::{CommonArgs, Needs, run_binary};
use baton_service_worker::{HttpService, HttpServiceConfig, Worker};
use clap::Parser;
use serde::Deserialize;

/// Baton's generic worker: services bridged to HTTP APIs.
#[derive(Parser, Debug)]
#[command(name = "service-worker", version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// The services to bridge (TOML with `[[services]]`).
    #[arg(long)]
    services: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BridgeFile {
    services: Vec<HttpServiceConfig>,
}

fn load_services(path: &std::path::Path) -> Result<Vec<HttpService>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file: BridgeFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if file.services.is_empty() {
        return Err(format!("{}: no [[services]] to bridge", path.display()));
    }
    file.services.into_iter().map(HttpService::new).collect()
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let services = match load_services(&cli.services) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("service-worker: {e}");
            return ExitCode::from(2);
        }
    };
    run_binary(
        "service-worker",
        &cli.common,
        Needs::Broker,
        |_| Ok(()),
        |ctx| async move {
            let mut worker = Worker::new(ctx.config.worker.clone());
            for service in services {
                let options = service.options();
                worker = worker.service_with(service, options).map_err(|e| e.to_string())?;
            }
            worker
                .run(ctx.transport, ctx.clock, ctx.shutdown)
                .await
                .map_err(|e| e.to_string())
        },
    )
    .await
}
