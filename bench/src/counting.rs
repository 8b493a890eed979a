//! Counts the messages the components publish, by topic kind (`workflow-engine`,
//! `service-task`, …), so a run can report how many broker messages one workflow costs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use baton::components::transport::{OutgoingMessage, Subscription, SubscriptionKind, SubscriptionStatus, Transport};

type TransportResult<T> = Result<T, baton::components::transport::TransportError>;

/// Published messages so far, by topic kind.
#[derive(Clone, Default)]
pub struct MessageCounts(Arc<Mutex<BTreeMap<String, u64>>>);

impl MessageCounts {
    /// A copy of the counts now.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn add(&self, topic: &str, n: u64) {
        *self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(kind_of(topic).to_string())
            .or_default() += n;
    }

    /// Messages per workflow between two snapshots, by kind and in `total`.
    pub fn per_workflow(
        before: &BTreeMap<String, u64>,
        after: &BTreeMap<String, u64>,
        workflows: usize,
    ) -> BTreeMap<String, f64> {
        let workflows = workflows.max(1) as f64;
        let mut per = BTreeMap::new();
        let mut total = 0;
        for (kind, n) in after {
            let delta = n - before.get(kind).copied().unwrap_or(0);
            total += delta;
            per.insert(kind.clone(), delta as f64 / workflows);
        }
        per.insert("total".to_string(), total as f64 / workflows);
        per
    }
}

/// The kind of a topic: its name up to the first `:`.
fn kind_of(topic: &str) -> &str {
    topic.split(':').next().unwrap_or(topic)
}

/// A transport that counts what is published through it.
pub struct CountingTransport {
    inner: Arc<dyn Transport>,
    counts: MessageCounts,
}

impl CountingTransport {
    /// Counts into `counts` what goes through `inner`.
    pub fn wrap(inner: Arc<dyn Transport>, counts: MessageCounts) -> Arc<dyn Transport> {
        Arc::new(Self { inner, counts })
    }
}

#[async_trait::async_trait]
impl Transport for CountingTransport {
    async fn publish(&self, topic: &str, message: OutgoingMessage) -> TransportResult<()> {
        self.counts.add(topic, 1);
        self.inner.publish(topic, message).await
    }

    async fn publish_all(&self, messages: Vec<(String, OutgoingMessage)>) -> TransportResult<()> {
        for (topic, _) in &messages {
            self.counts.add(topic, 1);
        }
        self.inner.publish_all(messages).await
    }

    async fn subscribe(
        &self,
        topic: &str,
        subscription: &str,
        kind: SubscriptionKind,
    ) -> TransportResult<Box<dyn Subscription>> {
        self.inner.subscribe(topic, subscription, kind).await
    }

    fn subscription_status(&self) -> SubscriptionStatus {
        self.inner.subscription_status()
    }

    async fn check(&self, timeout: std::time::Duration) -> TransportResult<()> {
        self.inner.check(timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_per_topic_kind_and_per_workflow() {
        let counts = MessageCounts::default();
        let before = counts.snapshot();
        counts.add("workflow-engine:booking", 3);
        counts.add("service-task:payment.process", 2);
        counts.add("service-task:hotel.book", 2);
        counts.add("timers", 1);
        let per = MessageCounts::per_workflow(&before, &counts.snapshot(), 2);
        assert_eq!(per["workflow-engine"], 1.5);
        assert_eq!(per["service-task"], 2.0);
        assert_eq!(per["timers"], 0.5);
        assert_eq!(per["total"], 4.0);
    }
}
