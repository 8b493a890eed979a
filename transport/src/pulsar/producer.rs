//! One publisher per topic, created on first use: a task that owns the topic's producer and
//! commits publishes in groups. It takes every publish request waiting for it, enqueues their
//! messages, flushes them as one batched entry per partition and hands each request its
//! outcome once the broker has confirmed it. While a group is being confirmed the next one
//! gathers, so under load an entry carries many messages, and an idle topic sends a message at
//! once instead of lingering for more.
//!
//! Keys choose the partition (murmur3 of the key, as every Pulsar client does), and keyed
//! subscriptions are Failover subscriptions on the partitions, so a batch only ever holds
//! messages for the one consumer that owns its partition.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pulsar::{Producer, ProducerOptions, Pulsar, TokioExecutor};
use tokio::sync::{OnceCell, mpsc, oneshot};

use crate::{TransportError, locked};

/// Publish requests a topic's publisher holds before callers wait for room.
const QUEUED_REQUESTS: usize = 256;

/// Largest batched entry in bytes; a bigger message goes alone. The broker's default limit on a
/// message is 5 MiB.
const BATCH_BYTES: usize = 1024 * 1024;

/// How long a producer may take to be created, or a group of messages to be confirmed, before
/// the attempt fails as a broker error (which callers wait out and retry). Without a bound, a
/// producer whose connection the client lost track of across a broker restart keeps its
/// callers waiting forever; Pulsar's own clients bound a send the same way.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// A message to publish.
pub(crate) struct Outgoing {
    pub key: String,
    pub payload: Vec<u8>,
    pub properties: HashMap<String, String>,
}

/// Messages published together, answered together.
struct Request {
    messages: Vec<Outgoing>,
    done: oneshot::Sender<Result<(), String>>,
}

/// The handle of a topic's publisher task.
type Publisher = mpsc::Sender<Request>;

/// The publishers of one client.
pub(crate) struct Producers {
    client: Pulsar<TokioExecutor>,
    /// Messages per batched entry; 1 turns batching off.
    batch_messages: u32,
    by_topic: Arc<Mutex<HashMap<String, Arc<OnceCell<Publisher>>>>>,
}

fn send_error(topic: &str, e: impl std::fmt::Display) -> TransportError {
    TransportError::Broker {
        topic: topic.to_string(),
        reason: e.to_string(),
    }
}

impl Producers {
    pub(crate) fn new(client: Pulsar<TokioExecutor>, batch_messages: u32) -> Self {
        Self {
            client,
            batch_messages,
            by_topic: Arc::default(),
        }
    }

    async fn publisher(&self, topic: &str) -> Result<Publisher, TransportError> {
        let cell = locked(&self.by_topic).entry(topic.to_string()).or_default().clone();
        cell.get_or_try_init(|| async {
            let batching = self.batch_messages > 1;
            let options = ProducerOptions {
                // Keys choose the partition (murmur3 of the key); without a key, round robin.
                routing_policy: Some(pulsar::routing_policy::RoutingPolicy::RoundRobin),
                // Batches are cut by the publisher's flush, by count or by size, never by time.
                batch_size: batching.then_some(self.batch_messages),
                batch_byte_size: batching.then_some(BATCH_BYTES),
                batch_timeout: None,
                // Wait for room instead of failing when many messages are in flight.
                block_queue_if_full: true,
                ..ProducerOptions::default()
            };
            // Built in a task of its own: a caller cancelled halfway must not leave the
            // client's connection manager with a connection attempt dropped mid-way, which
            // it would wait on forever.
            let client = self.client.clone();
            let name = topic.to_string();
            let build =
                tokio::spawn(async move { client.producer().with_topic(name).with_options(options).build().await });
            let built = tokio::time::timeout(SEND_TIMEOUT, build)
                .await
                .map_err(|_| send_error(topic, format!("no producer within {SEND_TIMEOUT:?}")))?
                .map_err(|e| send_error(topic, format!("cannot create a producer: {e}")))?;
            let producer = built.map_err(|e| send_error(topic, format!("cannot create a producer: {e}")))?;
            let (tx, rx) = mpsc::channel(QUEUED_REQUESTS);
            let owner = Owner {
                topic: topic.to_string(),
                cell: cell.clone(),
                publishers: self.by_topic.clone(),
            };
            tokio::spawn(publish_groups(owner, producer, batching, rx));
            Ok::<_, TransportError>(tx)
        })
        .await
        .cloned()
    }

