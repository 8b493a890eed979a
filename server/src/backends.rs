//! Chooses transport and storage backends from their URLs, never in code.

use std::sync::Arc;
use std::time::Duration;

use baton_storage::{InMemoryStore, RedisStore, Stores};
use baton_transport::{InMemoryTransport, KafkaConfig, KafkaTransport, MemoryConfig, Transport};

use crate::config::{StorageSection, TransportSection};

/// A backend could not be reached or configured.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The broker client could not be created.
    #[error("transport {url}: {source}")]
    Transport {
        /// The configured URL.
        url: String,
        /// Why.
        #[source]
        source: baton_transport::TransportError,
    },
    /// The store could not be reached.
    #[error("storage {url}: {source}")]
    Storage {
        /// The configured URL.
        url: String,
        /// Why.
        #[source]
        source: baton_storage::StorageError,
    },
    /// The URL names no known backend.
    #[error("{0}")]
    Unsupported(String),
}

/// Connects the transport named by `transport.url`.
pub fn connect_transport(section: &TransportSection) -> Result<Arc<dyn Transport>, BackendError> {
    let (scheme, rest) = section.url.split_once("://").unwrap_or(("", ""));
    match scheme {
        "kafka" => {
            let config = KafkaConfig {
                bootstrap_servers: rest.trim_end_matches('/').to_string(),
                namespace: section.namespace.clone(),
                partitions: section.partitions,
                max_redeliveries: section.max_redeliveries,
                nack_delay: Duration::from_millis(200),
                fetch_wait: Duration::from_millis(section.fetch_wait_ms),
                linger: Duration::from_millis(section.linger_ms),
                batch_messages: section.batch_messages,
                heartbeat: Duration::from_millis(section.heartbeat_ms),
                session_timeout: Duration::from_millis(section.session_timeout_ms),
                ..KafkaConfig::default()
            };
            let transport = KafkaTransport::connect(config).map_err(|source| BackendError::Transport {
                url: section.url.clone(),
                source,
            })?;
            Ok(Arc::new(transport))
        }
        "memory" => Ok(Arc::new(InMemoryTransport::new(MemoryConfig {
            max_redeliveries: section.max_redeliveries,
            ..MemoryConfig::default()
        }))),
        other => Err(BackendError::Unsupported(format!(
            "unknown transport scheme `{other}` in {}",
            section.url
        ))),
    }
}

/// Connects the stores named by `storage.url`.
pub async fn connect_stores(section: &StorageSection) -> Result<Stores, BackendError> {
    let (scheme, _) = section.url.split_once("://").unwrap_or(("", ""));
    match scheme {
        "redis" => {
            let store = RedisStore::connect(&section.url, &section.prefix)
                .await
                .map_err(|source| BackendError::Storage {
                    url: section.url.clone(),
                    source,
                })?;
            Ok(Stores::all(store))
        }
        "memory" => Ok(Stores::all(InMemoryStore::new())),
        other => Err(BackendError::Unsupported(format!(
            "unknown storage scheme `{other}` in {}",
            section.url
        ))),
    }
}
