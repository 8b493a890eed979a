//! The producer: one per transport, messages partitioned by key (librdkafka's default
//! partitioner), batched for `linger`. A send enqueues and returns the delivery future, so a
//! batch of publishes is one round trip.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use super::LogContext;
use crate::TransportError;

/// How long librdkafka keeps trying to deliver a message before the send fails.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends records.
pub(crate) struct Producer {
    pub(crate) inner: FutureProducer<LogContext>,
}

impl Producer {
    /// Enqueues a record (waiting while librdkafka's queue is full); the returned future resolves
    /// once the broker has it.
    pub(crate) async fn enqueue(
        &self,
        logical: &str,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: &[(String, String)],
    ) -> Result<DeliveryFuture, TransportError> {
        let mut owned = OwnedHeaders::new();
        for (k, v) in headers {
            owned = owned.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let mut record = FutureRecord::to(topic).key(key).payload(payload).headers(owned);
        loop {
            match self.inner.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => {
                    return Err(TransportError::Broker {
                        topic: logical.to_string(),
                        reason: e.to_string(),
                    });
                }
            }
        }
    }

    /// Waits for a record's delivery.
    pub(crate) async fn confirmed(logical: &str, delivery: DeliveryFuture) -> Result<(), TransportError> {
        let broker = |reason: String| TransportError::Broker {
            topic: logical.to_string(),
            reason,
        };
        match tokio::time::timeout(DELIVERY_TIMEOUT + Duration::from_secs(5), delivery).await {
            Ok(Ok(Ok(delivered))) => {
                tracing::trace!(
                    topic = logical,
                    partition = delivered.partition,
                    offset = delivered.offset,
                    "published"
                );
                Ok(())
            }
            Ok(Ok(Err((e, _)))) => Err(broker(e.to_string())),
            Ok(Err(_)) => Err(broker("the producer went away".into())),
            Err(_) => Err(broker("no delivery report".into())),
        }
    }

    /// The librdkafka setting for the delivery timeout.
    pub(crate) fn delivery_timeout_ms() -> String {
        DELIVERY_TIMEOUT.as_millis().to_string()
    }
}
