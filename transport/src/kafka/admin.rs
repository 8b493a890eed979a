//! Topic creation, on first use and idempotently.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;

use super::LogContext;
use crate::{TransportError, locked};

/// Creates topics.
pub(crate) struct Admin {
    client: Arc<AdminClient<LogContext>>,
    replication: i32,
    created: Mutex<HashSet<String>>,
}

impl Admin {
    pub(crate) fn new(client: AdminClient<LogContext>, replication: i32) -> Self {
        Self {
            client: Arc::new(client),
            replication,
            created: Mutex::new(HashSet::new()),
        }
    }

    /// Creates `name` with `partitions` partitions unless it exists.
    pub(crate) async fn ensure_topic(&self, logical: &str, name: &str, partitions: i32) -> Result<(), TransportError> {
        if locked(&self.created).contains(name) {
            return Ok(());
        }
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(self.replication));
        let results = self
            .client
            .create_topics(
                &[topic],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .map_err(|e| TransportError::Broker {
                topic: logical.to_string(),
                reason: format!("cannot create topic {name}: {e}"),
            })?;
        for result in results {
            match result {
                Ok(_) => tracing::debug!(topic = name, partitions, "created a topic"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(TransportError::Broker {
                        topic: logical.to_string(),
                        reason: format!("cannot create topic {name}: {code}"),
                    });
                }
            }
        }
        self.wait_visible(name, partitions).await;
        locked(&self.created).insert(name.to_string());
        Ok(())
    }

    /// Waits until the broker's metadata shows the topic with a leader for every partition.
    /// Creation returns once the controller has the topic; a consumer that subscribes before the
    /// brokers' metadata caches have it would be assigned nothing of it until its next metadata
    /// refresh, and would not read it meanwhile.
    async fn wait_visible(&self, name: &str, partitions: i32) {
        const WITHIN: Duration = Duration::from_secs(10);
        let deadline = Instant::now() + WITHIN;
        loop {
            let client = self.client.clone();
            let topic = name.to_string();
            let visible = tokio::task::spawn_blocking(move || {
                client
                    .inner()
                    .fetch_metadata(Some(&topic), Duration::from_secs(2))
                    .map(|metadata| {
                        metadata.topics().iter().any(|t| {
                            t.name() == topic
                                && t.error().is_none()
                                && t.partitions().len() == partitions as usize
                                && t.partitions().iter().all(|p| p.leader() >= 0 && p.error().is_none())
                        })
                    })
                    .unwrap_or(false)
            })
            .await
            .unwrap_or(false);
            if visible {
                return;
            }
            if Instant::now() >= deadline {
                tracing::warn!(topic = name, within = ?WITHIN, "the topic is not in the broker's metadata yet; consumers may see it late");
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
