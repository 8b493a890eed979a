//! Topic creation, on first use and idempotently.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;

use super::LogContext;
use crate::{TransportError, locked};

/// Creates topics.
pub(crate) struct Admin {
    client: AdminClient<LogContext>,
    replication: i32,
    created: Mutex<HashSet<String>>,
}

impl Admin {
    pub(crate) fn new(client: AdminClient<LogContext>, replication: i32) -> Self {
        Self {
            client,
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
        locked(&self.created).insert(name.to_string());
        Ok(())
    }
}
