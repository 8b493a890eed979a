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
    /// Where a dead-lettered message was in the broker when it was dead-lettered (its topic
    /// or partition and its offset, or ledger and entry): two dead letters with the same
    /// bytes from different messages differ in it, and one delivered twice does not.
    pub const ORIGINAL_POSITION: &str = "baton-original-position";
    /// When the timer service fired a message a timer held, in milliseconds since the epoch by
    /// its clock: the receiver compares it with its own to hold a message fired early until
    /// its due time, making up for the timer service's lead exactly.
    pub const TIMER_FIRED_AT: &str = "baton-timer-fired-at";
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

/// What to do with a message whose processing failed (a nack), decided from how often it was
/// redelivered before: the same rule for every broker backend.
#[cfg(any(feature = "pulsar", feature = "kafka"))]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Redelivery {
    /// Deliver it again after `delay`, as redelivery number `count`.
    Retry { count: u32, delay: std::time::Duration },
    /// Its redeliveries are exhausted: dead-letter it with this reason.
    DeadLetter(String),
}

#[cfg(any(feature = "pulsar", feature = "kafka"))]
impl Redelivery {
    /// The decision for a message redelivered `so_far` times that failed with `reason`.
    pub(crate) fn decide(so_far: u32, max: u32, nack_delay: std::time::Duration, reason: &str) -> Self {
        let count = so_far + 1;
        if count > max {
            return Self::DeadLetter(format!("redelivered {so_far} times; last failure: {reason}"));
        }
        let delay = nack_delay.saturating_mul(count).min(std::time::Duration::from_secs(60));
        Self::Retry { count, delay }
    }
}

/// What a broker backend provides so that one rule settles its deliveries ([`BrokerAcker`]).
#[cfg(any(feature = "pulsar", feature = "kafka"))]
#[async_trait::async_trait]
pub(crate) trait BrokerAcks: Send + Sync + 'static {
    /// A delivered message not settled yet.
    type InFlight: Send + 'static;
    /// Takes the unsettled message of a delivery tag (`None` if settled already).
    fn take(&self, tag: u64) -> Option<Self::InFlight>;
    /// Acknowledges it at the broker.
    fn ack(&self, message: &Self::InFlight);
    /// How often it was redelivered before.
    fn redeliveries(&self, message: &Self::InFlight) -> u32;
    /// `max_redeliveries` and `nack_delay` of the backend's settings.
    fn limits(&self) -> (u32, std::time::Duration);
    /// The consumer's nacked messages waiting for their backoff.
    fn delayed(&self) -> &DelayedRedeliveries;
    /// Moves it to the subscription's retry topic as redelivery number `count`.
    async fn redeliver(&self, message: Self::InFlight, count: u32);
    /// Moves it to the dead-letter topic with `reason`.
    async fn dead_letter_now(&self, message: Self::InFlight, reason: String);
}

/// The [`Acknowledger`] of every broker backend: acks at the broker; a nack waits its backoff
/// and moves the message to the retry topic, or dead-letters it once its redeliveries are
/// spent; poison is dead-lettered at once.
#[cfg(any(feature = "pulsar", feature = "kafka"))]
pub(crate) struct BrokerAcker<S>(pub Arc<S>);

#[cfg(any(feature = "pulsar", feature = "kafka"))]
#[async_trait::async_trait]
impl<S: BrokerAcks> Acknowledger for BrokerAcker<S> {
    async fn ack(&self, tag: u64) {
        if let Some(message) = self.0.take(tag) {
            self.0.ack(&message);
        }
    }

    async fn nack(&self, tag: u64, reason: &str) {
        let Some(message) = self.0.take(tag) else {
            return;
        };
        let (max, nack_delay) = self.0.limits();
        match Redelivery::decide(self.0.redeliveries(&message), max, nack_delay, reason) {
            Redelivery::DeadLetter(reason) => self.0.dead_letter_now(message, reason).await,
            Redelivery::Retry { count, delay } => {
                let state = self.0.clone();
                // The original stays unsettled while it waits, so a crash now redelivers it.
                self.0
                    .delayed()
                    .after(delay, async move { state.redeliver(message, count).await });
            }
        }
    }

    async fn dead_letter(&self, tag: u64, reason: &str) {
        if let Some(message) = self.0.take(tag) {
            self.0.dead_letter_now(message, reason.to_string()).await;
        }
    }
}

/// The delayed redeliveries of one consumer. Each waits out its backoff and then moves its
/// message to the retry topic; all that still wait are dropped when the consumer goes away,
/// since the broker then hands their unsettled originals to the next consumer, and moving them
/// as well would deliver them twice.
#[cfg(any(feature = "pulsar", feature = "kafka"))]
#[derive(Clone, Debug, Default)]
pub(crate) struct DelayedRedeliveries(baton_runtime::CancellationToken);

#[cfg(any(feature = "pulsar", feature = "kafka"))]
impl DelayedRedeliveries {
    /// Runs `redeliver` after `delay`, unless the consumer goes away first.
    pub(crate) fn after(&self, delay: std::time::Duration, redeliver: impl Future<Output = ()> + Send + 'static) {
        let closed = self.0.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = closed.cancelled() => {}
                _ = tokio::time::sleep(delay) => redeliver.await,
            }
        });
    }

    /// The consumer went away: drops what still waits.
    pub(crate) fn close(&self) {
        self.0.cancel();
    }
}

#[cfg(all(test, any(feature = "pulsar", feature = "kafka")))]
mod tests {
    use std::time::Duration;

    use super::Redelivery;

    #[test]
    fn redeliveries_back_off_then_dead_letter() {
        let delay = Duration::from_millis(200);
        assert_eq!(
            Redelivery::decide(0, 3, delay, "x"),
            Redelivery::Retry { count: 1, delay }
        );
        assert_eq!(
            Redelivery::decide(2, 3, delay, "x"),
            Redelivery::Retry {
                count: 3,
                delay: Duration::from_millis(600)
            }
        );
        assert_eq!(
            Redelivery::decide(3, 3, delay, "boom"),
            Redelivery::DeadLetter("redelivered 3 times; last failure: boom".into())
        );
        assert_eq!(
            Redelivery::decide(1, 3, Duration::from_secs(100), "x"),
            Redelivery::Retry {
                count: 2,
                delay: Duration::from_secs(60)
            },
            "the delay is capped"
        );
    }
}
