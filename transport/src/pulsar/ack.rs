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

/// A message's place in a batched entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchPosition {
    pub index: u32,
    pub size: u32,
}

/// A batched entry some of whose messages are settled.
struct PartlySettled {
    settled: Vec<bool>,
    remaining: u32,
}

/// Batched entries not settled yet, by topic, ledger and entry.
///
/// The client acknowledges a batched message as its whole entry (the broker keeps no
/// per-message state unless batch-index acknowledgement is on), so the entry is acknowledged
/// only once every message in it is settled. A message of an entry redelivered meanwhile counts
/// as the same message: what is settled is which messages were handled, whichever copy.
#[derive(Default)]
pub(crate) struct BatchAcks {
    entries: HashMap<(String, u64, u64), PartlySettled>,
}

impl BatchAcks {
    /// Records one message of an entry settled; true once the whole entry is.
    pub(crate) fn settle(&mut self, topic: &str, id: &MessageIdData, at: BatchPosition) -> bool {
        let key = (topic.to_string(), id.ledger_id, id.entry_id);
        let entry = self.entries.entry(key.clone()).or_insert_with(|| PartlySettled {
            settled: vec![false; at.size as usize],
            remaining: at.size,
        });
        if let Some(settled) = entry.settled.get_mut(at.index as usize) {
            if !*settled {
                *settled = true;
                entry.remaining -= 1;
            }
        }
        if entry.remaining == 0 {
            self.entries.remove(&key);
            true
        } else {
            false
        }
    }

    /// Entries with messages still unsettled.
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.entries.len()
    }
}

/// The id that acknowledges or redelivers a whole entry.
fn entry_id(id: &MessageIdData) -> MessageIdData {
    MessageIdData {
        batch_index: None,
        batch_size: None,
        ack_set: Vec::new(),
        ..id.clone()
    }
}

/// A delivered message not settled yet.
pub(crate) struct InFlight {
    /// The Pulsar topic (partition) it came from.
    pub topic: String,
    pub id: MessageIdData,
    /// Its place in a batched entry of several messages.
    pub batch: Option<BatchPosition>,
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
    /// Batched entries partly settled.
    pub batches: Mutex<BatchAcks>,
    pub next_tag: AtomicU64,
    pub settle: mpsc::UnboundedSender<Settle>,
    /// Nacked messages waiting for their backoff.
    pub redeliveries: crate::DelayedRedeliveries,
}

impl AckState {
    /// Has the broker redeliver a message: its whole entry, when batched (the messages of it
    /// already handled come again, and are handled again idempotently).
    fn broker_nack(&self, f: &InFlight) {
        let _ = self.settle.send(Settle::Nack {
            topic: f.topic.clone(),
            id: entry_id(&f.id),
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
        if let Some(at) = f.batch {
            if !locked(&self.batches).settle(&f.topic, &f.id, at) {
                return;
            }
        }
        let _ = self.settle.send(Settle::Ack {
            topic: f.topic.clone(),
            id: entry_id(&f.id),
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
            (
                headers::ORIGINAL_POSITION.to_string(),
                format!(
                    "{}:{}:{}:{}",
                    f.topic,
                    f.id.ledger_id,
                    f.id.entry_id,
                    f.batch.as_ref().map_or(0, |b| b.index)
                ),
            ),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ledger: u64, entry: u64, index: i32) -> MessageIdData {
        MessageIdData {
            ledger_id: ledger,
            entry_id: entry,
            batch_index: Some(index),
            ..MessageIdData::default()
        }
    }

    #[test]
    fn an_entry_is_settled_once_every_message_in_it_is() {
        let mut acks = BatchAcks::default();
        let size = 3;
        let at = |index| BatchPosition { index, size };
        assert!(!acks.settle("t", &id(1, 7, 2), at(2)));
        assert!(!acks.settle("t", &id(1, 8, 0), at(0)), "another entry is apart");
        assert!(
            !acks.settle("t", &id(1, 7, 2), at(2)),
            "the same message twice counts once"
        );
        assert!(!acks.settle("other", &id(1, 7, 0), at(0)), "another topic is apart");
        assert!(!acks.settle("t", &id(1, 7, 0), at(0)));
        assert!(
            acks.settle("t", &id(1, 7, 1), at(1)),
            "the last message settles the entry"
        );
        assert_eq!(acks.pending(), 2);
        assert!(
            !acks.settle("t", &id(1, 7, 1), at(1)),
            "a redelivered copy starts the entry again"
        );
    }

    #[test]
    fn an_entry_is_acknowledged_as_a_whole() {
        let whole = entry_id(&MessageIdData {
            batch_size: Some(3),
            ack_set: vec![1],
            ..id(4, 9, 1)
        });
        assert_eq!((whole.ledger_id, whole.entry_id), (4, 9));
        assert_eq!((whole.batch_index, whole.batch_size), (None, None));
        assert!(whole.ack_set.is_empty());
    }
}
