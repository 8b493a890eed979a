//! The booking demo: runs N booking sagas on the embedded in-memory deployment with injected
//! failures, checks the books, and ends with one summary line.
//!
//! `cargo run --release -p baton-examples --bin booking -- --workflows 1000`
//!
//! With `--serve 127.0.0.1:8080` it serves the API, the dashboard and `/metrics` while the
//! bookings run, and stays up afterwards until Ctrl-C.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use baton::{Embedded, WorkflowError};
use baton_examples::booking::{self, Booking, BookingOutcome, FailureRates, Ledger};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

fn rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not a rate between 0 and 1"))
    }
}

/// Run booking sagas (payment, flight, hotel, notification) with injected failures.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// How many bookings to run.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    workflows: u64,
    /// How many bookings run at once.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    concurrency: u64,
    /// Chance that any single service attempt fails transiently (absorbed by retries).
    #[arg(long, default_value_t = 0.05, value_parser = rate)]
    transient_rate: f64,
    /// Chance that a booking's card is declined.
    #[arg(long, default_value_t = 0.03, value_parser = rate)]
    decline_rate: f64,
    /// Chance that a booking's flight is sold out.
    #[arg(long, default_value_t = 0.03, value_parser = rate)]
    flight_sold_out_rate: f64,
    /// Chance that a booking's hotel is sold out.
    #[arg(long, default_value_t = 0.03, value_parser = rate)]
    hotel_sold_out_rate: f64,
    /// Varies which bookings hit failures.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Hide the progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Serve the API, the dashboard and `/metrics` on this address (port 0 picks one) while
    /// the bookings run, and keep serving them after until Ctrl-C.
    #[arg(long, value_name = "ADDRESS")]
    serve: Option<std::net::SocketAddr>,
    /// With --serve: accept this bearer token, as `reader:TOKEN` or `operator:TOKEN`
    /// (repeatable); without any, the API asks for no token.
    #[arg(long = "token", value_name = "ROLE:TOKEN", value_parser = token)]
    tokens: Vec<baton::ApiToken>,
}

fn token(s: &str) -> Result<baton::ApiToken, String> {
    s.parse().map_err(|e| format!("`{s}`: {e}"))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1_000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    baton_examples::init_logging("error");

    let rates = FailureRates {
        transient: args.transient_rate,
        declined: args.decline_rate,
        flight_sold_out: args.flight_sold_out_rate,
        hotel_sold_out: args.hotel_sold_out_rate,
    };
    let ledger = Ledger::new(rates, args.seed);
    let mut baton = booking::embedded(&ledger, Embedded::builder())
        .start()
        .await
        .context("starting embedded Baton")?;
    if let Some(address) = args.serve {
        let config = baton::ApiConfig {
            tokens: args.tokens.clone(),
            ..baton::ApiConfig::default()
        };
        config.validate().map_err(|e| anyhow::anyhow!(e))?;
        let bound = baton.serve(address, config).await.context("serving the dashboard")?;
        println!(
            "dashboard: http://{bound}/  (API http://{bound}/api/v1, OpenAPI http://{bound}/openapi.json, metrics http://{bound}/metrics)"
        );
    }
    let client = baton.client().clone();

    let progress = if args.no_progress {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(args.workflows)
    };
    progress.set_style(
        ProgressStyle::with_template("{spinner} {bar:40} {pos}/{len} bookings  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );

    let started = Instant::now();
    let slots = Arc::new(Semaphore::new(usize::try_from(args.concurrency).unwrap_or(usize::MAX)));
    let mut running = JoinSet::new();
    for n in 0..args.workflows {
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .context("concurrency limiter closed")?;
        let client = client.clone();
        running.spawn(async move {
            let t0 = Instant::now();
            let outcome = match client.start::<Booking>(&booking::request(n)).await {
                Ok(handle) => handle.result().await,
                Err(e) => Err(WorkflowError::Client(e)),
            };
            drop(permit);
            (n, outcome, t0.elapsed())
        });
    }

    let mut outcomes: HashMap<u64, Option<BookingOutcome>> = HashMap::new();
    let mut latencies = Vec::with_capacity(usize::try_from(args.workflows).unwrap_or(0));
    let (mut completed, mut compensated, mut failed) = (0u64, 0u64, 0u64);
    while let Some(joined) = running.join_next().await {
        let (n, outcome, latency) = joined.context("a booking task panicked")?;
        latencies.push(latency);
        match outcome {
            Ok(o @ BookingOutcome::Booked { .. }) => {
                completed += 1;
                outcomes.insert(n, Some(o));
            }
            Ok(o @ BookingOutcome::Compensated { .. }) => {
                compensated += 1;
                outcomes.insert(n, Some(o));
            }
            Err(e) => {
                failed += 1;
                progress.suspend(|| eprintln!("booking {n} failed: {e}"));
                outcomes.insert(n, None);
            }
        }
        progress.inc(1);
    }
    let elapsed = started.elapsed();
    progress.finish_and_clear();

    let audit = ledger.audit(&outcomes).await.map_err(|e| anyhow::anyhow!(e))?;
    let failed_ids = outcomes.values().filter(|o| o.is_none()).count() as u64;
    let books_ok = audit.problems.iter().all(|p| p.ends_with("did not finish"))
        && audit.booked_ok == completed
        && audit.compensated_ok == compensated;
    for problem in audit
        .problems
        .iter()
        .filter(|p| !p.ends_with("did not finish"))
        .take(20)
    {
        eprintln!("books: {problem}");
    }
    if books_ok {
        println!(
            "books: ok: {} completed bookings charged exactly once with flight and hotel held; {} compensated with nothing left booked and every charge refunded ({} service executions, {} transient failures retried)",
            audit.booked_ok, audit.compensated_ok, audit.executions, audit.transient_failures
        );
    } else {
        println!(
            "books: WRONG: {} discrepancies (see above)",
            audit.problems.len() as u64 - failed_ids
        );
    }
    latencies.sort_unstable();
    println!(
        "booking: workflows={} completed={completed} compensated={compensated} failed={failed} elapsed_ms={} throughput_wf_s={:.1} p50_ms={:.1} p99_ms={:.1}",
        args.workflows,
        elapsed.as_millis(),
        args.workflows as f64 / elapsed.as_secs_f64().max(1e-9),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
    );
    if args.serve.is_some() {
        println!("still serving the dashboard: press Ctrl-C to stop");
        tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    }
    baton.shutdown().await;
    Ok(if books_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
