//! The Kafka transport (via `rdkafka`), tested against a real Apache Kafka broker.
//!
//! - **Topics** are created on first use with `partitions` partitions. Logical names map to
//!   Kafka names by prefixing the namespace and replacing characters Kafka does not allow
//!   (`workflow-cmd:Booking` → `{namespace}workflow-cmd.Booking`).
//! - **Subscriptions** are consumer groups (`{namespace}{subscription}.{topic}`), and the broker's
//!   group protocol decides which consumer reads which partitions (cooperative-sticky
//!   assignment). Messages are partitioned by key, so a keyed subscription keeps per-key order
//!   and one consumer per key; a shared subscription lets one consumer process several messages
//!   of a partition at once.
//! - **Offsets** are committed only up to the lowest offset delivered but not yet settled (a
//!   contiguous watermark), so a consumer that goes away never loses a message; a revoked
//!   partition's watermark is committed before it moves.
//! - **Redelivery:** Kafka has no per-message negative acknowledgement. A nacked message is
//!   written to the subscription's retry topic (which the same group reads) with its redelivery
//!   count in a header, after the configured delay; past the limit it goes to the dead-letter
//!   topic with the reason.
//! - **Exclusive** subscriptions are exclusive within one process; across processes, a client
//!   reply topic is exclusive because only its client subscribes to it.
//!
//! Modules by role: `config`, `admin`, `producer`, `consumer`, `ack`.

mod ack;
mod admin;
mod config;
mod consumer;
mod producer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{Consumer, StreamConsumer};
use tokio::sync::{mpsc, oneshot, watch};

pub use config::{KafkaConfig, KafkaSecurity};

use crate::{OutgoingMessage, Result, Subscription, SubscriptionKind, Transport, TransportError};

/// librdkafka's own log lines, into `tracing` at debug: the transport reports what matters
/// itself, and a broker that is down would otherwise print a line per attempt.
pub(crate) fn log_line(level: RDKafkaLogLevel, facility: &str, message: &str, client: &str) {
    tracing::debug!(client, facility, level = ?level, "librdkafka: {message}");
}

/// The context of the producer and the admin client.
pub(crate) struct LogContext;

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_line(level, facility, message, "producer");
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "kafka client error");
    }
}

/// A connection to a Kafka cluster.
#[derive(Clone)]
pub struct KafkaTransport {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: KafkaConfig,
    producer: producer::Producer,
    admin: admin::Admin,
    exclusive: crate::ExclusiveClaims,
    pub opened: AtomicUsize,
    waiting: AtomicUsize,
}

impl Inner {
    /// The partitions a topic is created with.
    fn partitions_of(&self, logical: &str) -> i32 {
        if logical.starts_with("client:") || logical.starts_with("dlq:") {
            1
        } else {
            self.config.partitions
        }
    }

    /// The Kafka name of a logical topic, created if missing.
    pub(crate) async fn ensure(&self, logical: &str) -> Result<String> {
        let name = self.config.topic(logical);
        self.admin
            .ensure_topic(logical, &name, self.partitions_of(logical))
            .await?;
        Ok(name)
    }

    /// Writes a record to a topic that exists and waits for the broker to have it.
    pub(crate) async fn send(
        &self,
        logical: &str,
        topic: &str,
        key: &str,
        payload: &[u8],
        hdrs: &[(String, String)],
    ) -> Result<()> {
        let delivery = self.producer.enqueue(logical, topic, key, payload, hdrs).await?;
        producer::Producer::confirmed(logical, delivery).await
    }
}

