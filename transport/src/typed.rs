//! Typed publishing and decoding over the byte-level transport.

use std::sync::Arc;

use baton_shared_schemas::{EncodedMessage, Envelope, MessageId, Timestamp, Topic, TopicMessage, codec};

use crate::{Delivery, OutgoingMessage, Result, Transport, TransportError};

/// The transport's (topic, message) pair for an encoded message.
pub fn outgoing(message: EncodedMessage) -> (String, OutgoingMessage) {
    (message.topic, OutgoingMessage::new(message.key, message.bytes))
}

/// Starts a trace at a message nothing caused (a client's request), as a child of the
/// caller's current OpenTelemetry context. Nothing when tracing is off.
fn start_trace<M>(topic: &str, envelope: &mut Envelope<M>) -> Option<baton_telemetry::trace::MessageSpan> {
    let span = baton_telemetry::trace::producer_span(
        format!("publish {}", crate::metered::topic_label(topic)),
        vec![
            opentelemetry::KeyValue::new("messaging.destination.name", topic.to_string()),
            opentelemetry::KeyValue::new("messaging.message.id", envelope.message_id.to_string()),
        ],
    )?;
    envelope.trace.traceparent = Some(span.traceparent());
    Some(span)
}

fn encode<M: TopicMessage>(topic: &Topic<M>, envelope: &Envelope<M>) -> Result<EncodedMessage> {
    EncodedMessage::encode(topic, envelope).map_err(|e| TransportError::Encode {
        topic: topic.name().to_string(),
        reason: e.to_string(),
    })
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
        let mut envelope = Envelope::new(body, now);
        let span = start_trace(topic.name(), &mut envelope);
        let (topic, message) = outgoing(encode(topic, &envelope)?);
        let published = self.transport.publish(&topic, message).await;
        drop(span);
        published
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
        let mut envelope = Envelope {
            message_id,
            ..Envelope::new(body, now)
        };
        let span = start_trace(topic.name(), &mut envelope);
        let (topic, message) = outgoing(encode(topic, &envelope)?);
        let published = self.transport.publish(&topic, message).await;
        drop(span);
        published
    }

    /// Publishes already-encoded messages in order.
    pub async fn publish_encoded(&self, messages: Vec<EncodedMessage>) -> Result<()> {
        match messages.len() {
            0 => Ok(()),
            1 => {
                let (topic, message) = messages
                    .into_iter()
                    .next()
                    .map(outgoing)
                    .ok_or(TransportError::Closed)?;
                self.transport.publish(&topic, message).await
            }
            _ => {
                self.transport
                    .publish_all(messages.into_iter().map(outgoing).collect())
                    .await
            }
        }
    }
}

/// Decodes a delivery's envelope as topic message `M`.
pub fn decode_delivery<M: TopicMessage>(delivery: &Delivery) -> std::result::Result<Envelope<M>, codec::CodecError> {
    baton_shared_schemas::decode_envelope(&delivery.payload)
}
