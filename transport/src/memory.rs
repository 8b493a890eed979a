//! The in-memory transport: the embedded default. It still moves encoded bytes, keeps per-key
//! order through hashed virtual partitions, redelivers on nack or consumer loss, and
//! dead-letters after the configured number of redeliveries, so behaviour matches the brokers.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use baton_shared_schemas::topics::dead_letter_topic;
use tokio::sync::Notify;

use crate::delivery::headers;
use crate::{
    Acknowledger, Delivery, OutgoingMessage, Result, Subscription, SubscriptionKind, Transport, TransportError,
};

/// Settings of the in-memory transport.
#[derive(Clone, Debug)]
pub struct MemoryConfig {
    /// Redeliveries after which a message goes to its dead-letter topic.
    pub max_redeliveries: u32,
    /// Delay before a nacked message is redelivered (multiplied by its redelivery count).
    pub nack_delay: Duration,
    /// Virtual partitions of keyed subscriptions.
    pub partitions: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            max_redeliveries: 3,
            nack_delay: Duration::from_millis(20),
            partitions: 32,
        }
    }
}

#[derive(Clone)]
struct Message {
    /// Where it was published: a number no other message of the transport has.
    position: u64,
    key: String,
    payload: Arc<[u8]>,
    headers: Arc<Vec<(String, String)>>,
    redeliveries: u32,
}

struct Inflight {
    partition: usize,
    consumer: u64,
    message: Message,
}

struct SubscriptionQueues {
    partitions: Vec<VecDeque<Message>>,
    /// Owner consumer of each partition (keyed subscriptions).
    owners: Vec<Option<u64>>,
    consumers: Vec<u64>,
    inflight: HashMap<u64, Inflight>,
    next_tag: u64,
    next_consumer: u64,
    /// Where the next scan for a keyed consumer starts, for fairness across partitions.
    cursor: usize,
}

struct SubscriptionState {
    topic: String,
    name: String,
    kind: SubscriptionKind,
    queues: Mutex<SubscriptionQueues>,
    ready: Notify,
}

#[derive(Default)]
struct TopicState {
    subscriptions: Vec<Arc<SubscriptionState>>,
    /// Messages published before any subscription existed.
    backlog: Vec<Message>,
}

struct Inner {
    config: MemoryConfig,
    topics: RwLock<HashMap<String, Arc<Mutex<TopicState>>>>,
    closed: AtomicBool,
    /// Consumers opened, for [`Transport::subscription_status`].
    opened: std::sync::atomic::AtomicUsize,
    /// The position of the next message published.
    next_position: AtomicU64,
}

/// The in-memory transport. Cheap to clone; clones share topics.
#[derive(Clone)]
pub struct InMemoryTransport {
    inner: Arc<Inner>,
}

impl Default for InMemoryTransport {
    fn default() -> Self {
        Self::new(MemoryConfig::default())
    }
}

use baton_runtime::locked as lock;

fn partition_of(key: &str, partitions: usize) -> usize {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % partitions as u64) as usize
}

impl InMemoryTransport {
    /// A transport with the given settings.
    pub fn new(config: MemoryConfig) -> Self {
        let config = MemoryConfig {
            partitions: config.partitions.max(1),
            ..config
        };
        Self {
            inner: Arc::new(Inner {
                config,
                topics: RwLock::new(HashMap::new()),
                closed: AtomicBool::new(false),
                opened: std::sync::atomic::AtomicUsize::new(0),
                next_position: AtomicU64::new(0),
            }),
        }
    }