impl KafkaTransport {
    /// Validates the configuration and creates the clients (lazily: the first operation reaches
    /// the broker).
    pub fn connect(config: KafkaConfig) -> Result<Self> {
        config.validate()?;
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.bootstrap_servers)
            .set("message.timeout.ms", producer::Producer::delivery_timeout_ms())
            .set("linger.ms", config.linger.as_millis().to_string())
            // Retries must not reorder one key's messages.
            .set("enable.idempotence", "true")
            .set(
                "reconnect.backoff.max.ms",
                config.max_reconnect_delay.as_millis().max(1).to_string(),
            )
            .set("log.connection.close", "false");
        config.security.apply(&mut client);
        let producer = client
            .create_with_context(LogContext)
            .map_err(|e| TransportError::Config(format!("Kafka producer: {e}")))?;
        let admin = client
            .create_with_context(LogContext)
            .map_err(|e| TransportError::Config(format!("Kafka admin client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                producer: producer::Producer { inner: producer },
                admin: admin::Admin::new(admin, config.replication_factor),
                config,
                exclusive: crate::ExclusiveClaims::default(),
                opened: AtomicUsize::new(0),
                waiting: AtomicUsize::new(0),
            }),
        })
    }

    /// The Kafka name of a logical topic.
    pub fn kafka_topic(&self, logical: &str) -> String {
        self.inner.config.topic(logical)
    }

    fn consumer(
        &self,
        group: &str,
        logical: &str,
        context: consumer::GroupContext,
    ) -> Result<StreamConsumer<consumer::GroupContext>> {
        let config = &self.inner.config;
        let session = config.session_timeout.as_millis();
        let mut client = ClientConfig::new();
        config.security.apply(&mut client);
        client
            .set("bootstrap.servers", &config.bootstrap_servers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", session.to_string())
            .set("heartbeat.interval.ms", (session / 4).max(100).to_string())
            .set("max.poll.interval.ms", config.max_poll_interval.as_millis().to_string())
            .set("fetch.wait.max.ms", config.fetch_wait.as_millis().max(1).to_string())
            // librdkafka's own read-ahead per consumer, on top of `prefetch` messages.
            .set("queued.max.messages.kbytes", "16384")
            // A backstop for topics that appear after the subscription (a retry topic another
            // process created): librdkafka's default looks again only every five minutes.
            .set("topic.metadata.refresh.interval.ms", "10000")
            .set(
                "reconnect.backoff.max.ms",
                config.max_reconnect_delay.as_millis().max(1).to_string(),
            )
            .set("log.connection.close", "false")
            .create_with_context(context)
            .map_err(|e| TransportError::Broker {
                topic: logical.to_string(),
                reason: format!("cannot create a consumer: {e}"),
            })
    }
}

/// Counts a consumer as waiting for its first assignment until dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn start(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How long a consumer whose first assignment is empty waits for a second one: under
/// cooperative assignment a joining consumer gets nothing in the first round, while the
/// partitions it will take are revoked from the others, and its share in the next.
const SECOND_ROUND: Duration = Duration::from_secs(3);

