//! The Kafka transport (via `rdkafka`), tested against a Kafka-compatible broker.
//!
//! - Topics are created on first use with the configured partition count. Logical names map to
//!   Kafka names by prefixing the namespace and replacing characters Kafka does not allow
//!   (`workflow-cmd:Booking` → `{namespace}workflow-cmd.Booking`).
//! - A subscription is a consumer group (`{namespace}{subscription}.{topic}`). Messages are
//!   partitioned by key, so a keyed subscription keeps per-key order and one consumer per key;
//!   a shared subscription lets one consumer process several messages of a partition at once.
//! - Offsets are committed only up to the lowest offset delivered but not yet settled (a
//!   contiguous watermark), so a consumer that goes away never loses a message.
//! - Kafka has no per-message negative acknowledgement: a nacked message is published again
//!   with its redelivery count in a header (after the configured delay) and then settled; past
//!   the limit it goes to the dead-letter topic with the reason.
//! - Each consumer polls in its own task, so it keeps taking part in group rebalances while the
//!   application is busy.
//! - Exclusive subscriptions are exclusive within one process; across processes, a client reply
//!   topic is exclusive because only its client subscribes to it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use baton_shared_schemas::topics::dead_letter_topic;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use crate::delivery::headers;
use crate::{
    Acknowledger, Delivery, OutgoingMessage, Result, Subscription, SubscriptionKind, Transport, TransportError,
};

/// Settings of the Kafka transport.
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// Broker addresses, `host:port[,host:port]`.
    pub bootstrap_servers: String,
    /// Prefix of every topic and consumer group (e.g. `prod.`).
    pub namespace: String,
    /// Partitions of topics created by Baton.
    pub partitions: i32,
    /// Redeliveries after which a message goes to its dead-letter topic.
    pub max_redeliveries: u32,
    /// Delay before a nacked message is redelivered (multiplied by its redelivery count).
    pub nack_delay: Duration,
    /// Messages a consumer fetches ahead of the application.
    pub prefetch: usize,
    /// How long `subscribe` waits for the group to assign partitions.
    pub assignment_timeout: Duration,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            namespace: "baton.".into(),
            partitions: 4,
            max_redeliveries: 3,
            nack_delay: Duration::from_millis(200),
            prefetch: 256,
            assignment_timeout: Duration::from_secs(20),
        }
    }
}

const REDELIVERIES: &str = "baton-redelivery-count";

