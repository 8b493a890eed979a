//! A received message and its acknowledgement.

use std::sync::Arc;

/// Header names set by transports.
pub mod headers {
    /// Why a message was dead-lettered.
    pub const DEAD_LETTER_REASON: &str = "baton-dead-letter-reason";
    /// The topic a dead-lettered message came from.
    pub const ORIGINAL_TOPIC: &str = "baton-original-topic";
    /// How often it had been redelivered.
    pub const REDELIVERIES: &str = "baton-redeliveries";
}

/// Settles deliveries for one backend.
#[async_trait::async_trait]
pub trait Acknowledger: Send + Sync {
    /// The message was processed.
    async fn ack(&self, tag: u64);
    /// Processing failed; redeliver (or dead-letter once redeliveries are exhausted).
    async fn nack(&self, tag: u64, reason: &str);
    /// The message can never be processed: move it to the dead-letter topic now.
    async fn dead_letter(&self, tag: u64, reason: &str);
}

/// One received message. Settle it with [`ack`](Self::ack), [`nack`](Self::nack) or
/// [`dead_letter`](Self::dead_letter); one that is dropped unsettled stays in flight until its
/// consumer goes away, then is redelivered.
pub struct Delivery {
    /// Topic it came from.
    pub topic: String,
    /// Routing key.
    pub key: String,
    /// Encoded envelope.
    pub payload: Arc<[u8]>,
    /// Transport headers.
    pub headers: Arc<Vec<(String, String)>>,
    /// How often it was delivered before (0 on first delivery).
    pub redeliveries: u32,
    tag: u64,
    acker: Arc<dyn Acknowledger>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("topic", &self.topic)
            .field("key", &self.key)
            .field("bytes", &self.payload.len())
            .field("redeliveries", &self.redeliveries)
            .finish()
    }
}

impl Delivery {
    /// Builds a delivery (for backends).
    pub fn new(
        topic: String,
        key: String,
        payload: Arc<[u8]>,
        headers: Arc<Vec<(String, String)>>,
        redeliveries: u32,
        tag: u64,
        acker: Arc<dyn Acknowledger>,
    ) -> Self {
        Self {
            topic,
            key,
            payload,
            headers,
            redeliveries,
            tag,
            acker,
        }
    }

    /// The value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Acknowledges the message.
    pub async fn ack(self) {
        self.acker.ack(self.tag).await;
    }

    /// Asks for redelivery.
    pub async fn nack(self, reason: &str) {
        self.acker.nack(self.tag, reason).await;
    }

    /// Moves the message to the dead-letter topic.
    pub async fn dead_letter(self, reason: &str) {
        self.acker.dead_letter(self.tag, reason).await;
    }
}
