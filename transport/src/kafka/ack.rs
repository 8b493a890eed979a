//! Offsets and settling. Kafka commits a position per partition, not a message: a consumer
//! commits only up to the lowest offset it delivered but has not settled (a contiguous
//! watermark), so a consumer that goes away never loses a message. A nack republishes the
//! message to the subscription's retry topic after a delay growing with its redelivery count,
//! carried in a header; past the limit, and for poison, it goes to `dlq:{topic}` with the reason.
//! Either way the original is settled only once its copy is written.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use baton_shared_schemas::topics::dead_letter_topic;
use rdkafka::message::{Headers, Message, OwnedMessage};
use tokio::sync::mpsc;

use super::Inner;
use crate::delivery::headers;
use crate::{BrokerAcks, locked};

/// The header holding how often a message was redelivered.
pub(crate) const REDELIVERIES: &str = "baton-redelivery-count";

/// A partition of one of the topics a consumer reads.
pub(crate) type PartitionKey = (String, i32);

/// Delivered-but-unsettled offsets of one assigned partition.
pub(crate) struct PartitionOffsets {
    /// Changes with each assignment, so settles of messages from an earlier one are told apart.
    pub epoch: u64,
    unsettled: BTreeSet<i64>,
    highest_delivered: i64,
    committed: i64,
}

impl PartitionOffsets {
    /// A partition just assigned, nothing delivered yet.
    pub fn taken(epoch: u64) -> Self {
        Self {
            epoch,
            unsettled: BTreeSet::new(),
            highest_delivered: -1,
            committed: -1,
        }
    }

    /// The offset below which everything delivered is settled.
    fn watermark(&self) -> i64 {
        self.unsettled.first().copied().unwrap_or(self.highest_delivered + 1)
    }

    /// What to commit when the partition is let go: the watermark, once anything was delivered.
    pub fn handover(&self) -> Option<i64> {
        (self.highest_delivered >= 0).then(|| self.watermark())
    }

    /// Records a delivered offset.
    fn delivered(&mut self, offset: i64) {
        self.unsettled.insert(offset);
        self.highest_delivered = self.highest_delivered.max(offset);
    }

    /// Settles an offset; the new watermark if it moved past what was committed.
    fn settle(&mut self, offset: i64) -> Option<i64> {
        self.unsettled.remove(&offset);
        let watermark = self.watermark();
        (watermark > self.committed).then(|| {
            self.committed = watermark;
            watermark
        })
    }
}

/// The partitions a consumer holds now, as the group coordinator assigned them.
#[derive(Default)]
pub(crate) struct Assignment {
    pub partitions: HashMap<PartitionKey, PartitionOffsets>,
    pub next_epoch: u64,
}

impl Assignment {
    /// Records a delivery; false if its partition was revoked since the message was fetched.
    pub fn delivered(&mut self, partition: &PartitionKey, offset: i64, epoch: u64) -> bool {
        match self.partitions.get_mut(partition) {
            Some(p) if p.epoch == epoch => {
                p.delivered(offset);
                true
            }
            _ => false,
        }
    }

    /// Settles a delivery; the offset to commit if the watermark moved. A message from an
    /// earlier assignment of the partition changes nothing: its offsets were handed over.
    pub fn settle(&mut self, partition: &PartitionKey, offset: i64, epoch: u64) -> Option<i64> {
        match self.partitions.get_mut(partition) {
            Some(p) if p.epoch == epoch => p.settle(offset),
            _ => None,
        }
    }
}

/// A settled delivery, for the consumer's task to commit.
pub(crate) struct Settled {
    pub partition: PartitionKey,
    pub offset: i64,
    pub epoch: u64,
}

/// A delivered message not yet settled.
pub(crate) struct InFlight {
    pub partition: PartitionKey,
    pub offset: i64,
    pub epoch: u64,
    pub message: OwnedMessage,
}

/// The unsettled deliveries of one consumer.
pub(crate) struct AckState {
    pub inner: Arc<Inner>,
    pub logical_topic: String,
    /// The subscription's retry topic (its Kafka name).
    pub retry_topic: String,
    pub inflight: Mutex<HashMap<u64, InFlight>>,
    pub next_tag: AtomicU64,
    pub settled: mpsc::UnboundedSender<Settled>,
    /// Nacked messages waiting for their backoff.
    pub redeliveries: crate::DelayedRedeliveries,
}

