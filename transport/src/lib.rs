//! The message transport boundary.
//!
//! A [`Transport`] publishes bytes to named topics with a routing key and headers, and opens
//! subscriptions of three kinds ([`SubscriptionKind`]): keyed (per-key order, one consumer per
//! key at a time), shared (competing consumers) and exclusive (one consumer). Delivery is
//! at-least-once: a [`Delivery`] is acknowledged after its effects are durable; a nack or a
//! consumer that goes away redelivers it; after `max_redeliveries` it moves to the topic's
//! dead-letter topic with the reason in its headers.
//!
//! Backends live in one module each behind a cargo feature (`in-memory`, `pulsar`, `kafka`). The
//! [`conformance`] suite (feature `conformance`) is the contract every backend runs.
//! This crate knows the wire codec only through `shared-schemas`; it has no storage.

pub mod chaos;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod consume;
mod delivery;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod limit;
#[cfg(feature = "in-memory")]
pub mod memory;
pub mod metered;
#[cfg(feature = "pulsar")]
pub mod pulsar;
mod typed;

use std::sync::Arc;
#[cfg(any(feature = "pulsar", feature = "kafka"))]
use std::sync::Mutex;

pub use baton_shared_schemas::EncodedMessage;
pub use chaos::{Chaos, ChaosConfig, ChaosCounts};
pub use consume::{ConsumeLoop, Handler, Incoming, Source};
pub use delivery::{Acknowledger, Delivery, headers};
#[cfg(any(feature = "pulsar", feature = "kafka"))]
pub(crate) use delivery::{BrokerAcker, BrokerAcks, DelayedRedeliveries};
#[cfg(feature = "kafka")]
pub use kafka::{KafkaConfig, KafkaSecurity, KafkaTransport};
pub use limit::{DEFAULT_MAX_MESSAGE_BYTES, SizeLimit};
#[cfg(feature = "in-memory")]
pub use memory::{InMemoryTransport, MemoryConfig};
pub use metered::Metered;
#[cfg(feature = "pulsar")]
pub use pulsar::{PulsarConfig, PulsarPolicies, PulsarTransport};
pub use typed::{Publisher, decode_delivery, outgoing};

/// A transport operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The transport was closed.
    #[error("transport closed")]
    Closed,
    /// An exclusive subscription already has a consumer.
    #[error("subscription {subscription} on {topic} is exclusive and already has a consumer")]
    SubscriptionBusy {
        /// Topic.
        topic: String,
        /// Subscription name.
        subscription: String,
    },
    /// The same subscription name was opened with another kind.
    #[error("subscription {subscription} on {topic} exists with another kind")]
    KindMismatch {
        /// Topic.
        topic: String,
        /// Subscription name.
        subscription: String,
    },
    /// A message could not be encoded for publishing.
    #[error("cannot encode message for {topic}: {reason}")]
    Encode {
        /// Target topic.
        topic: String,
        /// Why.
        reason: String,
    },
    /// A message is larger than the transport's bound (`transport.max_message_bytes`).
    #[error(
        "a message of {bytes} bytes for {topic} is larger than the {limit} bytes transport.max_message_bytes allows"
    )]
    TooLarge {
        /// Target topic.
        topic: String,
        /// The message's size.
        bytes: usize,
        /// The bound.
        limit: usize,
    },
    /// A setting cannot work.
    #[error("invalid transport configuration: {0}")]
    Config(String),
    /// The broker rejected or failed an operation.
    #[error("broker error on {topic}: {reason}")]
    Broker {
        /// Topic involved.
        topic: String,
        /// What the broker said.
        reason: String,
    },
}

impl TransportError {
    /// Whether the same operation may succeed later (the broker was unreachable, timed out or
    /// failed), as opposed to a setting or a message that can never work.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Broker { .. })
    }
}

impl baton_runtime::Transient for TransportError {
    fn is_transient(&self) -> bool {
        TransportError::is_transient(self)
    }
}

#[cfg(any(feature = "pulsar", feature = "kafka"))]
pub(crate) use baton_runtime::locked;

/// The exclusive subscriptions consumed in this process, so that a second consumer of one is
/// refused at once (across processes, the broker refuses it, or only one process subscribes).
#[cfg(any(feature = "pulsar", feature = "kafka"))]
#[derive(Default)]
pub(crate) struct ExclusiveClaims(Arc<Mutex<std::collections::HashSet<(String, String)>>>);

/// An exclusive subscription held by one consumer; released when dropped.
#[cfg(any(feature = "pulsar", feature = "kafka"))]
pub(crate) struct ExclusiveClaim {
    claims: Arc<Mutex<std::collections::HashSet<(String, String)>>>,
    key: (String, String),
}

