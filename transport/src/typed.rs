//! Typed publishing and decoding over the byte-level transport.

use std::sync::Arc;

use baton_shared_schemas::{Envelope, MessageId, Timestamp, Topic, TopicMessage, codec};

use crate::{Delivery, OutgoingMessage, Result, Transport, TransportError};

/// A message encoded for a topic, ready to publish (or to keep in an outbox).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedMessage {
    /// Target topic.
    pub topic: String,
    /// Routing key (derived from the body).
    pub key: String,
    /// Encoded envelope.
    pub bytes: Vec<u8>,
}

impl EncodedMessage {
    /// Wraps `body` in an envelope and encodes it for `topic`.
    pub fn encode<M: TopicMessage>(topic: &Topic<M>, body: M, now: Timestamp) -> Result<Self> {
        Self::encode_envelope(topic, Envelope::new(body, now))
    }

    /// Encodes an envelope built by the caller (one with a derived message id).
    pub fn encode_envelope<M: TopicMessage>(topic: &Topic<M>, envelope: Envelope<M>) -> Result<Self> {
        let key = envelope.body.routing_key();
        let bytes = codec::encode(&envelope).map_err(|e| TransportError::Encode {
            topic: topic.name().to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            topic: topic.name().to_string(),
            key,
            bytes,
        })
    }

    /// Converts into the transport's (topic, message) pair.
    pub fn into_outgoing(self) -> (String, OutgoingMessage) {
        (self.topic, OutgoingMessage::new(self.key, self.bytes))
    }
}

/// Publishes typed messages.
#[derive(Clone)]
pub struct Publisher {
    transport: Arc<dyn Transport>,
}

impl Publisher {
    /// A publisher over a transport.
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        Self { transport }
    }

    /// The underlying transport.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// Encodes and publishes one message.
    pub async fn publish<M: TopicMessage>(&self, topic: &Topic<M>, body: M, now: Timestamp) -> Result<()> {
        let (topic, message) = EncodedMessage::encode(topic, body, now)?.into_outgoing();
        self.transport.publish(&topic, message).await
    }

    /// Encodes and publishes one message under a given message id (derived by the caller, so
    /// a redelivered input republishes byte-identical output).
    pub async fn publish_as<M: TopicMessage>(
        &self,
        topic: &Topic<M>,
        body: M,
        now: Timestamp,
        message_id: MessageId,
    ) -> Result<()> {
        let envelope = Envelope {
            message_id,
            ..Envelope::new(body, now)
        };
        let (topic, message) = EncodedMessage::encode_envelope(topic, envelope)?.into_outgoing();
        self.transport.publish(&topic, message).await
    }

    /// Publishes already-encoded messages in order.
    pub async fn publish_encoded(&self, messages: Vec<EncodedMessage>) -> Result<()> {
        match messages.len() {
            0 => Ok(()),
            1 => {
                let (topic, message) = messages
                    .into_iter()
                    .next()
                    .map(EncodedMessage::into_outgoing)
                    .ok_or(TransportError::Closed)?;
                self.transport.publish(&topic, message).await
            }
            _ => {
                self.transport
                    .publish_all(messages.into_iter().map(EncodedMessage::into_outgoing).collect())
                    .await
            }
        }
    }
}

/// Decodes a delivery's envelope as topic message `M`.
pub fn decode_delivery<M: TopicMessage>(delivery: &Delivery) -> std::result::Result<Envelope<M>, codec::CodecError> {
    codec::decode(&delivery.payload)
}
