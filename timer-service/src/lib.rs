//! The timer service: stores timers (workflow timers, delayed task retries, retention expiries)
//! durably and publishes each one's stored message to its target topic when it is due.
//!
//! Timers arrive as [`TimerMessage`]s on the `timers` topic and are acknowledged once stored.
//! A firing loop claims due timers with a lease, publishes them and then completes them, so a
//! replica that dies after claiming loses nothing: the lease expires and the timer is claimed
//! again. Firing is therefore at-least-once; targets drop timers they already saw. Depends on
//! the transport and timer-store traits only; time comes from a [`Clock`].

use std::sync::Arc;

use baton_runtime::{Backoff, CancellationToken, Clock, Supervisor, retry_transient};
use baton_shared_schemas::messages::{ScheduledMessage, TimerMessage, WorkflowEngineMessage};
use baton_shared_schemas::{CodecError, TimerId, Topic, WorkflowId, codec, decode_envelope};
use baton_storage::{StoredTimer, TimerStore};
use baton_transport::{ConsumeLoop, Handler, Incoming, OutgoingMessage, SubscriptionKind, Transport, headers};
use tokio::sync::Notify;

pub use baton_config::TimerConfig;

/// Subscription name the timer service consumes with.
pub const SUBSCRIPTION: &str = "timer-service";

/// A timer service failure.
#[derive(Debug, thiserror::Error)]
pub enum TimerError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] baton_storage::StorageError),
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] baton_transport::TransportError),
    /// A timer's message cannot be encoded for storing.
    #[error("cannot store timer {timer}: {source}")]
    Unencodable {
        /// The timer.
        timer: TimerId,
        /// Why.
        #[source]
        source: CodecError,
    },
    /// One of the service's tasks failed, which stops it.
    #[error(transparent)]
    Task(#[from] baton_runtime::TaskFailed),
}

impl baton_runtime::Transient for TimerError {
    fn is_transient(&self) -> bool {
        match self {
            Self::Storage(e) => e.is_transient(),
            Self::Transport(e) => e.is_transient(),
            Self::Unencodable { .. } | Self::Task(_) => false,
        }
    }
}

impl baton_runtime::Classify for TimerError {
    fn class(&self) -> baton_runtime::ErrorClass {
        match self {
            Self::Unencodable { .. } => baton_runtime::ErrorClass::Poison,
            e if baton_runtime::Transient::is_transient(e) => baton_runtime::ErrorClass::Transient,
            _ => baton_runtime::ErrorClass::Retryable,
        }
    }
}

/// What storing a timer message means for the timer store: the decision, without I/O.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimerWrite {
    /// Store a timer (kept as it is if one with its id exists).
    Store(StoredTimer),
    /// Drop a timer that has not fired.
    Cancel(TimerId),
}

/// Decides what a timer message writes. Fails only if the message to schedule cannot be
/// encoded, which no redelivery can change.
pub fn decide(message: &TimerMessage) -> Result<TimerWrite, TimerError> {
    match message {
        TimerMessage::Schedule { timer_id, due, message } => Ok(TimerWrite::Store(StoredTimer {
            id: *timer_id,
            due: *due,
            payload: codec::encode(message).map_err(|source| TimerError::Unencodable {
                timer: *timer_id,
                source,
            })?,
        })),
        TimerMessage::Cancel { timer_id } => Ok(TimerWrite::Cancel(*timer_id)),
    }
}

/// What a claimed timer publishes: its stored message, or nothing if what is stored cannot be
/// read (then it is logged and dropped, since it can never be published).
pub fn due_message(timer: &StoredTimer) -> Result<ScheduledMessage, CodecError> {
    codec::decode::<ScheduledMessage>(&timer.payload)
}

/// The instance whose record a stored timer removes when its retention ends (`None` for
/// every other timer): for checks that every ended instance has its expiry pending.
pub fn expiry_of(timer: &StoredTimer) -> Option<WorkflowId> {
    let scheduled = due_message(timer).ok()?;
    Topic::workflow_of(&scheduled.topic)?;
    match decode_envelope::<WorkflowEngineMessage>(&scheduled.bytes).ok()?.body {
        WorkflowEngineMessage::Expire { workflow_id } => Some(workflow_id),
        _ => None,
    }
}

