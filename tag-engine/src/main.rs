//! The `tag-engine` binary: keeps tag → id sets, fans out commands by tag and completes
//! delegated tasks. Thin over `baton_tag_engine::run`.

use std::process::ExitCode;

use baton_server::{CommonArgs, Needs, run_binary};
use baton_tag_engine::run;
use clap::Parser;

/// Baton's tag engine.
#[derive(Parser, Debug)]
#[command(name = "tag-engine", version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// A workflow whose tags this engine keeps (repeatable; overrides tag_engine.workflows).
    #[arg(long = "workflow")]
    workflows: Vec<String>,
    /// A service whose delegated tasks it handles (repeatable; overrides tag_engine.services).
    #[arg(long = "service")]
    services: Vec<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let (workflows, services) = (cli.workflows.clone(), cli.services.clone());
    let adjust = move |config: &mut baton_server::BatonConfig| {
        if !workflows.is_empty() {
            config.tag_engine.workflows = workflows;
        }
        if !services.is_empty() {
            config.tag_engine.services = services;
        }
        if config.tag_engine.workflows.is_empty() && config.tag_engine.services.is_empty() {
            return Err(
                "nothing to handle: set tag_engine.workflows / services or pass --workflow / --service".to_string(),
            );
        }
        Ok(())
    };
    run_binary(
        "tag-engine",
        &cli.common,
        Needs::BrokerAndStore,
        adjust,
        |ctx| async move {
            run(
                ctx.config.tag_engine.clone(),
                ctx.transport,
                ctx.stores.key_sets,
                ctx.clock,
                ctx.shutdown,
            )
            .await
        },
    )
    .await
}
