//! The `timer-service` binary: stores timers and publishes them when due. Thin over
//! `baton_timer_service::run`.

use std::process::ExitCode;

use baton_server::{CommonArgs, Needs, run_binary};
use baton_timer_service::run;
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
            run(
                ctx.config.timers.clone(),
                ctx.transport,
                ctx.stores.timers,
                ctx.clock,
                ctx.shutdown,
            )
            .await
        },
    )
    .await
}
