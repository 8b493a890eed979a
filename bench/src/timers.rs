//! `baton-bench timers`: how fast the timer service stores timers and fires them, on a real
//! broker and Redis. A burst of timers not due for an hour is published to the `timers` topic
//! and timed until the store holds them all (stored per second); then a burst all due at one
//! instant, timed from that instant until the last has reached its target topic (fired per
//! second, and how late the last one came).

use std::sync::Arc;
use std::time::{Duration, Instant};

use baton::components::runtime::{CancellationToken, SystemClock};
use baton::components::schemas::messages::{TimerMessage, WorkflowEngineMessage};
use baton::components::schemas::{EncodedMessage, Envelope, TimerId, Timestamp, Topic, WorkflowId};
use baton::components::storage::TimerStore;
use baton::components::timer_service::{self, TimerConfig};
use baton::components::transport::{SubscriptionKind, Transport, outgoing};

/// What was measured.
#[derive(Clone, Debug)]
pub struct Figures {
    /// Timers in each burst.
    pub timers: usize,
    /// Timers stored per second (publishing the burst to all stored).
    pub stored_per_s: f64,
    /// Timers fired per second (their due instant to the last one received).
    pub fired_per_s: f64,
    /// How long after their due instant the last timer was received.
    pub last_after_due_s: f64,
}

/// The workflow whose engine topic the timers fire to (nothing consumes it but the bench).
const TARGET: &str = "BenchTimers";

fn schedule(due: Timestamp) -> anyhow::Result<TimerMessage> {
    let fired = Envelope::new(
        WorkflowEngineMessage::Expire {
            workflow_id: WorkflowId::new(),
        },
        due,
    );
    Ok(TimerMessage::Schedule {
        timer_id: TimerId::new(),
        due,
        message: EncodedMessage::encode(&Topic::workflow_engine(TARGET), &fired)?,
    })
}

/// Publishes `n` schedules due at `due`, in batches.
async fn publish_burst(transport: &dyn Transport, n: usize, due: Timestamp) -> anyhow::Result<()> {
    let now = Timestamp::now_system();
    let mut left = n;
    while left > 0 {
        let batch = left.min(1_000);
        let mut messages = Vec::with_capacity(batch);
        for _ in 0..batch {
            messages.push(outgoing(EncodedMessage::encode(
                &Topic::timers(),
                &Envelope::new(schedule(due)?, now),
            )?));
        }
        transport.publish_all(messages).await?;
        left -= batch;
    }
    Ok(())
}

/// Waits until `store` holds `count` timers; returns when.
async fn stored(store: &dyn TimerStore, count: u64) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if store.count().await? >= count {
            return Ok(Instant::now());
        }
        anyhow::ensure!(Instant::now() < deadline, "timers not stored within 10 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs a timer service on `transport` and `store` (both fresh) and measures bursts of `n`.
pub async fn measure(transport: Arc<dyn Transport>, store: Arc<dyn TimerStore>, n: usize) -> anyhow::Result<Figures> {
    let shutdown = CancellationToken::new();
    let service = tokio::spawn(timer_service::run(
        TimerConfig::default(),
        transport.clone(),
        store.clone(),
        Arc::new(SystemClock),
        shutdown.clone(),
    ));
    let mut target = transport
        .subscribe(Topic::workflow_engine(TARGET).name(), "bench", SubscriptionKind::Shared)
        .await?;

    // Stored per second: a burst due in an hour.
    let began = Instant::now();
    publish_burst(
        transport.as_ref(),
        n,
        Timestamp::now_system().saturating_add(Duration::from_secs(3_600)),
    )
    .await?;
    let stored_at = stored(store.as_ref(), n as u64).await?;
    let stored_per_s = n as f64 / stored_at.duration_since(began).as_secs_f64();

    // Fired per second: a burst all due at one instant, after it is stored.
    let store_time = stored_at.duration_since(began);
    let lead = store_time.mul_f64(1.5) + Duration::from_secs(2);
    let due = Timestamp::now_system().saturating_add(lead);
    publish_burst(transport.as_ref(), n, due).await?;
    stored(store.as_ref(), 2 * n as u64).await?;
    let mut received = 0;
    while received < n {
        let delivery = tokio::time::timeout(Duration::from_secs(600), target.next()).await??;
        delivery.ack().await;
        received += 1;
    }
    let last_after_due = Timestamp::now_system().saturating_duration_since(due);
    anyhow::ensure!(Timestamp::now_system() >= due, "timers fired before their due time");
    shutdown.cancel();
    service.await??;
    Ok(Figures {
        timers: n,
        stored_per_s,
        fired_per_s: n as f64 / last_after_due.as_secs_f64().max(1e-3),
        last_after_due_s: last_after_due.as_secs_f64(),
    })
}
