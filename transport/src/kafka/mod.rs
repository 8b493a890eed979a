//! The Kafka transport (via `rdkafka`), tested against a Kafka-compatible broker.
//!
//! - Topics are created on first use with the configured partition count. Logical names map to
//!   Kafka names by prefixing the namespace and replacing characters Kafka does not allow
//!   (`workflow-cmd:Booking` → `{namespace}workflow-cmd.Booking`).
//! - A subscription is a group (`{namespace}{subscription}.{topic}`), which keys the committed
//!   offsets. Messages are partitioned by key, so a keyed subscription keeps per-key order and
//!   one consumer per key; a shared subscription lets one consumer process several messages of
//!   a partition at once.
//! - Offsets are committed only up to the lowest offset delivered but not yet settled (a
//!   contiguous watermark), so a consumer that goes away never loses a message.
//! - Kafka has no per-message negative acknowledgement: a nacked message is published again
//!   with its redelivery count in a header (after the configured delay) and then settled; past
//!   the limit it goes to the dead-letter topic with the reason.
//! - Which consumer reads which partition is decided by Baton's own [`membership`] protocol, not
//!   by the broker's group coordinator. When a partition moves, the settled watermark is
//!   committed first, and messages of it still buffered or in flight no longer move its offsets.
//! - Each consumer fetches in its own task into a buffer of `prefetch` messages.
//! - Exclusive subscriptions are exclusive within one process; across processes, a client reply
//!   topic is exclusive because only its client subscribes to it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use baton_shared_schemas::topics::dead_letter_topic;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use crate::delivery::headers;

