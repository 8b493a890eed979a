//! The `baton-api` binary: the HTTP API, the dashboard and `/metrics` over a deployment's
//! broker and store. Thin over `baton_api::run`.

use std::collections::BTreeSet;
use std::process::ExitCode;

use baton_server::{CommonArgs, Needs, run_binary};
use clap::Parser;

/// Baton's HTTP API and dashboard.
#[derive(Parser, Debug)]
#[command(name = "baton-api", version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// Where to serve the API and dashboard (overrides api.listen).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let listen = cli.listen;
    let adjust = move |config: &mut baton_server::BatonConfig| {
        if let Some(listen) = listen {
            config.api.listen = listen;
        }
        config.api.read_tokens_file()
    };
    run_binary(
        "baton-api",
        &cli.common,
        Needs::BrokerAndStore,
        adjust,
        |ctx| async move {
            let config = &ctx.config;
            let workflows: BTreeSet<String> = config
                .engine
                .workflows
                .iter()
                .chain(&config.tag_engine.workflows)
                .chain(&config.api.workflows)
                .cloned()
                .collect();
            let services: BTreeSet<String> = config
                .tag_engine
                .services
                .iter()
                .chain(&config.api.services)
                .cloned()
                .collect();
            baton_api::run(
                config.api.clone(),
                workflows,
                services,
                ctx.transport,
                ctx.stores,
                ctx.clock,
                ctx.shutdown,
            )
            .await
        },
    )
    .await
}