#[derive(Clone)]
struct Service {
    config: TimerConfig,
    shutdown: CancellationToken,
    transport: Arc<dyn Transport>,
    store: Arc<dyn TimerStore>,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
}

#[async_trait::async_trait]
impl Handler<TimerMessage> for Service {
    type Error = TimerError;

    async fn handle_one(&mut self, message: &Incoming<TimerMessage>) -> Result<(), TimerError> {
        self.handle(std::slice::from_ref(message)).await.pop().unwrap_or(Ok(()))
    }

    /// Stores a batch's timers together (one round trip to the store), in order: a cancel
    /// between two schedules stores the first ones before it cancels.
    async fn handle(&mut self, batch: &[Incoming<TimerMessage>]) -> Vec<Result<(), TimerError>> {
        let mut results = Vec::with_capacity(batch.len());
        let mut run: Vec<StoredTimer> = Vec::new();
        // Where the schedules not stored yet start among the results.
        let mut run_start = 0;
        for message in batch {
            match decide(&message.envelope.body) {
                Ok(TimerWrite::Store(timer)) => {
                    if run.is_empty() {
                        run_start = results.len();
                    }
                    run.push(timer);
                    results.push(Ok(()));
                }
                Ok(TimerWrite::Cancel(id)) => {
                    if let Err(e) = self.store_run(&mut run).await {
                        // The run and what follows are handed again.
                        results.truncate(run_start);
                        results.push(Err(e));
                        return results;
                    }
                    let cancelled = self.store.cancel(id).await.map(|_| ()).map_err(TimerError::from);
                    let stop = matches!(&cancelled, Err(e) if baton_runtime::Transient::is_transient(e));
                    results.push(cancelled);
                    if stop {
                        return results;
                    }
                }
                Err(poison) => results.push(Err(poison)),
            }
        }
        if let Err(e) = self.store_run(&mut run).await {
            results.truncate(run_start);
            results.push(Err(e));
        }
        results
    }
}

impl Service {
    /// Stores the timers of `run` in one round trip and empties it.
    async fn store_run(&self, run: &mut Vec<StoredTimer>) -> Result<(), TimerError> {
        if run.is_empty() {
            return Ok(());
        }
        self.store.add_all(std::mem::take(run)).await?;
        // A new timer may be due before the one the firing loop sleeps towards.
        self.wake.notify_one();
        Ok(())
    }

    /// Claims due timers, fires them together and completes them together; returns how many
    /// were claimed. Three round trips for a whole batch: the claim, the publish (the
    /// transport sends a batch per topic and waits for all receipts at once), the completion.
    async fn fire_due(&self) -> Result<usize, TimerError> {
        let now = self.clock.now();
        let claimed = self.store.claim_due(now, self.config.lease, self.config.batch).await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let fired_at = now.as_millis().to_string();
        let mut messages = Vec::with_capacity(claimed.len());
        for timer in &claimed {
            match due_message(timer) {
                Ok(m) => {
                    let mut message = OutgoingMessage::new(m.key, m.bytes);
                    message
                        .headers
                        .push((headers::TIMER_FIRED_AT.to_string(), fired_at.clone()));
                    messages.push((m.topic, message));
                }
                Err(e) => {
                    tracing::error!(timer = %timer.id, error = %e, "stored timer is unreadable; dropping it")
                }
            }
        }
        let fired = messages.len();
        // Claimed timers are waited through a broker or store outage here rather than left to
        // come back after their lease (tens of seconds).
        retry_transient("fire timers", Backoff::DEPENDENCY, &self.shutdown, || {
            self.transport.publish_all(messages.clone())
        })
        .await?;
        metrics::counter!(baton_telemetry::names::TIMERS_FIRED).increment(fired as u64);
        let ids: Vec<TimerId> = claimed.iter().map(|t| t.id).collect();
        retry_transient("complete timers", Backoff::DEPENDENCY, &self.shutdown, || {
            self.store.complete_all(&ids)
        })
        .await?;
        Ok(claimed.len())
    }

