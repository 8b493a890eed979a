//! The billing demo: subscribes customers to monthly billing, unsubscribes some of them, and
//! checks that exactly the months billed before each unsubscription were invoiced.
//!
//! `cargo run --release -p baton-examples --bin billing -- --customers 200 --months 12`

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use baton::Embedded;
use baton_examples::billing::{self, BillingLedger, MonthlyBilling, Subscription, UNSUBSCRIBE, Unsubscribe};
use clap::Parser;
use tokio::task::JoinSet;

/// Run monthly billing subscriptions with simulated months.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Customers to subscribe.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    customers: u32,
    /// Months to simulate.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    months: u32,
    /// Length of a simulated month in milliseconds.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    month_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    baton_examples::init_logging("error");
    let ledger = BillingLedger::default();
    let baton = billing::embedded(&ledger, Embedded::builder())
        .start()
        .await
        .context("starting embedded Baton")?;
    let started = Instant::now();

    let mut running = JoinSet::new();
    for n in 0..args.customers {
        let client = baton.client().clone();
        let (months, month_ms) = (args.months, args.month_ms);
        running.spawn(async move {
            let subscription = Subscription {
                customer: format!("customer-{n}"),
                months_billed: 0,
                horizon: months,
                stop_after: None,
                month_ms,
            };
            let handle = client.start::<MonthlyBilling>(&subscription).await?;
            if let Some(after_month) = billing::unsubscribes_after(n, months) {
                handle.signal(&UNSUBSCRIBE, &Unsubscribe { after_month }).await?;
            }
            let summary = handle.result().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            anyhow::Ok((n, summary))
        });
    }
    let (mut invoices, mut unsubscribed, mut failed) = (0u64, 0u64, 0u64);
    let mut expected_invoices = 0u64;
    let mut wrong = Vec::new();
    let by_customer = loop {
        let Some(joined) = running.join_next().await else {
            break ledger.invoices_by_customer();
        };
        match joined.context("a subscription task panicked")? {
            Ok((n, summary)) => {
                let expected = billing::unsubscribes_after(n, args.months).unwrap_or(args.months);
                expected_invoices += u64::from(expected);
                invoices += u64::from(summary.invoices);
                unsubscribed += u64::from(summary.unsubscribed);
                if summary.invoices != expected {
                    wrong.push(format!(
                        "customer-{n}: {} invoices, expected {expected}",
                        summary.invoices
                    ));
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("subscription failed: {e}");
            }
        }
    };
    let elapsed = started.elapsed();
    baton.shutdown().await;

    // The books: one invoice per customer-month billed, months 1..=k with no gap or repeat.
    let issued: u64 = by_customer.values().map(|m| m.len() as u64).sum();
    for (customer, months) in &by_customer {
        if months.iter().copied().ne(1..=months.len() as u32) {
            wrong.push(format!("{customer}: invoiced months {months:?}"));
        }
    }
    if issued != invoices
        || invoices != expected_invoices
        || ledger.emails() as u64 != issued
        || ledger.payments() as u64 != issued
    {
        wrong.push(format!(
            "ledger has {issued} invoices, {} emails, {} payments; workflows report {invoices}; expected {expected_invoices}",
            ledger.emails(),
            ledger.payments()
        ));
    }
    for problem in wrong.iter().take(20) {
        eprintln!("books: {problem}");
    }
    println!(
        "billing: customers={} months={} invoices={invoices} unsubscribed={unsubscribed} failed={failed} elapsed_ms={}",
        args.customers,
        args.months,
        elapsed.as_millis()
    );
    Ok(if wrong.is_empty() && failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
