//! Counting what is published, per topic, for `/metrics`: a layer over any transport.

use std::sync::Arc;

use baton_telemetry::names;

use crate::{OutgoingMessage, Result, Subscription, SubscriptionKind, SubscriptionStatus, Transport};

/// The `topic` label of a topic. Client topics (`client:{id}`, one per client process) share
/// one label, so the label set stays bounded however many clients come and go.
pub fn topic_label(topic: &str) -> String {
    if topic.starts_with("client:") {
        "client:*".to_string()
    } else if topic.starts_with("dlq:client:") {
        "dlq:client:*".to_string()
    } else {
        topic.to_string()
    }
}

/// A transport that counts the messages published through it
/// (`baton_messages_published_total{topic}`).
pub struct Metered {
    inner: Arc<dyn Transport>,
}

impl Metered {
    /// Counts what is published through `inner`.
    pub fn wrap(inner: Arc<dyn Transport>) -> Arc<dyn Transport> {
        Arc::new(Self { inner })
    }
}

#[async_trait::async_trait]
impl Transport for Metered {
    async fn publish(&self, topic: &str, message: OutgoingMessage) -> Result<()> {
        self.inner.publish(topic, message).await?;
        metrics::counter!(names::PUBLISHED, "topic" => topic_label(topic)).increment(1);
        Ok(())
    }

    async fn publish_all(&self, messages: Vec<(String, OutgoingMessage)>) -> Result<()> {
        let labels: Vec<String> = messages.iter().map(|(topic, _)| topic_label(topic)).collect();
        self.inner.publish_all(messages).await?;
        for label in labels {
            metrics::counter!(names::PUBLISHED, "topic" => label).increment(1);
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        topic: &str,
        subscription: &str,
        kind: SubscriptionKind,
    ) -> Result<Box<dyn Subscription>> {
        self.inner.subscribe(topic, subscription, kind).await
    }

    fn subscription_status(&self) -> SubscriptionStatus {
        self.inner.subscription_status()
    }

    async fn check(&self, timeout: std::time::Duration) -> Result<()> {
        self.inner.check(timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::topic_label;

    #[test]
    fn client_topics_share_one_label() {
        assert_eq!(topic_label("client:0190-abc"), "client:*");
        assert_eq!(topic_label("dlq:client:0190-abc"), "dlq:client:*");
        assert_eq!(topic_label("workflow-cmd:Booking"), "workflow-cmd:Booking");
    }
}
