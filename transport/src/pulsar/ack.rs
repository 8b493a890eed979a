//! Settling deliveries: acks go to the broker through the consumer's task; a nack republishes
//! the message to the subscription's retry topic, after a delay that grows with its redelivery
//! count, with that count in a message property (so it survives consumer reconnects and broker
//! restarts, unlike the broker's own counter); past the limit, and for poison, the message goes
//! to `dlq:{topic}` with the reason.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use baton_shared_schemas::topics::dead_letter_topic;
use pulsar::proto::MessageIdData;
use tokio::sync::mpsc;

use super::Inner;
use crate::delivery::headers;
use crate::{BrokerAcks, locked};

/// The message property holding how often a message was redelivered.
pub(crate) const REDELIVERIES: &str = "baton-redelivery-count";

/// What the consumer's task does for a settled message.
pub(crate) enum Settle {
    /// Acknowledge it.
    Ack { topic: String, id: MessageIdData },
    /// Let the broker redeliver it (when it could not be republished).
    Nack { topic: String, id: MessageIdData },
}

/// A delivered message not settled yet.
pub(crate) struct InFlight {
    /// The Pulsar topic (partition) it came from.
    pub topic: String,
    pub id: MessageIdData,
    pub key: String,
    pub payload: Arc<[u8]>,
    pub properties: HashMap<String, String>,
    pub redeliveries: u32,
}

/// The unsettled messages of one consumer.
pub(crate) struct AckState {
    pub inner: Arc<Inner>,
    /// The logical topic consumed.
    pub logical_topic: String,
    /// The subscription's retry topic.
    pub retry_topic: String,
    pub inflight: Mutex<HashMap<u64, InFlight>>,
    pub next_tag: AtomicU64,
    pub settle: mpsc::UnboundedSender<Settle>,
    /// Nacked messages waiting for their backoff.
    pub redeliveries: crate::DelayedRedeliveries,
}

impl AckState {
    fn broker_nack(&self, f: &InFlight) {
        let _ = self.settle.send(Settle::Nack {
            topic: f.topic.clone(),
            id: f.id.clone(),
        });
    }

    /// Publishes a copy of `f` to `target` (a logical topic, or a full Pulsar name) with
    /// `extra` properties, then acks the original; if the copy cannot be published the broker
    /// redelivers the original instead.
    async fn move_to(&self, f: InFlight, target: Target<'_>, extra: Vec<(String, String)>) {
        let mut properties = f.properties.clone();
        properties.remove(REDELIVERIES);
        properties.extend(extra);
        let published = match target {
            Target::Logical(topic) => {
                self.inner
                    .publish_logical(topic, &f.key, f.payload.to_vec(), properties)
                    .await
            }
            Target::Full(topic) => {
                self.inner
                    .publish_full(topic, &f.key, f.payload.to_vec(), properties)
                    .await
            }
        };
        match published {
            Ok(()) => self.ack(&f),
            Err(e) => {
                tracing::error!(topic = %self.logical_topic, error = %e, "cannot move a message; the broker redelivers it");
                self.broker_nack(&f);
            }
        }
    }
}

#[async_trait::async_trait]
impl BrokerAcks for AckState {
    type InFlight = InFlight;

    fn take(&self, tag: u64) -> Option<InFlight> {
        locked(&self.inflight).remove(&tag)
    }

    fn ack(&self, f: &InFlight) {
        let _ = self.settle.send(Settle::Ack {
            topic: f.topic.clone(),
            id: f.id.clone(),
        });
    }

    fn redeliveries(&self, f: &InFlight) -> u32 {
        f.redeliveries
    }

    fn limits(&self) -> (u32, std::time::Duration) {
        (self.inner.config.max_redeliveries, self.inner.config.nack_delay)
    }

    fn delayed(&self) -> &crate::DelayedRedeliveries {
        &self.redeliveries
    }

    async fn redeliver(&self, f: InFlight, count: u32) {
        let extra = vec![(REDELIVERIES.to_string(), count.to_string())];
        self.move_to(f, Target::Full(&self.retry_topic), extra).await;
    }

    async fn dead_letter_now(&self, f: InFlight, reason: String) {
        tracing::warn!(topic = %self.logical_topic, %reason, "message dead-lettered");
        let extra = vec![
            (headers::DEAD_LETTER_REASON.to_string(), reason),
            (headers::ORIGINAL_TOPIC.to_string(), self.logical_topic.clone()),
            (headers::REDELIVERIES.to_string(), f.redeliveries.to_string()),
        ];
        let dlq = dead_letter_topic(&self.logical_topic);
        self.move_to(f, Target::Logical(&dlq), extra).await;
    }
}

impl AckState {
    /// A new delivery tag.
    pub(crate) fn tag(&self) -> u64 {
        self.next_tag.fetch_add(1, Ordering::Relaxed)
    }
}

/// Where a message is moved.
enum Target<'a> {
    /// A logical topic (created if missing).
    Logical(&'a str),
    /// A Pulsar topic that exists.
    Full(&'a str),
}
