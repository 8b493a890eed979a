//! A subscription: one consumer in the subscription's consumer group, reading the topic and the
//! subscription's retry topic. The broker's group coordinator decides which consumer reads which
//! partitions (cooperative-sticky assignment, so a rebalance moves only the partitions that
//! change hands). One task owns the consumer: it fetches into a bounded buffer, commits the
//! watermarks of settled messages, and serves the rebalance callbacks, which commit a revoked
//! partition's watermark before it moves.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot, watch};

use super::Inner;
use super::ack::{AckState, Assignment, InFlight, PartitionOffsets, REDELIVERIES, Settled};
use super::ack::{headers_of, redeliveries_of};
use crate::{Delivery, Result, Subscription, TransportError, locked};

/// Rebalance callbacks of one consumer, and librdkafka's log lines into `tracing`.
pub(crate) struct GroupContext {
    pub group: String,
    pub logical_topic: String,
    pub assignment: Arc<Mutex<Assignment>>,
    /// Counts assignments received (the first one tells `subscribe` the consumer joined).
    pub assigned: watch::Sender<(u64, usize)>,
}

impl ClientContext for GroupContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        super::log_line(level, facility, message, &self.group);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::debug!(group = %self.group, %error, reason, "consumer error");
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let mut commits = TopicPartitionList::new();
        {
            let mut assignment = locked(&self.assignment);
            for element in revoked.elements() {
                let key = (element.topic().to_string(), element.partition());
                if let Some(watermark) = assignment.partitions.remove(&key).and_then(|p| p.handover()) {
                    let _ = commits.add_partition_offset(&key.0, key.1, Offset::Offset(watermark));
                }
            }
        }
        tracing::debug!(topic = %self.logical_topic, group = %self.group, partitions = ?partition_list(revoked), "partitions revoked");
        if commits.count() > 0 {
            // Synchronous: the partition's next reader must start after what this one settled.
            if let Err(e) = consumer.commit(&commits, CommitMode::Sync) {
                tracing::debug!(topic = %self.logical_topic, error = %e, "cannot commit revoked partitions (the next reader redelivers from the last commit)");
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(assigned) => {
                let total = {
                    let mut assignment = locked(&self.assignment);
                    for element in assigned.elements() {
                        assignment.next_epoch += 1;
                        let epoch = assignment.next_epoch;
                        assignment.partitions.insert(
                            (element.topic().to_string(), element.partition()),
                            PartitionOffsets::taken(epoch),
                        );
                    }
                    assignment.partitions.len()
                };
                tracing::debug!(topic = %self.logical_topic, group = %self.group, partitions = ?partition_list(assigned), total, "partitions assigned");
                self.assigned.send_modify(|(count, partitions)| {
                    *count += 1;
                    *partitions = total;
                });
            }
            Rebalance::Revoke(_) => {
                let total = locked(&self.assignment).partitions.len();
                self.assigned.send_modify(|(_, partitions)| *partitions = total);
            }
            Rebalance::Error(e) => {
                tracing::warn!(topic = %self.logical_topic, group = %self.group, error = %e, "rebalance failed")
            }
        }
    }
}

fn partition_list(list: &TopicPartitionList) -> Vec<String> {
    list.elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect()
}

/// A message taken from the consumer, with the assignment epoch of its partition at that time.
pub(crate) struct Fetched {
    pub epoch: u64,
    pub message: rdkafka::message::OwnedMessage,
}

/// Commits the watermark a settle moved.
fn commit(consumer: &StreamConsumer<GroupContext>, assignment: &Mutex<Assignment>, settled: Settled) {
    let Some(watermark) = locked(assignment).settle(&settled.partition, settled.offset, settled.epoch) else {
        return;
    };
    let mut list = TopicPartitionList::new();
    let (topic, partition) = &settled.partition;
    if list
        .add_partition_offset(topic, *partition, Offset::Offset(watermark))
        .is_ok()
    {
        if let Err(e) = consumer.commit(&list, CommitMode::Async) {
            tracing::debug!(topic, partition, error = %e, "offset commit failed");
        }
    }
}