fn broker(topic: &str, e: impl std::fmt::Display) -> TransportError {
    TransportError::Broker {
        topic: topic.to_string(),
        reason: e.to_string(),
    }
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Inner {
    config: KafkaConfig,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    created: Mutex<HashSet<String>>,
    exclusive: Mutex<HashSet<(String, String)>>,
}

/// A connection to a Kafka-compatible broker.
#[derive(Clone)]
pub struct KafkaTransport {
    inner: Arc<Inner>,
}

impl KafkaTransport {
    /// Connects (lazily: the first operation reaches the broker).
    pub fn connect(config: KafkaConfig) -> Result<Self> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.bootstrap_servers)
            .set("message.timeout.ms", "30000");
        let producer: FutureProducer = client.create().map_err(|e| broker("(producer)", e))?;
        let admin: AdminClient<DefaultClientContext> = client.create().map_err(|e| broker("(admin)", e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                producer,
                admin,
                created: Mutex::new(HashSet::new()),
                exclusive: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// The Kafka name of a logical topic.
    pub fn kafka_topic(&self, logical: &str) -> String {
        let mapped: String = logical
            .chars()
            .map(|c| match c {
                ':' => '.',
                c if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') => c,
                _ => '_',
            })
            .collect();
        format!("{}{mapped}", self.inner.config.namespace)
    }

    async fn ensure_topic(&self, logical: &str) -> Result<String> {
        let name = self.kafka_topic(logical);
        if locked(&self.inner.created).contains(&name) {
            return Ok(name);
        }
        let topic = NewTopic::new(&name, self.inner.config.partitions.max(1), TopicReplication::Fixed(1));
        let results = self
            .inner
            .admin
            .create_topics(
                &[topic],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .map_err(|e| broker(logical, e))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(broker(logical, format!("cannot create topic {name}: {code}"))),
            }
        }
        locked(&self.inner.created).insert(name.clone());
        Ok(name)
    }

    async fn send(&self, logical: &str, key: &str, payload: &[u8], hdrs: &[(String, String)]) -> Result<()> {
        let topic = self.ensure_topic(logical).await?;
        let mut owned = OwnedHeaders::new();
        for (k, v) in hdrs {
            owned = owned.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let record = FutureRecord::to(&topic).key(key).payload(payload).headers(owned);
        self.inner
            .producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(e, _)| broker(logical, e))
    }
}

#[async_trait::async_trait]
impl Transport for KafkaTransport {
    async fn publish(&self, topic: &str, message: OutgoingMessage) -> Result<()> {
        self.send(topic, &message.key, &message.payload, &message.headers).await
    }

    async fn subscribe(
        &self,
        topic: &str,
        subscription: &str,
        kind: SubscriptionKind,
    ) -> Result<Box<dyn Subscription>> {
        let exclusive_key = (topic.to_string(), subscription.to_string());
        if kind == SubscriptionKind::Exclusive && !locked(&self.inner.exclusive).insert(exclusive_key.clone()) {
            return Err(TransportError::SubscriptionBusy {
                topic: topic.into(),
                subscription: subscription.into(),
            });
        }
        let release = |t: &Self| {
            if kind == SubscriptionKind::Exclusive {
                locked(&t.inner.exclusive).remove(&exclusive_key);
            }
        };
        let kafka_topic = match self.ensure_topic(topic).await {
            Ok(t) => t,
            Err(e) => {
                release(self);
                return Err(e);
            }
        };
        let group = format!("{}{subscription}.{}", self.inner.config.namespace, kafka_topic);
        let consumer: StreamConsumer = match ClientConfig::new()
            .set("bootstrap.servers", &self.inner.config.bootstrap_servers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "roundrobin")
            .set("session.timeout.ms", "10000")
            // Also the rebalance timeout: how long a rebalance waits for a member that died
            // without leaving (SIGKILL). Consumers poll continuously, so a short value is safe.
            .set("max.poll.interval.ms", "30000")
            .create()
        {
            Ok(c) => c,
            Err(e) => {
                release(self);
                return Err(broker(topic, e));
            }
        };
        if let Err(e) = consumer.subscribe(&[&kafka_topic]) {
            release(self);
            return Err(broker(topic, e));
        }
        let consumer = Arc::new(consumer);
        let (tx, rx) = mpsc::channel(self.inner.config.prefetch.max(1));
        let poller = tokio::spawn(poll(consumer.clone(), tx));
        let state = Arc::new(AckState {
            transport: self.clone(),
            logical_topic: topic.to_string(),
            kafka_topic: kafka_topic.clone(),
            consumer: consumer.clone(),
            inflight: Mutex::new(HashMap::new()),
            partitions: Mutex::new(HashMap::new()),
            next_tag: AtomicU64::new(0),
        });
        // Wait for the group to give this consumer partitions, so that a caller who subscribes
        // several consumers sees a settled group before publishing.
        let deadline = tokio::time::Instant::now() + self.inner.config.assignment_timeout;
        while consumer.assignment().map(|a| a.count()).unwrap_or(0) == 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Box::new(KafkaSubscription {
            rx,
            state,
            poller,
            exclusive: (kind == SubscriptionKind::Exclusive).then_some(exclusive_key),
        }))
    }
}

async fn poll(consumer: Arc<StreamConsumer>, tx: mpsc::Sender<Result<rdkafka::message::OwnedMessage>>) {
    loop {
        let received = consumer
            .recv()
            .await
            .map(|m| m.detach())
            .map_err(|e| broker("(consumer)", e));
        if tx.send(received).await.is_err() {
            return;
        }
    }
}