    /// Publishes messages to a topic that exists, in order, and waits until the broker has
    /// them all.
    pub(crate) async fn publish(&self, topic: &str, messages: Vec<Outgoing>) -> Result<(), TransportError> {
        if messages.is_empty() {
            return Ok(());
        }
        let publisher = self.publisher(topic).await?;
        let (done, outcome) = oneshot::channel();
        if publisher.send(Request { messages, done }).await.is_err() {
            // Its task ended (and unregistered itself) after a failure: the caller retries.
            return Err(send_error(topic, "the producer closed"));
        }
        match outcome.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(send_error(topic, reason)),
            Err(_) => Err(send_error(topic, "the producer closed")),
        }
    }
}

/// Where a publisher task is registered, so that it can unregister itself when it ends.
struct Owner {
    topic: String,
    cell: Arc<OnceCell<Publisher>>,
    publishers: Arc<Mutex<HashMap<String, Arc<OnceCell<Publisher>>>>>,
}

impl Owner {
    fn unregister(&self) {
        let mut publishers = locked(&self.publishers);
        if publishers.get(&self.topic).is_some_and(|c| Arc::ptr_eq(c, &self.cell)) {
            publishers.remove(&self.topic);
        }
    }
}

/// The publisher task of one topic. It ends at the first failure, failing the group it was
/// publishing and everything queued behind it; the next publish opens a new producer (the
/// callers retry, and broker-side deduplication drops what the broker had already stored).
async fn publish_groups(
    owner: Owner,
    mut producer: Producer<TokioExecutor>,
    batching: bool,
    mut requests: mpsc::Receiver<Request>,
) {
    let mut failure = None;
    while let Some(first) = requests.recv().await {
        let mut group = vec![first];
        while let Ok(more) = requests.try_recv() {
            group.push(more);
        }
        let messages: usize = group.iter().map(|r| r.messages.len()).sum();
        let published = tokio::time::timeout(SEND_TIMEOUT, publish_group(&mut producer, batching, &mut group))
            .await
            .unwrap_or_else(|_| Err(format!("the broker did not confirm within {SEND_TIMEOUT:?}")));
        match published {
            Ok(()) => {
                tracing::trace!(topic = %owner.topic, requests = group.len(), messages, "group published");
                for request in group {
                    let _ = request.done.send(Ok(()));
                }
            }
            Err(reason) => {
                tracing::debug!(topic = %owner.topic, %reason, "publish failed; the producer is reopened");
                for request in group {
                    let _ = request.done.send(Err(reason.clone()));
                }
                failure = Some(reason);
                break;
            }
        }
    }
    owner.unregister();
    requests.close();
    if let Some(reason) = failure {
        while let Ok(request) = requests.try_recv() {
            let _ = request.done.send(Err(reason.clone()));
        }
    }
    // Closing waits for the broker; a producer that timed out may never get an answer.
    let _ = tokio::time::timeout(SEND_TIMEOUT, producer.close()).await;
}

/// Enqueues a group's messages, flushes them and waits for every receipt.
async fn publish_group(
    producer: &mut Producer<TokioExecutor>,
    batching: bool,
    group: &mut [Request],
) -> Result<(), String> {
    let mut receipts = Vec::with_capacity(group.iter().map(|r| r.messages.len()).sum());
    for request in group.iter_mut() {
        for message in request.messages.drain(..) {
            let message = pulsar::producer::Message {
                payload: message.payload,
                properties: message.properties,
                partition_key: (!message.key.is_empty()).then_some(message.key),
                ..Default::default()
            };
            receipts.push(producer.send_non_blocking(message).await.map_err(|e| e.to_string())?);
        }
    }
    if batching {
        producer.send_batch().await.map_err(|e| e.to_string())?;
    }
    for receipt in receipts {
        let receipt = receipt.await.map_err(|e| e.to_string())?;
        tracing::trace!(sequence = receipt.sequence_id, "published");
    }
    Ok(())
}