/// The headers of a record, as text.
pub(crate) fn headers_of(message: &OwnedMessage) -> Vec<(String, String)> {
    message
        .headers()
        .map(|h| {
            h.iter()
                .filter_map(|header| {
                    header
                        .value
                        .map(|v| (header.key.to_string(), String::from_utf8_lossy(v).into_owned()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// How often a record was redelivered, from its header.
pub(crate) fn redeliveries_of(hdrs: &[(String, String)]) -> u32 {
    hdrs.iter()
        .find(|(k, _)| k == REDELIVERIES)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

impl AckState {
    /// A new delivery tag.
    pub fn tag(&self) -> u64 {
        self.next_tag.fetch_add(1, Ordering::Relaxed)
    }

    /// Writes a copy of `f` to `topic` (a Kafka name) with `extra` headers, then settles the
    /// original. If the copy cannot be written the original stays unsettled: below the
    /// watermark, it is redelivered by the partition's next reader.
    async fn move_to(&self, f: InFlight, topic: &str, extra: Vec<(String, String)>) {
        let mut hdrs: Vec<(String, String)> = headers_of(&f.message)
            .into_iter()
            .filter(|(k, _)| k != REDELIVERIES)
            .collect();
        hdrs.extend(extra);
        let key = f
            .message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default();
        let payload = f.message.payload().unwrap_or_default();
        match self.inner.send(&self.logical_topic, topic, &key, payload, &hdrs).await {
            Ok(()) => BrokerAcks::ack(self, &f),
            Err(e) => {
                tracing::error!(topic = %self.logical_topic, target = topic, error = %e, "cannot move a message; it stays unsettled")
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
        let _ = self.settled.send(Settled {
            partition: f.partition.clone(),
            offset: f.offset,
            epoch: f.epoch,
        });
    }

    fn redeliveries(&self, f: &InFlight) -> u32 {
        redeliveries_of(&headers_of(&f.message))
    }

    fn limits(&self) -> (u32, std::time::Duration) {
        (self.inner.config.max_redeliveries, self.inner.config.nack_delay)
    }

    fn delayed(&self) -> &crate::DelayedRedeliveries {
        &self.redeliveries
    }

    async fn redeliver(&self, f: InFlight, count: u32) {
        let extra = vec![(REDELIVERIES.to_string(), count.to_string())];
        self.move_to(f, &self.retry_topic, extra).await;
    }

    async fn dead_letter_now(&self, f: InFlight, reason: String) {
        tracing::warn!(topic = %self.logical_topic, %reason, "message dead-lettered");
        let extra = vec![
            (headers::DEAD_LETTER_REASON.to_string(), reason),
            (headers::ORIGINAL_TOPIC.to_string(), self.logical_topic.clone()),
            (headers::REDELIVERIES.to_string(), self.redeliveries(&f).to_string()),
            (
                headers::ORIGINAL_POSITION.to_string(),
                format!("{}:{}@{}", f.partition.0, f.partition.1, f.offset),
            ),
        ];
        let dlq = dead_letter_topic(&self.logical_topic);
        match self.inner.ensure(&dlq).await {
            Ok(topic) => self.move_to(f, &topic, extra).await,
            Err(e) => tracing::error!(topic = %self.logical_topic, error = %e, "cannot create the dead-letter topic"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_stops_at_the_lowest_unsettled_offset() {
        let mut assignment = Assignment::default();
        let p: PartitionKey = ("t".into(), 0);
        assignment.partitions.insert(p.clone(), PartitionOffsets::taken(1));
        for offset in 10..14 {
            assert!(assignment.delivered(&p, offset, 1));
        }
        assert_eq!(
            assignment.settle(&p, 11, 1),
            Some(10),
            "10 is still unsettled: commit up to it"
        );
        assert_eq!(assignment.settle(&p, 11, 1), None, "nothing moved");
        assert_eq!(assignment.settle(&p, 10, 1), Some(12));
        assert_eq!(assignment.settle(&p, 13, 1), None);
        assert_eq!(assignment.partitions[&p].handover(), Some(12));
        assert_eq!(assignment.settle(&p, 12, 1), Some(14));
        assert_eq!(assignment.settle(&p, 12, 1), None, "settling twice changes nothing");
    }

    #[test]
    fn deliveries_of_an_earlier_assignment_move_nothing() {
        let mut assignment = Assignment::default();
        let p: PartitionKey = ("t".into(), 3);
        assignment.partitions.insert(p.clone(), PartitionOffsets::taken(1));
        assert!(assignment.delivered(&p, 5, 1));
        // Revoked and assigned again: a new epoch.
        assignment.partitions.insert(p.clone(), PartitionOffsets::taken(2));
        assert_eq!(assignment.settle(&p, 5, 1), None);
        assert!(
            !assignment.delivered(&p, 6, 1),
            "a message fetched before the revoke is dropped"
        );
        assert_eq!(
            assignment.partitions[&p].handover(),
            None,
            "nothing delivered under epoch 2"
        );
    }
}