    async fn fire_loop(&self, shutdown: CancellationToken) -> Result<(), TimerError> {
        loop {
            let claimed = match self.fire_due().await {
                Ok(n) => n,
                Err(e) => {
                    // Storage or broker trouble: the claimed timers come back after their lease.
                    tracing::warn!(error = %e, "firing timers failed; retrying");
                    0
                }
            };
            if claimed >= self.config.batch {
                continue;
            }
            let now = self.clock.now();
            let idle_until = now.saturating_add(self.config.max_idle);
            let until = match self.store.next_due().await {
                Ok(Some(due)) => due.min(idle_until),
                _ => idle_until,
            };
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = self.wake.notified() => {}
                _ = self.clock.sleep_until(until) => {}
            }
        }
    }
}

/// Runs the timer service until `shutdown` is cancelled.
pub async fn run(
    config: TimerConfig,
    transport: Arc<dyn Transport>,
    store: Arc<dyn TimerStore>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> Result<(), TimerError> {
    let subscription = transport
        .subscribe(Topic::timers().name(), SUBSCRIPTION, SubscriptionKind::Keyed)
        .await?;
    let consume = ConsumeLoop::new("timer message", shutdown.clone())
        .batch(config.batch)
        .clock(clock.clone());
    let mut service = Service {
        config,
        shutdown: shutdown.clone(),
        transport,
        store,
        clock,
        wake: Arc::new(Notify::new()),
    };
    let mut supervisor = Supervisor::new(shutdown.clone());
    let firing = service.clone();
    supervisor.spawn("timer firing", async move { firing.fire_loop(shutdown).await });
    supervisor.spawn("timer consumer", async move {
        let consumed = consume.run(subscription, &mut service).await;
        // The subscription ended: firing stops with it.
        service.shutdown.cancel();
        consumed
    });
    Ok(supervisor.join().await?)
}

#[cfg(test)]
mod tests {
    use baton_shared_schemas::messages::WorkflowEngineMessage;
    use baton_shared_schemas::{EncodedMessage, Envelope, Timestamp, WorkflowId};

    use super::*;

    fn schedule() -> TimerMessage {
        let fired = Envelope::new(
            WorkflowEngineMessage::Expire {
                workflow_id: WorkflowId::new(),
            },
            Timestamp(1),
        );
        TimerMessage::Schedule {
            timer_id: TimerId::new(),
            due: Timestamp(500),
            message: EncodedMessage::encode(&Topic::workflow_engine("Booking"), &fired).expect("encode"),
        }
    }

    #[test]
    fn a_schedule_stores_its_message_and_the_same_message_twice_stores_the_same_timer() {
        let message = schedule();
        let TimerMessage::Schedule {
            timer_id,
            message: scheduled,
            ..
        } = &message
        else {
            unreachable!("built as a schedule")
        };
        let write = decide(&message).expect("decide");
        assert_eq!(write, decide(&message).expect("decide again"));
        let TimerWrite::Store(timer) = write else {
            panic!("a schedule stores a timer")
        };
        assert_eq!((timer.id, timer.due), (*timer_id, Timestamp(500)));
        assert_eq!(
            &due_message(&timer).expect("readable"),
            scheduled,
            "it fires what was scheduled"
        );
    }

    #[test]
    fn a_cancel_drops_the_timer_and_an_unreadable_stored_timer_is_reported() {
        let id = TimerId::new();
        assert_eq!(
            decide(&TimerMessage::Cancel { timer_id: id }).expect("decide"),
            TimerWrite::Cancel(id)
        );
        let garbage = StoredTimer {
            id,
            due: Timestamp(0),
            payload: vec![0xff, 0xff, 0xff],
        };
        assert!(due_message(&garbage).is_err());
    }
}
