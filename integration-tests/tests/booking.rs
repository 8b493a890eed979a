//! The booking saga end to end on the embedded deployment (engine, timer service, workers and
//! client through the in-memory transport and store), with injected failures; the books must
//! balance exactly.

use std::collections::HashMap;
use std::sync::Arc;

use baton::{Embedded, WorkflowError};
use baton_examples::booking::{self, Booking, BookingOutcome, FailureRates, Ledger};
use baton_integration_tests::DuplicatingTransport;
use tokio::task::JoinSet;

struct Run {
    outcomes: HashMap<u64, Option<BookingOutcome>>,
    completed: u64,
    compensated: u64,
    failed: Vec<String>,
}

async fn run_bookings(baton: &Embedded, count: u64) -> Run {
    let mut running = JoinSet::new();
    for n in 0..count {
        let client = baton.client().clone();
        running.spawn(async move {
            let outcome = match client.start::<Booking>(&booking::request(n)).await {
                Ok(handle) => handle.result().await,
                Err(e) => Err(WorkflowError::Client(e)),
            };
            (n, outcome)
        });
    }
    let mut run = Run {
        outcomes: HashMap::new(),
        completed: 0,
        compensated: 0,
        failed: Vec::new(),
    };
    while let Some(joined) = running.join_next().await {
        let (n, outcome) = joined.expect("booking task");
        match outcome {
            Ok(o) => {
                match o {
                    BookingOutcome::Booked { .. } => run.completed += 1,
                    BookingOutcome::Compensated { .. } => run.compensated += 1,
                }
                run.outcomes.insert(n, Some(o));
            }
            Err(e) => {
                run.failed.push(format!("booking {n}: {e}"));
                run.outcomes.insert(n, None);
            }
        }
    }
    run
}