/// Waits until the group has given the consumer its share: a non-empty assignment, or an empty
/// one that stayed empty for [`SECOND_ROUND`] (more consumers than partitions), within `within`.
async fn wait_assigned(assigned: &mut watch::Receiver<(u64, usize)>, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut first_empty: Option<Instant> = None;
    loop {
        let (rounds, partitions) = *assigned.borrow_and_update();
        if rounds > 0 && partitions > 0 {
            return true;
        }
        if rounds > 0 {
            let since = *first_empty.get_or_insert_with(Instant::now);
            if since.elapsed() >= SECOND_ROUND {
                return true;
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let wake = match first_empty {
            Some(since) => (since + SECOND_ROUND).min(deadline),
            None => deadline,
        };
        let _ = tokio::time::timeout(wake.saturating_duration_since(now), assigned.changed()).await;
    }
}

#[async_trait::async_trait]
impl Transport for KafkaTransport {
    async fn check(&self, timeout: std::time::Duration) -> Result<()> {
        use rdkafka::producer::Producer as _;
        let producer = self.inner.producer.inner.clone();
        let servers = self.inner.config.bootstrap_servers.clone();
        // A metadata request is one round trip to some broker; librdkafka's call blocks.
        let answered =
            tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, timeout).map(|_| ())).await;
        let unreachable = |reason: String| TransportError::Broker {
            topic: "(health)".into(),
            reason: format!("broker {servers} does not answer: {reason}"),
        };
        match answered {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(unreachable(e.to_string())),
            Err(e) => Err(unreachable(e.to_string())),
        }
    }

    fn subscription_status(&self) -> crate::SubscriptionStatus {
        crate::SubscriptionStatus {
            opened: self.inner.opened.load(Ordering::SeqCst),
            waiting: self.inner.waiting.load(Ordering::SeqCst),
        }
    }

    async fn publish(&self, topic: &str, message: OutgoingMessage) -> Result<()> {
        let name = self.inner.ensure(topic).await?;
        self.inner
            .send(topic, &name, &message.key, &message.payload, &message.headers)
            .await
    }

    async fn publish_all(&self, messages: Vec<(String, OutgoingMessage)>) -> Result<()> {
        // Enqueue everything in order, then wait for the delivery reports together.
        let mut deliveries = Vec::with_capacity(messages.len());
        for (logical, message) in messages {
            let name = self.inner.ensure(&logical).await?;
            let delivery = self
                .inner
                .producer
                .enqueue(&logical, &name, &message.key, &message.payload, &message.headers)
                .await?;
            deliveries.push((logical, delivery));
        }
        for (logical, delivery) in deliveries {
            producer::Producer::confirmed(&logical, delivery).await?;
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        topic: &str,
        subscription: &str,
        kind: SubscriptionKind,
    ) -> Result<Box<dyn Subscription>> {
        // Released when the subscription (or this call, on an error) drops it.
        let claim = self.inner.exclusive.claim(topic, subscription, kind)?;
        let config = &self.inner.config;
        let retry_topic = config.retry_topic(topic, subscription);
        let group = config.group(topic, subscription);
        let assignment = Arc::new(std::sync::Mutex::new(ack::Assignment::default()));
        let (assigned_tx, mut assigned_rx) = watch::channel((0u64, 0usize));
        let opened = async {
            let main = self.inner.ensure(topic).await?;
            self.inner.admin.ensure_topic(topic, &retry_topic, 1).await?;
            let context = consumer::GroupContext {
                group: group.clone(),
                logical_topic: topic.to_string(),
                assignment: assignment.clone(),
                assigned: assigned_tx,
            };
            let consumer = self.consumer(&group, topic, context)?;
            consumer
                .subscribe(&[main.as_str(), retry_topic.as_str()])
                .map_err(|e| TransportError::Broker {
                    topic: topic.to_string(),
                    reason: format!("cannot subscribe group {group}: {e}"),
                })?;
            Ok::<_, TransportError>(consumer)
        };
        let consumer = match opened.await {
            Ok(consumer) => consumer,
            Err(e) => return Err(e),
        };
        let (settled_tx, settled_rx) = mpsc::unbounded_channel();
        let (tx, rx) = mpsc::channel(config.prefetch.max(1));
        let (closing_tx, closing_rx) = oneshot::channel();
        tokio::spawn(consumer::run(
            consumer,
            assignment.clone(),
            tx,
            settled_rx,
            closing_rx,
            topic.to_string(),
        ));
        let state = Arc::new(ack::AckState {
            inner: self.inner.clone(),
            logical_topic: topic.to_string(),
            retry_topic,
            inflight: Mutex::new(HashMap::new()),
            next_tag: AtomicU64::new(0),
            settled: settled_tx,
            redeliveries: crate::DelayedRedeliveries::default(),
        });
        self.inner.opened.fetch_add(1, Ordering::SeqCst);
        let subscription_handle = consumer::KafkaSubscription {
            rx,
            state,
            assignment,
            closing: Some(closing_tx),
            inner: self.inner.clone(),
            _claim: claim,
        };
        {
            let _waiting = Waiting::start(&self.inner.waiting);
            if !wait_assigned(&mut assigned_rx, config.assignment_timeout).await {
                tracing::warn!(topic, %group, timeout = ?config.assignment_timeout, "no partitions assigned yet; consuming once the group assigns some");
            }
        }
        Ok(Box::new(subscription_handle))
    }
}