    /// Closes the transport: consumers waiting in `next` get [`TransportError::Closed`].
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        let topics = self.inner.topics.read().unwrap_or_else(|e| e.into_inner());
        for topic in topics.values() {
            for sub in &lock(topic).subscriptions {
                sub.ready.notify_waiters();
            }
        }
    }

    /// Messages waiting (not in flight) on a subscription; 0 if it does not exist.
    pub fn backlog(&self, topic: &str, subscription: &str) -> usize {
        let Some(topic) = self.topic_if_exists(topic) else {
            return 0;
        };
        let topic = lock(&topic);
        topic
            .subscriptions
            .iter()
            .find(|s| s.name == subscription)
            .map(|s| lock(&s.queues).partitions.iter().map(VecDeque::len).sum())
            .unwrap_or(0)
    }

    fn topic_if_exists(&self, name: &str) -> Option<Arc<Mutex<TopicState>>> {
        self.inner
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    fn topic(&self, name: &str) -> Arc<Mutex<TopicState>> {
        if let Some(t) = self.topic_if_exists(name) {
            return t;
        }
        let mut topics = self.inner.topics.write().unwrap_or_else(|e| e.into_inner());
        topics.entry(name.to_string()).or_default().clone()
    }

    fn enqueue(&self, sub: &SubscriptionState, message: Message, front: bool) {
        {
            let mut q = lock(&sub.queues);
            let p = match sub.kind {
                SubscriptionKind::Keyed => partition_of(&message.key, q.partitions.len()),
                _ => 0,
            };
            if front {
                q.partitions[p].push_front(message);
            } else {
                q.partitions[p].push_back(message);
            }
        }
        sub.ready.notify_waiters();
    }

    fn publish_now(&self, topic_name: &str, message: Message) {
        let topic = self.topic(topic_name);
        let subs = {
            let mut topic = lock(&topic);
            if topic.subscriptions.is_empty() {
                topic.backlog.push(message);
                return;
            }
            topic.subscriptions.clone()
        };
        for sub in subs {
            self.enqueue(&sub, message.clone(), false);
        }
    }

    fn dead_letter_now(&self, sub: &SubscriptionState, mut message: Message, reason: &str) {
        tracing::warn!(topic = %sub.topic, subscription = %sub.name, key = %message.key, %reason, "message dead-lettered");
        let mut h: Vec<(String, String)> = message.headers.iter().cloned().collect();
        h.push((headers::DEAD_LETTER_REASON.to_string(), reason.to_string()));
        h.push((headers::ORIGINAL_TOPIC.to_string(), sub.topic.clone()));
        h.push((headers::REDELIVERIES.to_string(), message.redeliveries.to_string()));
        h.push((
            headers::ORIGINAL_POSITION.to_string(),
            format!("{}@{}", sub.topic, message.position),
        ));
        message.headers = Arc::new(h);
        message.redeliveries = 0;
        message.position = self.inner.next_position.fetch_add(1, Ordering::Relaxed);
        self.publish_now(&dead_letter_topic(&sub.topic), message);
    }
}

impl SubscriptionQueues {
    fn new(kind: SubscriptionKind, partitions: usize) -> Self {
        let n = if kind == SubscriptionKind::Keyed { partitions } else { 1 };
        Self {
            partitions: (0..n).map(|_| VecDeque::new()).collect(),
            owners: vec![None; n],
            consumers: Vec::new(),
            inflight: HashMap::new(),
            next_tag: 0,
            next_consumer: 0,
            cursor: 0,
        }
    }

    fn rebalance(&mut self) {
        let n = self.consumers.len();
        for (p, owner) in self.owners.iter_mut().enumerate() {
            *owner = if n == 0 { None } else { Some(self.consumers[p % n]) };
        }
    }

    fn take(&mut self, kind: SubscriptionKind, consumer: u64) -> Option<(u64, Message)> {
        let count = self.partitions.len();
        let partition = match kind {
            SubscriptionKind::Keyed => (0..count)
                .map(|i| (self.cursor + i) % count)
                .find(|&p| self.owners[p] == Some(consumer) && !self.partitions[p].is_empty())?,
            _ => 0,
        };
        let message = self.partitions[partition].pop_front()?;
        self.cursor = (partition + 1) % count;
        let tag = self.next_tag;
        self.next_tag += 1;
        self.inflight.insert(
            tag,
            Inflight {
                partition,
                consumer,
                message: message.clone(),
            },
        );
        Some((tag, message))
    }
}

