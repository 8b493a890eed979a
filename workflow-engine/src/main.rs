//! The `workflow-engine` binary: keeps one state per workflow instance and applies every
//! message about it. Thin over `baton_workflow_engine::run`.

use std::process::ExitCode;

use baton_server::{CommonArgs, Needs, run_binary};
use baton_workflow_engine::run;
use clap::Parser;

/// Baton's workflow engine.
#[derive(Parser, Debug)]
#[command(name = "workflow-engine", version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// A workflow whose instances this engine handles (repeatable; overrides engine.workflows).
    #[arg(long = "workflow")]
    workflows: Vec<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let workflows = cli.workflows.clone();
    let adjust = move |config: &mut baton_server::BatonConfig| {
        if !workflows.is_empty() {
            config.engine.workflows = workflows;
        }
        if config.engine.workflows.is_empty() {
            return Err("no workflows to handle: set engine.workflows or pass --workflow NAME".to_string());
        }
        Ok(())
    };
    run_binary(
        "workflow-engine",
        &cli.common,
        Needs::BrokerAndStore,
        adjust,
        |ctx| async move {
            run(
                ctx.config.engine.clone(),
                ctx.transport,
                ctx.stores.workflows,
                ctx.clock,
                ctx.shutdown,
            )
            .await
        },
    )
    .await
}