pub mod membership;
use crate::{
    Acknowledger, Delivery, OutgoingMessage, Result, Subscription, SubscriptionKind, Transport, TransportError,
};
use membership::Membership;

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
    /// How long `subscribe` waits to read the membership heartbeats published before this
    /// process started (so a new consumer does not take partitions live members hold).
    pub assignment_timeout: Duration,
    /// Longest time the broker may hold a fetch that has no data (`fetch.wait.max.ms`). A broker
    /// that answers a fetch as soon as data arrives is not slowed by a high value; one that always
    /// waits the full time (tansu) adds it to every hop, so keep it low there.
    pub fetch_wait: Duration,
    /// How long the producer waits to batch messages (`linger.ms`); each hop of a workflow pays it.
    pub linger: Duration,
    /// Most messages the producer puts in one record batch (`batch.num.messages`). Use 1 on
    /// tansu: a consumer that starts at an offset inside a batch is served from the next batch
    /// there, so the rest of that batch would be skipped.
    pub batch_messages: usize,
    /// How often a process tells the others which consumers it runs (see [`membership`]).
    pub heartbeat: Duration,
    /// How long after its last heartbeat a silent process loses its partitions to the others.
    pub session_timeout: Duration,
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
            fetch_wait: Duration::from_millis(100),
            linger: Duration::from_millis(1),
            batch_messages: 10_000,
            heartbeat: Duration::from_millis(500),
            session_timeout: Duration::from_secs(6),
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
    /// Consumers opened, and those still waiting for their first assignment.
    opened: AtomicUsize,
    waiting: AtomicUsize,
    /// This process in the membership protocol, and its tasks; started by the first subscribe.
    membership: tokio::sync::OnceCell<(Arc<Membership>, Vec<tokio::task::JoinHandle<()>>)>,
    process: String,
    next_consumer: AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some((_, tasks)) = self.membership.get() {
            for task in tasks {
                task.abort();
            }
        }
    }
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
            .set("message.timeout.ms", "30000")
            .set("linger.ms", config.linger.as_millis().to_string())
            .set("batch.num.messages", config.batch_messages.max(1).to_string());
        let producer: FutureProducer = client.create().map_err(|e| broker("(producer)", e))?;
        let admin: AdminClient<DefaultClientContext> = client.create().map_err(|e| broker("(admin)", e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                producer,
                admin,
                created: Mutex::new(HashSet::new()),
                exclusive: Mutex::new(HashSet::new()),
                opened: AtomicUsize::new(0),
                waiting: AtomicUsize::new(0),
                membership: tokio::sync::OnceCell::new(),
                process: baton_shared_schemas::ClientId::new().to_string(),
                next_consumer: AtomicU64::new(0),
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
        self.create_topic(logical, name, self.inner.config.partitions.max(1))
            .await
    }

    async fn create_topic(&self, logical: &str, name: String, partitions: i32) -> Result<String> {
        if locked(&self.inner.created).contains(&name) {
            return Ok(name);
        }
        let topic = NewTopic::new(&name, partitions, TopicReplication::Fixed(1));
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

    /// This process's membership, started on first use.
    async fn membership(&self) -> Result<Arc<Membership>> {
        let (membership, _) = self
            .inner
            .membership
            .get_or_try_init(|| async {
                let topic = format!("{}_members", self.inner.config.namespace);
                let topic = self.create_topic("(members)", topic, 1).await?;
                let config = &self.inner.config;
                Membership::start(
                    self.inner.process.clone(),
                    topic,
                    &config.bootstrap_servers,
                    config.fetch_wait,
                    self.inner.producer.clone(),
                    config.heartbeat,
                    config.session_timeout,
                )
                .map_err(|e| broker("(members)", e))
            })
            .await?;
        Ok(membership.clone())
    }

    /// Partitions of a topic, as the broker reports them (retried while a new topic settles).
    async fn partition_count(
        &self,
        consumer: &StreamConsumer<GroupContext>,
        topic: &str,
        logical: &str,
    ) -> Result<i32> {
        let mut last = String::from("no partitions");
        for _ in 0..50 {
            match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
                Ok(metadata) => {
                    let count = metadata
                        .topics()
                        .iter()
                        .find(|t| t.name() == topic)
                        .map(|t| t.partitions().len())
                        .unwrap_or(0);
                    if count > 0 {
                        return i32::try_from(count).map_err(|e| broker(logical, e));
                    }
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(broker(
            logical,
            format!("cannot read the partitions of {topic}: {last}"),
        ))
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
        let delivered = self
            .inner
            .producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| broker(logical, e))?;
        tracing::trace!(
            topic = logical,
            key,
            partition = delivered.partition,
            offset = delivered.offset,
            "published"
        );
        Ok(())
    }
}

#[async_trait::async_trait]
impl Transport for KafkaTransport {
    fn subscription_status(&self) -> crate::SubscriptionStatus {
        crate::SubscriptionStatus {
            opened: self.inner.opened.load(Ordering::SeqCst),
            waiting: self.inner.waiting.load(Ordering::SeqCst),
        }
    }

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
        let opened = async {
            let membership = self.membership().await?;
            let context = GroupContext { group: group.clone() };
            // No `subscribe`: the broker's group protocol does not decide who reads what (see
            // `membership`); the group id only keys the committed offsets.
            let consumer: StreamConsumer<GroupContext> = ClientConfig::new()
                .set("bootstrap.servers", &self.inner.config.bootstrap_servers)
                .set("group.id", &group)
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                // librdkafka's own read-ahead per consumer, on top of `prefetch` messages.
                .set("queued.max.messages.kbytes", "16384")
                .set(
                    "fetch.wait.max.ms",
                    self.inner.config.fetch_wait.as_millis().max(1).to_string(),
                )
                .create_with_context(context)
                .map_err(|e| broker(topic, e))?;
            let partitions = self.partition_count(&consumer, &kafka_topic, topic).await?;
            Ok::<_, TransportError>((membership, consumer, partitions))
        };
        let (membership, consumer, partitions) = match opened.await {
            Ok(opened) => opened,
            Err(e) => {
                release(self);
                return Err(e);
            }
        };
        {
            let _waiting = Waiting::start(&self.inner.waiting);
            membership.wait_caught_up(self.inner.config.assignment_timeout).await;
        }
        self.inner.opened.fetch_add(1, Ordering::SeqCst);
        let member = format!(
            "{}/{}",
            self.inner.process,
            self.inner.next_consumer.fetch_add(1, Ordering::SeqCst)
        );
        let changes = membership.subscribe_changes();
        membership.join(&group, &member);
        let consumer = Arc::new(consumer);
        let assignment = Arc::new(Mutex::new(Assignment::default()));
        let owner = Owner {
            consumer: consumer.clone(),
            assignment: assignment.clone(),
            membership: membership.clone(),
            logical_topic: topic.to_string(),
            kafka_topic: kafka_topic.clone(),
            group: group.clone(),
            member: member.clone(),
            partitions,
        };
        owner.rebalance();
        let (tx, rx) = mpsc::channel(self.inner.config.prefetch.max(1));
        let poller = tokio::spawn(poll(owner, changes, tx));
        let state = Arc::new(AckState {
            transport: self.clone(),
            logical_topic: topic.to_string(),
            kafka_topic,
            consumer,
            inflight: Mutex::new(HashMap::new()),
            assignment,
            next_tag: AtomicU64::new(0),
        });
        Ok(Box::new(KafkaSubscription {
            rx,
            state,
            poller,
            membership,
            group,
            member,
            exclusive: (kind == SubscriptionKind::Exclusive).then_some(exclusive_key),
        }))
    }
}

/// Counts a consumer as waiting for its first assignment until dropped (also when the
/// subscribing future is dropped early).
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

/// A message taken from the consumer, with the assignment epoch of its partition at that time.
struct Fetched {
    epoch: u64,
    message: rdkafka::message::OwnedMessage,
}

/// One consumer's share of its group's partitions, kept in line with the membership.
struct Owner {
    consumer: Arc<StreamConsumer<GroupContext>>,
    assignment: Arc<Mutex<Assignment>>,
    membership: Arc<Membership>,
    logical_topic: String,
    kafka_topic: String,
    group: String,
    member: String,
    partitions: i32,
}

impl Owner {
    /// Takes the partitions the current members give this consumer and lets go of the others,
    /// committing what is settled of each before it leaves.
    fn rebalance(&self) {
        let members = self.membership.members(&self.group);
        let wanted = membership::owned_partitions(&members, &self.member, self.partitions);
        let mut released = TopicPartitionList::new();
        let mut commits = TopicPartitionList::new();
        let mut gained = TopicPartitionList::new();
        {
            let mut assignment = locked(&self.assignment);
            let held: Vec<i32> = assignment.partitions.keys().copied().collect();
            for partition in held.into_iter().filter(|p| !wanted.contains(p)) {
                if let Some((watermark, epoch)) = assignment
                    .partitions
                    .remove(&partition)
                    .and_then(|p| Some((p.handover()?, p.epoch)))
                {
                    tracing::trace!(topic = %self.logical_topic, partition, watermark, epoch, "committing a partition handed over");
                    let _ = commits.add_partition_offset(&self.kafka_topic, partition, Offset::Offset(watermark));
                }
                released.add_partition(&self.kafka_topic, partition);
            }
            let missing: Vec<i32> = wanted
                .iter()
                .copied()
                .filter(|p| !assignment.partitions.contains_key(p))
                .collect();
            for partition in missing {
                assignment.next_epoch += 1;
                let taken = PartitionOffsets::taken(assignment.next_epoch);
                assignment.partitions.insert(partition, taken);
                // Where the group's last reader of this partition committed.
                let _ = gained.add_partition_offset(&self.kafka_topic, partition, Offset::Stored);
            }
        }
        if commits.count() > 0 {
            if let Err(e) = self.consumer.commit(&commits, CommitMode::Sync) {
                tracing::warn!(topic = %self.logical_topic, error = %e, "cannot commit partitions handed over");
            }
        }
        if released.count() > 0 {
            if let Err(e) = self.consumer.incremental_unassign(&released) {
                tracing::warn!(topic = %self.logical_topic, error = %e, "cannot release partitions");
            }
            tracing::debug!(topic = %self.logical_topic, group = %self.group, partitions = ?partition_numbers(&released), "partitions released");
        }
        if gained.count() > 0 {
            if let Err(e) = self.consumer.incremental_assign(&gained) {
                tracing::warn!(topic = %self.logical_topic, error = %e, "cannot take partitions");
            }
            tracing::debug!(topic = %self.logical_topic, group = %self.group, partitions = ?partition_numbers(&gained), members = members.len(), "partitions taken");
        }
    }
}

/// Takes messages from the consumer into the subscription's buffer, and follows membership
/// changes also while the buffer is full. (With the broker's group protocol out of the picture,
/// a consumer that waits for the application risks nothing: no coordinator expects it to poll.)
async fn poll(owner: Owner, mut changes: tokio::sync::watch::Receiver<u64>, tx: mpsc::Sender<Fetched>) {
    loop {
        let received = tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                owner.rebalance();
                continue;
            }
            received = owner.consumer.recv() => received,
        };
        let fetched = match received {
            Ok(m) => {
                let message = m.detach();
                let epoch = locked(&owner.assignment)
                    .partitions
                    .get(&message.partition())
                    .map(|p| p.epoch);
                // A message of a partition this member no longer holds belongs to the new owner.
                let Some(epoch) = epoch else { continue };
                Fetched { epoch, message }
            }
            // librdkafka retries by itself (lost connections, a broker restarting); the
            // application would only be told to stop consuming.
            Err(e) => {
                tracing::warn!(topic = %owner.logical_topic, error = %e, "consumer error; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        loop {
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    owner.rebalance();
                }
                room = tx.reserve() => {
                    match room {
                        Ok(room) => room.send(fetched),
                        Err(_) => return,
                    }
                    break;
                }
            }
        }
    }
}

