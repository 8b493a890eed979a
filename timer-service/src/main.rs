//! The `timer-service` binary: stores timers and publishes them when due. Thin over
//! `baton_timer_service::run`.

use std::process::ExitCode;
use std::time::Duration;

use baton_server::{CommonArgs, Needs, run_binary};
use baton_timer_service::{TimerConfig, run};
use clap::Parser;

/// Baton's timer service.
#[derive(Parser, Debug)]
#[command(name = "timer-service", version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    run_binary(
        "timer-service",
        &cli.common,
        Needs::BrokerAndStore,
        |_| Ok(()),
        |ctx| async move {
            let section = &ctx.config.timers;
            let config = TimerConfig {
                lease: Duration::from_millis(section.lease_ms),
                batch: section.batch,
                max_idle: Duration::from_millis(section.max_idle_ms),
            };
            run(config, ctx.transport, ctx.stores.timers, ctx.clock, ctx.shutdown).await
        },
    )
    .await
}