/// Delivered-but-unsettled offsets of one partition and the highest offset delivered.
#[derive(Default)]
struct PartitionOffsets {
    unsettled: BTreeSet<i64>,
    highest_delivered: i64,
    committed: i64,
}

struct AckState {
    transport: KafkaTransport,
    logical_topic: String,
    kafka_topic: String,
    consumer: Arc<StreamConsumer>,
    inflight: Mutex<HashMap<u64, (i32, i64, rdkafka::message::OwnedMessage)>>,
    partitions: Mutex<HashMap<i32, PartitionOffsets>>,
    next_tag: AtomicU64,
}

impl AckState {
    fn delivered(&self, partition: i32, offset: i64) {
        let mut partitions = locked(&self.partitions);
        let p = partitions.entry(partition).or_default();
        p.unsettled.insert(offset);
        p.highest_delivered = p.highest_delivered.max(offset);
    }

    /// Settles an offset and commits the watermark if it moved.
    fn settle(&self, partition: i32, offset: i64, mode: CommitMode) {
        let commit = {
            let mut partitions = locked(&self.partitions);
            let p = partitions.entry(partition).or_default();
            p.unsettled.remove(&offset);
            let watermark = p.unsettled.first().copied().unwrap_or(p.highest_delivered + 1);
            (watermark > p.committed).then(|| {
                p.committed = watermark;
                watermark
            })
        };
        if let Some(watermark) = commit {
            let mut list = TopicPartitionList::new();
            if list
                .add_partition_offset(&self.kafka_topic, partition, Offset::Offset(watermark))
                .is_ok()
            {
                if let Err(e) = self.consumer.commit(&list, mode) {
                    tracing::debug!(topic = %self.logical_topic, partition, error = %e, "offset commit failed");
                }
            }
        }
    }