/// Delivered-but-unsettled offsets of one assigned partition.
struct PartitionOffsets {
    /// Changes with each assignment, so acks of messages from an earlier one are told apart.
    epoch: u64,
    unsettled: BTreeSet<i64>,
    highest_delivered: i64,
    committed: i64,
}

impl PartitionOffsets {
    /// A partition just taken, nothing delivered yet.
    fn taken(epoch: u64) -> Self {
        Self {
            epoch,
            unsettled: BTreeSet::new(),
            highest_delivered: -1,
            committed: -1,
        }
    }

    /// The offset below which everything delivered is settled.
    fn watermark(&self) -> i64 {
        self.unsettled.first().copied().unwrap_or(self.highest_delivered + 1)
    }

    /// What to commit when the partition is let go: the watermark, once anything was delivered.
    fn handover(&self) -> Option<i64> {
        (self.highest_delivered >= 0).then(|| self.watermark())
    }
}

/// The partitions a consumer holds now.
#[derive(Default)]
struct Assignment {
    partitions: HashMap<i32, PartitionOffsets>,
    next_epoch: u64,
}

/// Routes librdkafka's own log lines of a consumer into `tracing`.
struct GroupContext {
    group: String,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(group = %self.group, facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(group = %self.group, facility, "librdkafka: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(group = %self.group, facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(group = %self.group, facility, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(group = %self.group, %error, reason, "consumer error");
    }
}

impl ConsumerContext for GroupContext {}

fn partition_numbers(list: &TopicPartitionList) -> Vec<i32> {
    list.elements().iter().map(|e| e.partition()).collect()
}

struct AckState {
    transport: KafkaTransport,
    logical_topic: String,
    kafka_topic: String,
    consumer: Arc<StreamConsumer<GroupContext>>,
    inflight: Mutex<HashMap<u64, InFlight>>,
    assignment: Arc<Mutex<Assignment>>,
    next_tag: AtomicU64,
}

/// A delivered message not yet settled.
struct InFlight {
    partition: i32,
    offset: i64,
    epoch: u64,
    message: rdkafka::message::OwnedMessage,
}

impl AckState {
    /// Records a delivery; false if its partition was revoked since it was fetched.
    fn delivered(&self, partition: i32, offset: i64, epoch: u64) -> bool {
        let mut assignment = locked(&self.assignment);
        match assignment.partitions.get_mut(&partition) {
            Some(p) if p.epoch == epoch => {
                tracing::trace!(topic = %self.logical_topic, partition, offset, epoch, first = p.highest_delivered < 0, "delivered");
                p.unsettled.insert(offset);
                p.highest_delivered = p.highest_delivered.max(offset);
                true
            }
            _ => false,
        }
    }