#[async_trait::async_trait]
impl Transport for InMemoryTransport {
    async fn publish(&self, topic: &str, message: OutgoingMessage) -> Result<()> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(TransportError::Closed);
        }
        let message = Message {
            position: self.inner.next_position.fetch_add(1, Ordering::Relaxed),
            key: message.key,
            payload: Arc::from(message.payload),
            headers: Arc::new(message.headers),
            redeliveries: 0,
        };
        self.publish_now(topic, message);
        Ok(())
    }

    fn subscription_status(&self) -> crate::SubscriptionStatus {
        crate::SubscriptionStatus {
            opened: self.inner.opened.load(Ordering::SeqCst),
            waiting: 0,
        }
    }

    async fn subscribe(&self, topic_name: &str, name: &str, kind: SubscriptionKind) -> Result<Box<dyn Subscription>> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(TransportError::Closed);
        }
        self.inner.opened.fetch_add(1, Ordering::SeqCst);
        let topic = self.topic(topic_name);
        let sub = {
            let mut t = lock(&topic);
            let existing = t.subscriptions.iter().find(|s| s.name == name).cloned();
            match existing {
                Some(s) if s.kind != kind => {
                    return Err(TransportError::KindMismatch {
                        topic: topic_name.into(),
                        subscription: name.into(),
                    });
                }
                Some(s) => s,
                None => {
                    let s = Arc::new(SubscriptionState {
                        topic: topic_name.to_string(),
                        name: name.to_string(),
                        kind,
                        queues: Mutex::new(SubscriptionQueues::new(kind, self.inner.config.partitions)),
                        ready: Notify::new(),
                    });
                    t.subscriptions.push(s.clone());
                    // The backlog goes in while the topic is still locked: a publish that sees
                    // the new subscription lands after it, so one key's messages keep their
                    // order across the first subscribe.
                    if t.subscriptions.len() == 1 {
                        for message in std::mem::take(&mut t.backlog) {
                            self.enqueue(&s, message, false);
                        }
                    }
                    s
                }
            }
        };
        let consumer = {
            let mut q = lock(&sub.queues);
            if kind == SubscriptionKind::Exclusive && !q.consumers.is_empty() {
                return Err(TransportError::SubscriptionBusy {
                    topic: topic_name.into(),
                    subscription: name.into(),
                });
            }
            let id = q.next_consumer;
            q.next_consumer += 1;
            q.consumers.push(id);
            q.rebalance();
            id
        };
        sub.ready.notify_waiters();
        let acker = Arc::new(MemoryAcker {
            transport: self.clone(),
            sub: sub.clone(),
        });
        Ok(Box::new(MemorySubscription {
            transport: self.clone(),
            sub,
            consumer,
            acker,
        }))
    }
}

struct MemorySubscription {
    transport: InMemoryTransport,
    sub: Arc<SubscriptionState>,
    consumer: u64,
    acker: Arc<MemoryAcker>,
}

#[async_trait::async_trait]
impl Subscription for MemorySubscription {
    async fn next(&mut self) -> Result<Delivery> {
        loop {
            let ready = self.sub.ready.notified();
            if self.transport.inner.closed.load(Ordering::SeqCst) {
                return Err(TransportError::Closed);
            }
            let taken = lock(&self.sub.queues).take(self.sub.kind, self.consumer);
            if let Some((tag, m)) = taken {
                return Ok(Delivery::new(
                    self.sub.topic.clone(),
                    m.key,
                    m.payload,
                    m.headers,
                    m.redeliveries,
                    tag,
                    self.acker.clone(),
                ));
            }
            ready.await;
        }
    }
}

impl Drop for MemorySubscription {
    fn drop(&mut self) {
        let mut q = lock(&self.sub.queues);
        q.consumers.retain(|c| *c != self.consumer);
        q.rebalance();
        // Hand unacknowledged messages back, oldest first at the front of their partitions.
        let mut mine: Vec<u64> = q
            .inflight
            .iter()
            .filter(|(_, f)| f.consumer == self.consumer)
            .map(|(t, _)| *t)
            .collect();
        mine.sort_unstable_by(|a, b| b.cmp(a));
        for tag in mine {
            if let Some(f) = q.inflight.remove(&tag) {
                let mut m = f.message;
                m.redeliveries += 1;
                q.partitions[f.partition].push_front(m);
            }
        }
        drop(q);
        self.sub.ready.notify_waiters();
    }
}

struct MemoryAcker {
    transport: InMemoryTransport,
    sub: Arc<SubscriptionState>,
}

#[async_trait::async_trait]
impl Acknowledger for MemoryAcker {
    async fn ack(&self, tag: u64) {
        lock(&self.sub.queues).inflight.remove(&tag);
    }

    async fn nack(&self, tag: u64, reason: &str) {
        let Some(f) = lock(&self.sub.queues).inflight.remove(&tag) else {
            return;
        };
        let mut message = f.message;
        message.redeliveries += 1;
        if message.redeliveries > self.transport.inner.config.max_redeliveries {
            let reason = format!("redelivered {} times; last failure: {reason}", message.redeliveries - 1);
            self.transport.dead_letter_now(&self.sub, message, &reason);
            return;
        }
        let delay = self.transport.inner.config.nack_delay * message.redeliveries;
        if delay.is_zero() {
            self.transport.enqueue(&self.sub, message, true);
        } else {
            let transport = self.transport.clone();
            let sub = self.sub.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                transport.enqueue(&sub, message, true);
            });
        }
    }

    async fn dead_letter(&self, tag: u64, reason: &str) {
        let Some(f) = lock(&self.sub.queues).inflight.remove(&tag) else {
            return;
        };
        self.transport.dead_letter_now(&self.sub, f.message, reason);
    }
}