#[cfg(any(feature = "pulsar", feature = "kafka"))]
impl ExclusiveClaims {
    /// Claims `subscription` of `topic` if it is exclusive; `None` for other kinds.
    pub(crate) fn claim(
        &self,
        topic: &str,
        subscription: &str,
        kind: SubscriptionKind,
    ) -> Result<Option<ExclusiveClaim>> {
        if kind != SubscriptionKind::Exclusive {
            return Ok(None);
        }
        let key = (topic.to_string(), subscription.to_string());
        if !locked(&self.0).insert(key.clone()) {
            return Err(TransportError::SubscriptionBusy {
                topic: topic.into(),
                subscription: subscription.into(),
            });
        }
        Ok(Some(ExclusiveClaim {
            claims: self.0.clone(),
            key,
        }))
    }
}

#[cfg(any(feature = "pulsar", feature = "kafka"))]
impl Drop for ExclusiveClaim {
    fn drop(&mut self) {
        locked(&self.claims).remove(&self.key);
    }
}

/// Result alias for transport operations.
pub type Result<T, E = TransportError> = std::result::Result<T, E>;

/// How a subscription shares its messages among consumers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubscriptionKind {
    /// Same key → same consumer, in publish order.
    Keyed,
    /// Competing consumers, no ordering.
    Shared,
    /// A single consumer, of one process (a client's replies, a worker's control messages). It
    /// receives what is published while it is subscribed; a broker may keep nothing for it once
    /// it is gone (Pulsar: a non-durable subscription).
    Exclusive,
}

/// A message to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Routing key.
    pub key: String,
    /// Encoded envelope.
    pub payload: Vec<u8>,
    /// Transport headers (dead-letter reasons and the like).
    pub headers: Vec<(String, String)>,
}

impl OutgoingMessage {
    /// A message without headers.
    pub fn new(key: impl Into<String>, payload: Vec<u8>) -> Self {
        Self {
            key: key.into(),
            payload,
            headers: Vec::new(),
        }
    }
}

/// A broker connection.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Publishes one message; returns once the broker has it.
    async fn publish(&self, topic: &str, message: OutgoingMessage) -> Result<()>;

    /// Publishes several messages, in order per topic and key.
    async fn publish_all(&self, messages: Vec<(String, OutgoingMessage)>) -> Result<()> {
        for (topic, message) in messages {
            self.publish(&topic, message).await?;
        }
        Ok(())
    }

    /// Opens a consumer on `subscription` of `topic`. Creating the subscription makes it
    /// receive every message published to the topic from then on, and its first consumer also
    /// receives what was published before any subscription existed.
    async fn subscribe(&self, topic: &str, subscription: &str, kind: SubscriptionKind)
    -> Result<Box<dyn Subscription>>;

    /// How many consumers were opened and how many still wait for their first share of the
    /// subscription's partitions; readiness probes report ready once none waits.
    fn subscription_status(&self) -> SubscriptionStatus {
        SubscriptionStatus::default()
    }

    /// Whether the broker answers now: one cheap round trip, bounded by `timeout`, for
    /// readiness probes. The error says why not.
    async fn check(&self, timeout: std::time::Duration) -> Result<()> {
        let _ = timeout;
        Ok(())
    }
}

/// Consumers of a transport, for readiness probes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscriptionStatus {
    /// Consumers opened so far.
    pub opened: usize,
    /// Consumers still waiting for their first partition assignment.
    pub waiting: usize,
}

/// One consumer of a subscription. Dropping it hands its unacknowledged messages to others.
#[async_trait::async_trait]
pub trait Subscription: Send {
    /// Waits for the next message. Cancel-safe: a call dropped before it returns loses
    /// nothing (consume loops select it against shutdown and poll it for ready batches).
    async fn next(&mut self) -> Result<Delivery>;
}

/// Opens a consumer of `subscription` on each topic, all at once: joining a broker's consumer
/// group can take seconds each.
pub async fn subscribe_all<M>(
    transport: &dyn Transport,
    topics: &[baton_shared_schemas::Topic<M>],
    subscription: &str,
    kind: SubscriptionKind,
) -> Result<Vec<Box<dyn Subscription>>> {
    futures::future::try_join_all(
        topics
            .iter()
            .map(|topic| transport.subscribe(topic.name(), subscription, kind)),
    )
    .await
}

/// Shared handle to a transport.
pub type SharedTransport = Arc<dyn Transport>;