fn harsh_rates() -> FailureRates {
    FailureRates {
        transient: 0.2,
        declined: 0.06,
        flight_sold_out: 0.06,
        hotel_sold_out: 0.06,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_bookings_with_failures_balance_the_books_exactly() {
    let ledger = Ledger::new(harsh_rates(), 7);
    let baton = booking::embedded(&ledger, Embedded::builder())
        .start()
        .await
        .expect("start");
    let run = run_bookings(&baton, 200).await;
    baton.shutdown().await;

    assert!(run.failed.is_empty(), "failed: {:?}", run.failed);
    assert_eq!(run.completed + run.compensated, 200);
    let audit = ledger.audit(&run.outcomes).await.expect("books readable");
    assert!(audit.problems.is_empty(), "{:#?}", audit.problems);
    assert_eq!(
        (audit.booked_ok, audit.compensated_ok),
        (run.completed, run.compensated)
    );
    // The injected failures really happened, so the checks above had something to catch.
    assert!(run.compensated >= 10, "compensated only {}", run.compensated);
    assert!(
        audit.transient_failures >= 50,
        "transient failures only {}",
        audit.transient_failures
    );
    let reasons: Vec<String> = run
        .outcomes
        .values()
        .filter_map(|o| match o {
            Some(BookingOutcome::Compensated { reason }) => Some(reason.clone()),
            _ => None,
        })
        .collect();
    for step in ["payment declined", "flight: sold out", "hotel: sold out"] {
        assert!(
            reasons.iter().any(|r| r.starts_with(step)),
            "no booking was compensated for `{step}`: {reasons:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_delivered_twice_changes_nothing() {
    let ledger = Ledger::new(harsh_rates(), 11);
    let duplicator: Arc<std::sync::OnceLock<Arc<DuplicatingTransport>>> = Arc::default();
    let slot = duplicator.clone();
    let baton = booking::embedded(&ledger, Embedded::builder())
        .transport_layer(move |inner| {
            let dup = DuplicatingTransport::new(inner);
            let _ = slot.set(dup.clone());
            dup
        })
        .start()
        .await
        .expect("start");
    let run = run_bookings(&baton, 200).await;
    baton.shutdown().await;

    let dup = duplicator.get().expect("layer installed");
    assert!(
        dup.duplicated() > 2_000,
        "only {} messages were duplicated",
        dup.duplicated()
    );
    assert!(run.failed.is_empty(), "failed: {:?}", run.failed);
    assert_eq!(run.completed + run.compensated, 200);
    let audit = ledger.audit(&run.outcomes).await.expect("books readable");
    assert!(
        audit.problems.is_empty(),
        "duplicates leaked into effects: {:#?}",
        audit.problems
    );
    assert!(run.compensated >= 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_gives_the_same_outcomes_with_and_without_duplicates() {
    let plain_ledger = Ledger::new(harsh_rates(), 3);
    let plain = booking::embedded(&plain_ledger, Embedded::builder())
        .start()
        .await
        .expect("start");
    let a = run_bookings(&plain, 60).await;
    plain.shutdown().await;

    let dup_ledger = Ledger::new(harsh_rates(), 3);
    let doubled = booking::embedded(&dup_ledger, Embedded::builder())
        .transport_layer(|inner| DuplicatingTransport::new(inner))
        .start()
        .await
        .expect("start");
    let b = run_bookings(&doubled, 60).await;
    doubled.shutdown().await;

    // Business outcomes depend only on the booking, never on how often messages were delivered.
    let kinds = |r: &Run| -> Vec<(u64, Option<String>)> {
        let mut v: Vec<_> = r
            .outcomes
            .iter()
            .map(|(n, o)| {
                let kind = o.as_ref().map(|o| match o {
                    BookingOutcome::Booked { .. } => "booked".to_string(),
                    BookingOutcome::Compensated { reason } => reason.clone(),
                });
                (*n, kind)
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(kinds(&a), kinds(&b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_that_reloads_every_state_from_storage_keeps_the_books_exact() {
    use baton::components::workflow_engine::EngineConfig;
    let ledger = Ledger::new(harsh_rates(), 5);
    // One shard with a one-entry cache: nearly every message reloads its state from storage and
    // republishes the stored outbox first, as after a crash or a move to another replica.
    let engine = EngineConfig {
        shards: 1,
        cache_per_shard: 1,
        ..EngineConfig::default()
    };
    let baton = booking::embedded(&ledger, Embedded::builder())
        .engine_config(engine)
        .start()
        .await
        .expect("start");
    let run = run_bookings(&baton, 100).await;
    baton.shutdown().await;
    assert!(run.failed.is_empty(), "failed: {:?}", run.failed);
    assert_eq!(run.completed + run.compensated, 100);
    let audit = ledger.audit(&run.outcomes).await.expect("books readable");
    assert!(audit.problems.is_empty(), "{:#?}", audit.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_storage_with_every_message_twice_and_no_engine_cache_the_books_stay_exact() {
    use baton::Stores;
    use baton::components::storage::RedisStore;
    use baton::components::workflow_engine::EngineConfig;
    let redis = baton_test_support::RedisServer::start();
    let store = RedisStore::connect(&redis.url, "baton:")
        .await
        .expect("connect to redis");
    let ledger = Ledger::new(harsh_rates(), 13);
    let engine = EngineConfig {
        shards: 2,
        cache_per_shard: 1,
        ..EngineConfig::default()
    };
    let baton = booking::embedded(&ledger, Embedded::builder())
        .stores(Stores::all(store))
        .engine_config(engine)
        .transport_layer(|inner| DuplicatingTransport::new(inner))
        .start()
        .await
        .expect("start");
    let run = run_bookings(&baton, 120).await;
    baton.shutdown().await;
    assert!(run.failed.is_empty(), "failed: {:?}", run.failed);
    assert_eq!(run.completed + run.compensated, 120);
    let audit = ledger.audit(&run.outcomes).await.expect("books readable");
    assert!(audit.problems.is_empty(), "{:#?}", audit.problems);
    assert!(run.compensated >= 5);
}
