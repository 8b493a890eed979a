//! One producer per topic, created on first use. A send only enqueues the message on the
//! connection and hands back its receipt, so several messages are in flight at once and a batch
//! of publishes costs one round trip, not one per message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pulsar::producer::SendFuture;
use pulsar::{Producer, ProducerOptions, Pulsar, TokioExecutor};
use tokio::sync::{Mutex as AsyncMutex, OnceCell};

use crate::{TransportError, locked};

type TopicProducer = Arc<AsyncMutex<Producer<TokioExecutor>>>;

/// The producers of one client.
pub(crate) struct Producers {
    client: Pulsar<TokioExecutor>,
    by_topic: Mutex<HashMap<String, Arc<OnceCell<TopicProducer>>>>,
}

fn send_error(topic: &str, e: impl std::fmt::Display) -> TransportError {
    TransportError::Broker {
        topic: topic.to_string(),
        reason: e.to_string(),
    }
}

impl Producers {
    pub(crate) fn new(client: Pulsar<TokioExecutor>) -> Self {
        Self {
            client,
            by_topic: Mutex::new(HashMap::new()),
        }
    }

    async fn producer(&self, topic: &str) -> Result<TopicProducer, TransportError> {
        let cell = locked(&self.by_topic).entry(topic.to_string()).or_default().clone();
        cell.get_or_try_init(|| async {
            let options = ProducerOptions {
                // Keys choose the partition (murmur3 of the key); without a key, round robin.
                routing_policy: Some(pulsar::routing_policy::RoutingPolicy::RoundRobin),
                // No batching: the client has no key-based batcher, and a batch of mixed keys
                // would reach one Key_Shared consumer whatever its keys.
                batch_size: None,
                // Wait for room instead of failing when many messages are in flight.
                block_queue_if_full: true,
                ..ProducerOptions::default()
            };
            let producer = self
                .client
                .producer()
                .with_topic(topic)
                .with_options(options)
                .build()
                .await
                .map_err(|e| send_error(topic, format!("cannot create a producer: {e}")))?;
            Ok::<_, TransportError>(Arc::new(AsyncMutex::new(producer)))
        })
        .await
        .cloned()
    }

    /// Forgets a topic's producer after a failure, so the next send opens a new one.
    fn evict(&self, topic: &str) {
        locked(&self.by_topic).remove(topic);
    }

    /// Enqueues a message and returns its receipt.
    pub(crate) async fn enqueue(
        &self,
        topic: &str,
        key: &str,
        payload: Vec<u8>,
        properties: HashMap<String, String>,
    ) -> Result<SendFuture, TransportError> {
        let producer = self.producer(topic).await?;
        let message = pulsar::producer::Message {
            payload,
            properties,
            partition_key: (!key.is_empty()).then(|| key.to_string()),
            ..Default::default()
        };
        let sent = producer.lock().await.send_non_blocking(message).await;
        sent.map_err(|e| {
            self.evict(topic);
            send_error(topic, e)
        })
    }

    /// Waits for a receipt.
    pub(crate) async fn confirmed(&self, topic: &str, receipt: SendFuture) -> Result<(), TransportError> {
        match receipt.await {
            Ok(receipt) => {
                tracing::trace!(topic, sequence = receipt.sequence_id, "published");
                Ok(())
            }
            Err(e) => {
                self.evict(topic);
                Err(send_error(topic, e))
            }
        }
    }
}
