//! A bound on message size, over any transport: a publish of a larger message fails with
//! [`TransportError::TooLarge`] (it could never be consumed), and a larger delivery, which
//! another producer sent, is dead-lettered with its size as the reason before any component
//! reads it, so one oversized message cannot make a component allocate without bound.
//! Dead-letter topics (`dlq:…`) are read unbounded: they hold what a broker already accepted,
//! and an operator reading one must see the oversized letter itself.

use std::sync::Arc;

use baton_telemetry::names;

use crate::{
    Delivery, OutgoingMessage, Result, Subscription, SubscriptionKind, SubscriptionStatus, Transport, TransportError,
};

/// The default bound: 4 MiB, under Apache Pulsar's default of 5 MB. (Apache Kafka's brokers
/// refuse messages over 1 MB by default, before this bound is reached.)
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// A transport whose messages are at most `max_bytes` long.
pub struct SizeLimit {
    inner: Arc<dyn Transport>,
    max_bytes: usize,
}

impl SizeLimit {
    /// Bounds the messages of `inner` to `max_bytes`.
    pub fn wrap(inner: Arc<dyn Transport>, max_bytes: usize) -> Arc<dyn Transport> {
        Arc::new(Self { inner, max_bytes })
    }

    fn check(&self, topic: &str, message: &OutgoingMessage) -> Result<()> {
        if message.payload.len() > self.max_bytes {
            return Err(TransportError::TooLarge {
                topic: topic.to_string(),
                bytes: message.payload.len(),
                limit: self.max_bytes,
            });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Transport for SizeLimit {
    async fn publish(&self, topic: &str, message: OutgoingMessage) -> Result<()> {
        self.check(topic, &message)?;
        self.inner.publish(topic, message).await
    }

    async fn publish_all(&self, messages: Vec<(String, OutgoingMessage)>) -> Result<()> {
        // All or nothing: one message too large publishes none of the batch.
        for (topic, message) in &messages {
            self.check(topic, message)?;
        }
        self.inner.publish_all(messages).await
    }

    async fn subscribe(
        &self,
        topic: &str,
        subscription: &str,
        kind: SubscriptionKind,
    ) -> Result<Box<dyn Subscription>> {
        let inner = self.inner.subscribe(topic, subscription, kind).await?;
        if topic.starts_with(baton_shared_schemas::topics::DEAD_LETTER_PREFIX) {
            return Ok(inner);
        }
        Ok(Box::new(LimitedSubscription {
            inner,
            max_bytes: self.max_bytes,
        }))
    }

    fn subscription_status(&self) -> SubscriptionStatus {
        self.inner.subscription_status()
    }

    async fn check(&self, timeout: std::time::Duration) -> Result<()> {
        self.inner.check(timeout).await
    }
}

struct LimitedSubscription {
    inner: Box<dyn Subscription>,
    max_bytes: usize,
}

impl LimitedSubscription {
    /// Moves an oversized delivery to its dead-letter topic. The move runs in a task of its
    /// own, so it finishes even if the caller stops waiting (`next` stays cancel-safe).
    fn dead_letter(&self, delivery: Delivery) {
        let reason = format!(
            "oversized message: {} bytes, more than the {} bytes transport.max_message_bytes allows",
            delivery.payload.len(),
            self.max_bytes
        );
        tracing::warn!(topic = %delivery.topic, key = %delivery.key, %reason, "dead-lettering");
        metrics::counter!(
            names::DEAD_LETTERED,
            "topic" => crate::metered::topic_label(&delivery.topic),
            "why" => "oversized"
        )
        .increment(1);
        tokio::spawn(async move { delivery.dead_letter(&reason).await });
    }
}

#[async_trait::async_trait]
impl Subscription for LimitedSubscription {
    async fn next(&mut self) -> Result<Delivery> {
        loop {
            let delivery = self.inner.next().await?;
            if delivery.payload.len() <= self.max_bytes {
                return Ok(delivery);
            }
            self.dead_letter(delivery);
        }
    }
}

#[cfg(all(test, feature = "in-memory"))]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{InMemoryTransport, MemoryConfig, headers};

    #[tokio::test]
    async fn a_larger_delivery_is_dead_lettered_with_its_size_and_the_next_one_arrives() {
        let memory: Arc<dyn Transport> = Arc::new(InMemoryTransport::new(MemoryConfig::default()));
        let limited = SizeLimit::wrap(memory.clone(), 16);
        let mut subscription = limited
            .subscribe("t", "s", SubscriptionKind::Shared)
            .await
            .expect("subscribe");
        // Read through the bound: a dead-letter topic is read unbounded.
        let mut dead = limited
            .subscribe("dlq:t", "ops", SubscriptionKind::Shared)
            .await
            .expect("dlq");
        // Another producer, without the bound, sends one message too many bytes long.
        memory
            .publish("t", OutgoingMessage::new("k", vec![0; 17]))
            .await
            .expect("publish");
        memory
            .publish("t", OutgoingMessage::new("k", vec![1; 16]))
            .await
            .expect("publish");
        let next = subscription.next().await.expect("delivery");
        assert_eq!(next.payload.len(), 16);
        next.ack().await;
        let letter = tokio::time::timeout(Duration::from_secs(5), dead.next())
            .await
            .expect("dead-lettered in time")
            .expect("letter");
        assert_eq!(letter.payload.len(), 17);
        let reason = letter.header(headers::DEAD_LETTER_REASON).unwrap_or_default();
        assert!(reason.contains("oversized message: 17 bytes"), "{reason}");
        assert!(reason.contains("transport.max_message_bytes"), "{reason}");
    }

    #[tokio::test]
    async fn a_larger_publish_fails_and_a_batch_with_one_publishes_nothing() {
        let memory = Arc::new(InMemoryTransport::new(MemoryConfig::default()));
        let limited = SizeLimit::wrap(memory.clone(), 16);
        let _subscription = limited
            .subscribe("t", "s", SubscriptionKind::Shared)
            .await
            .expect("subscribe");
        let error = limited
            .publish("t", OutgoingMessage::new("k", vec![0; 17]))
            .await
            .expect_err("too large");
        assert!(
            matches!(
                error,
                TransportError::TooLarge {
                    bytes: 17,
                    limit: 16,
                    ..
                }
            ),
            "{error}"
        );
        assert!(!error.is_transient());
        let batch = vec![
            ("t".to_string(), OutgoingMessage::new("k", vec![0; 4])),
            ("t".to_string(), OutgoingMessage::new("k", vec![0; 32])),
        ];
        limited.publish_all(batch).await.expect_err("too large");
        assert_eq!(memory.backlog("t", "s"), 0);
        limited
            .publish("t", OutgoingMessage::new("k", vec![0; 16]))
            .await
            .expect("a message of the bound itself is fine");
        assert_eq!(memory.backlog("t", "s"), 1);
    }
}