/// The consumer's task: fetches into the buffer (room first, so nothing is fetched that cannot be
/// handed on), commits settled watermarks, and closes the consumer (leaving the group, which
/// commits what is settled) when the subscription is dropped.
pub(crate) async fn run(
    consumer: StreamConsumer<GroupContext>,
    assignment: Arc<Mutex<Assignment>>,
    tx: mpsc::Sender<Fetched>,
    mut settled: mpsc::UnboundedReceiver<Settled>,
    mut closing: oneshot::Receiver<()>,
    logical_topic: String,
) {
    'consume: loop {
        let permit = loop {
            tokio::select! {
                biased;
                _ = &mut closing => break 'consume,
                Some(s) = settled.recv() => commit(&consumer, &assignment, s),
                permit = tx.reserve() => match permit {
                    Ok(permit) => break permit,
                    Err(_) => break 'consume,
                },
            }
        };
        let fetched = loop {
            tokio::select! {
                biased;
                _ = &mut closing => break 'consume,
                Some(s) = settled.recv() => commit(&consumer, &assignment, s),
                received = consumer.recv() => match received {
                    Ok(m) => {
                        let message = m.detach();
                        let key = (message.topic().to_string(), message.partition());
                        // A message of a partition revoked meanwhile belongs to its new reader.
                        if let Some(epoch) = locked(&assignment).partitions.get(&key).map(|p| p.epoch) {
                            break Fetched { epoch, message };
                        }
                    }
                    // librdkafka retries by itself (lost connections, a broker restarting).
                    Err(e) => {
                        tracing::debug!(topic = %logical_topic, error = %e, "consumer error; retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                },
            }
        };
        permit.send(fetched);
    }
    while let Ok(s) = settled.try_recv() {
        commit(&consumer, &assignment, s);
    }
    // Closing polls until the group has let the consumer go (running the revoke callback). That
    // blocks, and never ends while the broker is unreachable, so it runs on a thread of its own
    // that neither the runtime nor a shutdown waits for.
    let spawned = std::thread::Builder::new()
        .name("kafka-consumer-close".into())
        .spawn(move || drop(consumer));
    if let Err(e) = spawned {
        tracing::warn!(topic = %logical_topic, error = %e, "cannot close the consumer on a thread of its own");
    }
}

/// A consumer of a subscription.
pub(crate) struct KafkaSubscription {
    pub rx: mpsc::Receiver<Fetched>,
    pub state: Arc<AckState>,
    pub assignment: Arc<Mutex<Assignment>>,
    pub closing: Option<oneshot::Sender<()>>,
    pub inner: Arc<Inner>,
    pub _claim: Option<crate::ExclusiveClaim>,
}

#[async_trait::async_trait]
impl Subscription for KafkaSubscription {
    async fn next(&mut self) -> Result<Delivery> {
        loop {
            let Fetched { epoch, message } = self.rx.recv().await.ok_or(TransportError::Closed)?;
            let partition = (message.topic().to_string(), message.partition());
            let offset = message.offset();
            // Revoked while buffered: the partition's next reader delivers it.
            if !locked(&self.assignment).delivered(&partition, offset, epoch) {
                continue;
            }
            let hdrs = headers_of(&message);
            let redeliveries = redeliveries_of(&hdrs);
            let key = message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default();
            let payload: Arc<[u8]> = Arc::from(message.payload().unwrap_or_default());
            let tag = self.state.tag();
            locked(&self.state.inflight).insert(
                tag,
                InFlight {
                    partition,
                    offset,
                    epoch,
                    message,
                },
            );
            let visible: Vec<(String, String)> = hdrs.into_iter().filter(|(k, _)| k != REDELIVERIES).collect();
            return Ok(Delivery::new(
                self.state.logical_topic.clone(),
                key,
                payload,
                Arc::new(visible),
                redeliveries,
                tag,
                Arc::new(crate::BrokerAcker(self.state.clone())),
            ));
        }
    }
}

impl Drop for KafkaSubscription {
    fn drop(&mut self) {
        if let Some(closing) = self.closing.take() {
            let _ = closing.send(());
        }
        self.state.redeliveries.close();
        self.inner.opened.fetch_sub(1, Ordering::SeqCst);
    }
}