    /// Settles an offset and commits the watermark if it moved. A message from an earlier
    /// assignment of the partition changes nothing: its offsets were handed over on revoke.
    fn settle(&self, partition: i32, offset: i64, epoch: u64, mode: CommitMode) {
        let commit = {
            let mut assignment = locked(&self.assignment);
            match assignment.partitions.get_mut(&partition) {
                Some(p) if p.epoch == epoch => {
                    p.unsettled.remove(&offset);
                    let watermark = p.watermark();
                    (watermark > p.committed).then(|| {
                        p.committed = watermark;
                        watermark
                    })
                }
                _ => None,
            }
        };
        if let Some(watermark) = commit {
            tracing::trace!(topic = %self.logical_topic, partition, offset, watermark, "committing");
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
        if let Some(f) = taken {
            self.state.settle(f.partition, f.offset, f.epoch, CommitMode::Async);
        }
    }

    async fn nack(&self, tag: u64, reason: &str) {
        let Some(f) = locked(&self.state.inflight).remove(&tag) else {
            return;
        };
        let hdrs = AckState::headers_of(&f.message);
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
                    .republish(&f.message, &dead_letter_topic(&state.logical_topic), extra)
                    .await
            } else {
                let extra = vec![(REDELIVERIES.to_string(), redeliveries.to_string())];
                state.republish(&f.message, &state.logical_topic.clone(), extra).await
            };
            match republished {
                Ok(()) => state.settle(f.partition, f.offset, f.epoch, CommitMode::Async),
                // Not settled: the offset stays below the watermark and is redelivered later.
                Err(e) => {
                    tracing::error!(topic = %state.logical_topic, error = %e, "cannot redeliver a nacked message")
                }
            }
        });
    }

    async fn dead_letter(&self, tag: u64, reason: &str) {
        let Some(f) = locked(&self.state.inflight).remove(&tag) else {
            return;
        };
        tracing::warn!(topic = %self.state.logical_topic, %reason, "message dead-lettered");
        let extra = vec![
            (headers::DEAD_LETTER_REASON.to_string(), reason.to_string()),
            (headers::ORIGINAL_TOPIC.to_string(), self.state.logical_topic.clone()),
            (
                headers::REDELIVERIES.to_string(),
                redeliveries_of(&AckState::headers_of(&f.message)).to_string(),
            ),
        ];
        match self
            .state
            .republish(&f.message, &dead_letter_topic(&self.state.logical_topic), extra)
            .await
        {
            Ok(()) => self.state.settle(f.partition, f.offset, f.epoch, CommitMode::Async),
            Err(e) => tracing::error!(topic = %self.state.logical_topic, error = %e, "cannot dead-letter a message"),
        }
    }
}

