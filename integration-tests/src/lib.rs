//! End-to-end tests of Baton live in `tests/`; this library holds the fault-injection helpers
//! they share.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use baton::components::transport::{OutgoingMessage, Result, Subscription, SubscriptionKind, Transport};

/// A transport that publishes every message twice, as a broker may after a producer retry or a
/// consumer crash. Everything Baton does must come out the same.
pub struct DuplicatingTransport {
    inner: Arc<dyn Transport>,
    duplicated: AtomicU64,
}

impl DuplicatingTransport {
    /// Wraps a transport.
    pub fn new(inner: Arc<dyn Transport>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            duplicated: AtomicU64::new(0),
        })
    }

    /// Messages published twice so far.
    pub fn duplicated(&self) -> u64 {
        self.duplicated.load(Ordering::Relaxed)
    }
}

#[async_trait::async_trait]
impl Transport for DuplicatingTransport {
    async fn publish(&self, topic: &str, message: OutgoingMessage) -> Result<()> {
        // Client reply topics are left alone: a client is an end, not a workflow component.
        if !topic.starts_with("client:") {
            self.inner.publish(topic, message.clone()).await?;
            self.duplicated.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.publish(topic, message).await
    }

    async fn subscribe(
        &self,
        topic: &str,
        subscription: &str,
        kind: SubscriptionKind,
    ) -> Result<Box<dyn Subscription>> {
        self.inner.subscribe(topic, subscription, kind).await
    }

    fn subscription_status(&self) -> baton::components::transport::SubscriptionStatus {
        self.inner.subscription_status()
    }
}
