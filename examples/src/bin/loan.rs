//! The loan demo: three applications. One is approved by an officer while waiting, one is
//! escalated and approved by a manager, one is escalated and rejected for lack of a decision.
//! Each is queried (and annotated) while it waits.
//!
//! `cargo run --release -p baton-examples --bin loan`

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use baton::{Client, Embedded, WorkflowHandle};
use baton_examples::loan::{self, ADD_NOTE, DECISION, Decision, LoanApproval, LoanDesk, LoanRequest, PROGRESS};
use clap::Parser;

/// Run loan approvals that wait for human decisions.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// How long an officer has to decide, in milliseconds (a manager gets twice as long).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    decision_window_ms: u64,
}

async fn wait_for_stage(handle: &WorkflowHandle<LoanApproval>, stage: &str) -> anyhow::Result<u32> {
    let mut queries = 0;
    for _ in 0..2_000 {
        queries += 1;
        if handle.call(&PROGRESS, &()).await?.stage == stage {
            return Ok(queries);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bail!("application never reached stage `{stage}`")
}

async fn apply(client: &Client, applicant: &str, window: u64) -> anyhow::Result<WorkflowHandle<LoanApproval>> {
    let request = LoanRequest {
        applicant: applicant.into(),
        amount_cents: 2_500_000,
        decision_window_ms: window,
    };
    Ok(client.start::<LoanApproval>(&request).await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let desk = LoanDesk::default();
    let baton = loan::embedded(&desk, Embedded::builder())
        .start()
        .await
        .context("starting embedded Baton")?;
    let client = baton.client().clone();
    let started = Instant::now();
    let window = args.decision_window_ms;
    let mut queries = 0;

    let quick = apply(&client, "ada", window).await?;
    let escalated = apply(&client, "grace", window).await?;
    let forgotten = apply(&client, "linus", window).await?;

    queries += wait_for_stage(&quick, "waiting for an officer").await?;
    let notes = quick.call(&ADD_NOTE, &"income verified".to_string()).await?;
    println!("ada: waiting for an officer, {notes} note(s); officer approves");
    quick
        .signal(
            &DECISION,
            &Decision {
                approved: true,
                by: "officer".into(),
            },
        )
        .await?;

    queries += wait_for_stage(&escalated, "escalated to a manager").await?;
    println!("grace: no officer decision in time, escalated; manager approves");
    escalated
        .signal(
            &DECISION,
            &Decision {
                approved: true,
                by: "manager".into(),
            },
        )
        .await?;

    queries += wait_for_stage(&forgotten, "escalated to a manager").await?;
    println!("linus: escalated, nobody decides");

    let (mut approved, mut rejected, mut escalations) = (0, 0, 0);
    for (name, handle) in [("ada", &quick), ("grace", &escalated), ("linus", &forgotten)] {
        let outcome = handle.result().await.map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        println!(
            "{name}: {} by {}{}{}",
            if outcome.approved { "approved" } else { "rejected" },
            outcome.decided_by,
            if outcome.escalated { " after escalation" } else { "" },
            if outcome.notes.is_empty() {
                String::new()
            } else {
                format!(", notes: {:?}", outcome.notes)
            }
        );
        if outcome.approved {
            approved += 1
        } else {
            rejected += 1
        }
        escalations += u32::from(outcome.escalated);
    }
    let elapsed = started.elapsed();
    baton.shutdown().await;
    let expected = approved == 2 && rejected == 1 && escalations == 2 && desk.escalations() == 2;
    println!(
        "loan: applications=3 approved={approved} rejected={rejected} escalated={escalations} queries={queries} elapsed_ms={}",
        elapsed.as_millis()
    );
    Ok(if expected { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