struct KafkaSubscription {
    rx: mpsc::Receiver<Fetched>,
    state: Arc<AckState>,
    poller: tokio::task::JoinHandle<()>,
    membership: Arc<Membership>,
    group: String,
    member: String,
    exclusive: Option<(String, String)>,
}

#[async_trait::async_trait]
impl Subscription for KafkaSubscription {
    async fn next(&mut self) -> Result<Delivery> {
        loop {
            let Fetched { epoch, message } = self.rx.recv().await.ok_or(TransportError::Closed)?;
            let (partition, offset) = (message.partition(), message.offset());
            // Revoked while buffered: the partition's next owner delivers it.
            if !self.state.delivered(partition, offset, epoch) {
                continue;
            }
            let hdrs = AckState::headers_of(&message);
            let redeliveries = redeliveries_of(&hdrs);
            let key = message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default();
            let payload: Arc<[u8]> = Arc::from(message.payload().unwrap_or_default());
            let tag = self.state.next_tag.fetch_add(1, Ordering::Relaxed);
            locked(&self.state.inflight).insert(
                tag,
                InFlight {
                    partition,
                    offset,
                    epoch,
                    message,
                },
            );
            let visible: Vec<(String, String)> = hdrs.into_iter().filter(|(k, _)| k != REDELIVERIES).collect();
            return Ok(Delivery::new(
                self.state.logical_topic.clone(),
                key,
                payload,
                Arc::new(visible),
                redeliveries,
                tag,
                Arc::new(KafkaAcker {
                    state: self.state.clone(),
                }),
            ));
        }
    }
}

impl Drop for KafkaSubscription {
    fn drop(&mut self) {
        self.poller.abort();
        // Commit what is settled; unsettled messages stay above the watermark for the next member.
        let mut commits = TopicPartitionList::new();
        for (partition, p) in &locked(&self.state.assignment).partitions {
            if let Some(watermark) = p.handover() {
                let _ = commits.add_partition_offset(&self.state.kafka_topic, *partition, Offset::Offset(watermark));
            }
        }
        if commits.count() > 0 {
            let _ = self.state.consumer.commit(&commits, CommitMode::Sync);
        }
        let _ = self.state.consumer.unassign();
        self.membership.leave(&self.group, &self.member);
        if let Some(key) = self.exclusive.take() {
            locked(&self.state.transport.inner.exclusive).remove(&key);
        }
    }
}
