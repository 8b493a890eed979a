//! A booking worker process: hosts the booking services and workflow on the configured broker,
//! recording the services' effects in Redis so a cluster's books can be audited.

use baton::process::CommonArgs;
use baton_examples::booking::{self, FailureRates, Ledger, RedisBooks};
use clap::Parser;

/// Hosts the booking saga's services and workflow.
#[derive(Parser, Debug)]
#[command(name = "booking-worker", version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// Redis holding the books (the services' effects).
    #[arg(long)]
    ledger_url: String,
    /// Prefix of the books' keys (one per run).
    #[arg(long, default_value = "books:")]
    ledger_prefix: String,
    /// Chance that an attempt fails transiently.
    #[arg(long, default_value_t = 0.05)]
    transient_rate: f64,
    /// Chance that a booking's card is declined, flight or hotel sold out (each).
    #[arg(long, default_value_t = 0.03)]
    business_rate: f64,
    /// Varies which bookings hit failures (use the same value on every worker of a run).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let rates = FailureRates {
        transient: cli.transient_rate,
        declined: cli.business_rate,
        flight_sold_out: cli.business_rate,
        hotel_sold_out: cli.business_rate,
    };
    let (url, prefix, seed) = (cli.ledger_url.clone(), cli.ledger_prefix.clone(), cli.seed);
    baton::process::run_worker_with("booking-worker", &cli.common, move |config| async move {
        let books = RedisBooks::connect(&url, &prefix).await?;
        booking::worker(&Ledger::with_books(books, rates, seed), config).map_err(|e| e.to_string())
    })
    .await
}