    fn headers_of(message: &rdkafka::message::OwnedMessage) -> Vec<(String, String)> {
        message
            .headers()
            .map(|h| {
                h.iter()
                    .filter_map(|header| {
                        header
                            .value
                            .map(|v| (header.key.to_string(), String::from_utf8_lossy(v).into_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn republish(
        &self,
        message: &rdkafka::message::OwnedMessage,
        topic: &str,
        extra: Vec<(String, String)>,
    ) -> Result<()> {
        let mut hdrs: Vec<(String, String)> = Self::headers_of(message)
            .into_iter()
            .filter(|(k, _)| k != REDELIVERIES)
            .collect();
        hdrs.extend(extra);
        let key = message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default();
        self.transport
            .send(topic, &key, message.payload().unwrap_or_default(), &hdrs)
            .await
    }
}

fn redeliveries_of(hdrs: &[(String, String)]) -> u32 {
    hdrs.iter()
        .find(|(k, _)| k == REDELIVERIES)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

struct KafkaAcker {
    state: Arc<AckState>,
}

#[async_trait::async_trait]
impl Acknowledger for KafkaAcker {
    async fn ack(&self, tag: u64) {
        let taken = locked(&self.state.inflight).remove(&tag);
        if let Some((partition, offset, _)) = taken {
            self.state.settle(partition, offset, CommitMode::Async);
        }
    }

    async fn nack(&self, tag: u64, reason: &str) {
        let Some((partition, offset, message)) = locked(&self.state.inflight).remove(&tag) else {
            return;
        };
        let hdrs = AckState::headers_of(&message);
        let redeliveries = redeliveries_of(&hdrs) + 1;
        let state = self.state.clone();
        let reason = reason.to_string();
        let max = state.transport.inner.config.max_redeliveries;
        let delay = state.transport.inner.config.nack_delay * redeliveries;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let republished = if redeliveries > max {
                let reason = format!("redelivered {} times; last failure: {reason}", redeliveries - 1);
                tracing::warn!(topic = %state.logical_topic, %reason, "message dead-lettered");
                let extra = vec![
                    (headers::DEAD_LETTER_REASON.to_string(), reason),
                    (headers::ORIGINAL_TOPIC.to_string(), state.logical_topic.clone()),
                    (headers::REDELIVERIES.to_string(), (redeliveries - 1).to_string()),
                ];
                state
                    .republish(&message, &dead_letter_topic(&state.logical_topic), extra)
                    .await
            } else {
                let extra = vec![(REDELIVERIES.to_string(), redeliveries.to_string())];
                state.republish(&message, &state.logical_topic.clone(), extra).await
            };
            match republished {
                Ok(()) => state.settle(partition, offset, CommitMode::Async),
                // Not settled: the offset stays below the watermark and is redelivered later.
                Err(e) => {
                    tracing::error!(topic = %state.logical_topic, error = %e, "cannot redeliver a nacked message")
                }
            }
        });
    }

    async fn dead_letter(&self, tag: u64, reason: &str) {
        let Some((partition, offset, message)) = locked(&self.state.inflight).remove(&tag) else {
            return;
        };
        tracing::warn!(topic = %self.state.logical_topic, %reason, "message dead-lettered");
        let extra = vec![
            (headers::DEAD_LETTER_REASON.to_string(), reason.to_string()),
            (headers::ORIGINAL_TOPIC.to_string(), self.state.logical_topic.clone()),
            (
                headers::REDELIVERIES.to_string(),
                redeliveries_of(&AckState::headers_of(&message)).to_string(),
            ),
        ];
        match self
            .state
            .republish(&message, &dead_letter_topic(&self.state.logical_topic), extra)
            .await
        {
            Ok(()) => self.state.settle(partition, offset, CommitMode::Async),
            Err(e) => tracing::error!(topic = %self.state.logical_topic, error = %e, "cannot dead-letter a message"),
        }
    }
}

struct KafkaSubscription {
    rx: mpsc::Receiver<Result<rdkafka::message::OwnedMessage>>,
    state: Arc<AckState>,
    poller: tokio::task::JoinHandle<()>,
    exclusive: Option<(String, String)>,
}

#[async_trait::async_trait]
impl Subscription for KafkaSubscription {
    async fn next(&mut self) -> Result<Delivery> {
        let message = self.rx.recv().await.ok_or(TransportError::Closed)??;
        let (partition, offset) = (message.partition(), message.offset());
        let hdrs = AckState::headers_of(&message);
        let redeliveries = redeliveries_of(&hdrs);
        let key = message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default();
        let payload: Arc<[u8]> = Arc::from(message.payload().unwrap_or_default());
        let tag = self.state.next_tag.fetch_add(1, Ordering::Relaxed);
        self.state.delivered(partition, offset);
        locked(&self.state.inflight).insert(tag, (partition, offset, message));
        let visible: Vec<(String, String)> = hdrs.into_iter().filter(|(k, _)| k != REDELIVERIES).collect();
        Ok(Delivery::new(
            self.state.logical_topic.clone(),
            key,
            payload,
            Arc::new(visible),
            redeliveries,
            tag,
            Arc::new(KafkaAcker {
                state: self.state.clone(),
            }),
        ))
    }
}

impl Drop for KafkaSubscription {
    fn drop(&mut self) {
        self.poller.abort();
        // Commit what is settled; unsettled messages stay above the watermark for the next member.
        let list = self.state.consumer.assignment().ok();
        if let Some(list) = list {
            let mut commits = TopicPartitionList::new();
            let partitions = locked(&self.state.partitions);
            for element in list.elements() {
                if let Some(p) = partitions.get(&element.partition()) {
                    let watermark = p.unsettled.first().copied().unwrap_or(p.highest_delivered + 1);
                    let _ =
                        commits.add_partition_offset(element.topic(), element.partition(), Offset::Offset(watermark));
                }
            }
            if commits.count() > 0 {
                let _ = self.state.consumer.commit(&commits, CommitMode::Sync);
            }
        }
        self.state.consumer.unsubscribe();
        if let Some(key) = self.exclusive.take() {
            locked(&self.state.transport.inner.exclusive).remove(&key);
        }
    }
}
