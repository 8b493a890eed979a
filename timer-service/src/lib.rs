//! The timer service: stores timers (workflow timers, delayed task retries, retention expiries)
//! durably and publishes each one's stored message to its target topic when it is due.
//!
//! Timers arrive as [`TimerMessage`]s on the `timers` topic and are acknowledged once stored.
//! A firing loop claims due timers with a lease, publishes them and then completes them, so a
//! replica that dies after claiming loses nothing: the lease expires and the timer is claimed
//! again. Firing is therefore at-least-once; targets drop timers they already saw. Depends on
//! the transport and timer-store traits only; time comes from a [`Clock`].

use std::sync::Arc;

use baton_runtime::{Backoff, CancellationToken, Clock, retry_transient};
use baton_shared_schemas::messages::{ScheduledMessage, TimerMessage};
use baton_shared_schemas::{Envelope, Topic, codec};
use baton_storage::{StoredTimer, TimerStore};
use baton_transport::{Delivery, OutgoingMessage, SubscriptionKind, Transport, decode_delivery};
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
}

impl baton_runtime::Transient for TimerError {
    fn is_transient(&self) -> bool {
        match self {
            Self::Storage(e) => e.is_transient(),
            Self::Transport(e) => e.is_transient(),
        }
    }
}

struct Service {
    config: TimerConfig,
    shutdown: CancellationToken,
    transport: Arc<dyn Transport>,
    store: Arc<dyn TimerStore>,
    clock: Arc<dyn Clock>,
    wake: Notify,
}

impl Service {
    async fn store_timer(&self, delivery: Delivery) {
        let envelope: Envelope<TimerMessage> = match decode_delivery(&delivery) {
            Ok(e) => e,
            Err(e) => {
                delivery.dead_letter(&format!("undecodable timer message: {e}")).await;
                return;
            }
        };
        let result = match envelope.body {
            TimerMessage::Schedule { timer_id, due, message } => match codec::encode(&message) {
                Ok(payload) => {
                    let timer = StoredTimer {
                        id: timer_id,
                        due,
                        payload,
                    };
                    retry_transient("store timer", Backoff::DEPENDENCY, &self.shutdown, || {
                        self.store.add(timer.clone())
                    })
                    .await
                    .map(|_| ())
                }
                Err(e) => {
                    delivery
                        .dead_letter(&format!("cannot store timer {timer_id}: {e}"))
                        .await;
                    return;
                }
            },
            TimerMessage::Cancel { timer_id } => {
                retry_transient("cancel timer", Backoff::DEPENDENCY, &self.shutdown, || {
                    self.store.cancel(timer_id)
                })
                .await
                .map(|_| ())
            }
        };
        match result {
            Ok(()) => {
                delivery.ack().await;
                self.wake.notify_one();
            }
            // Stopping during an outage: left unsettled, redelivered after the restart.
            Err(e) if e.is_transient() => {
                tracing::info!(error = %e, "stopping during an outage; timer message left for redelivery")
            }
            Err(e) => delivery.nack(&e.to_string()).await,
        }
    }

    /// Claims and fires due timers; returns how many were claimed.
    async fn fire_due(&self) -> Result<usize, TimerError> {
        let claimed = self
            .store
            .claim_due(self.clock.now(), self.config.lease, self.config.batch)
            .await?;
        for timer in &claimed {
            match codec::decode::<ScheduledMessage>(&timer.payload) {
                // Claimed timers are waited through a broker or store outage here rather than
                // left to come back after their lease (tens of seconds).
                Ok(m) => {
                    retry_transient("fire timer", Backoff::DEPENDENCY, &self.shutdown, || {
                        self.transport
                            .publish(&m.topic, OutgoingMessage::new(m.key.clone(), m.bytes.clone()))
                    })
                    .await?;
                }
                Err(e) => {
                    tracing::error!(timer = %timer.id, error = %e, "stored timer is unreadable; dropping it")
                }
            }
            retry_transient("complete timer", Backoff::DEPENDENCY, &self.shutdown, || {
                self.store.complete(timer.id)
            })
            .await?;
        }
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
    let mut subscription = transport
        .subscribe(Topic::timers().name(), SUBSCRIPTION, SubscriptionKind::Keyed)
        .await?;
    let service = Arc::new(Service {
        config,
        shutdown: shutdown.clone(),
        transport,
        store,
        clock,
        wake: Notify::new(),
    });
    let firing = {
        let service = service.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { service.fire_loop(shutdown).await })
    };
    let consumed = loop {
        let delivery = tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            next = subscription.next() => match next {
                Ok(d) => d,
                Err(e) => break Err(TimerError::from(e)),
            },
        };
        service.store_timer(delivery).await;
    };
    shutdown.cancel();
    let fired = firing.await.unwrap_or(Ok(()));
    consumed.and(fired)
}
