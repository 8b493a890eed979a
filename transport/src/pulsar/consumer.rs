//! A subscription: one task owns the Pulsar consumer (of the topic's partitions and of the
//! subscription's retry topic), hands messages to the application through a bounded buffer and
//! sends the acks that come back. It keeps serving acks while the buffer is full, and opens the
//! consumer again if the client gives up on it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use pulsar::consumer::InitialPosition;
use pulsar::{Consumer, ConsumerOptions, SubType, TokioExecutor};
use tokio::sync::{mpsc, oneshot};

use super::Inner;
use super::ack::{AckState, BatchPosition, InFlight, REDELIVERIES, Settle};
use crate::{Delivery, Result, Subscription, SubscriptionKind, TransportError, locked};

type RawConsumer = Consumer<Vec<u8>, TokioExecutor>;

/// What a consumer is opened on.
#[derive(Clone)]
pub(crate) struct ConsumerSpec {
    pub topics: Vec<String>,
    pub subscription: String,
    pub kind: SubscriptionKind,
    pub name: String,
}

static NEXT_CONSUMER: AtomicU64 = AtomicU64::new(0);

impl ConsumerSpec {
    pub(crate) fn new(topics: Vec<String>, subscription: &str, kind: SubscriptionKind, process: &str) -> Self {
        Self {
            topics,
            subscription: super::config::local_name(subscription),
            kind,
            name: format!("{process}-{}", NEXT_CONSUMER.fetch_add(1, Ordering::Relaxed)),
        }
    }
}

/// Opens a consumer. New keyed and shared subscriptions start at the earliest retained message,
/// so the first subscriber of a topic receives what was published before it. An exclusive
/// subscription belongs to one process (a client's replies, a worker's control messages): it is
/// non-durable, so nothing piles up for it on the broker once the process is gone.
pub(crate) async fn open(inner: &Inner, spec: &ConsumerSpec) -> Result<RawConsumer> {
    let (sub_type, durable) = match spec.kind {
        // Each partition read by one consumer at a time (the broker spreads the partitions over
        // the consumers and moves them when one joins or leaves): a batched entry holds keys of
        // one partition, so it goes where each of its keys belongs.
        SubscriptionKind::Keyed => (SubType::Failover, true),
        SubscriptionKind::Shared => (SubType::Shared, true),
        SubscriptionKind::Exclusive => (SubType::Exclusive, false),
    };
    let position = if durable {
        InitialPosition::Earliest
    } else {
        InitialPosition::Latest
    };
    let options = ConsumerOptions::default()
        .with_initial_position(position)
        .durable(durable);
    inner
        .client
        .consumer()
        .with_topics(&spec.topics)
        .with_subscription(&spec.subscription)
        .with_subscription_type(sub_type)
        .with_consumer_name(&spec.name)
        .with_batch_size(inner.config.prefetch)
        .with_options(options)
        .build::<Vec<u8>>()
        .await
        .map_err(|e| {
            let reason = e.to_string();
            if reason.contains("ConsumerBusy") {
                TransportError::SubscriptionBusy {
                    topic: spec.topics.first().cloned().unwrap_or_default(),
                    subscription: spec.subscription.clone(),
                }
            } else {
                TransportError::Broker {
                    topic: spec.topics.first().cloned().unwrap_or_default(),
                    reason: format!("cannot subscribe {}: {reason}", spec.subscription),
                }
            }
        })
}

/// A consumer of a subscription.
pub(crate) struct PulsarSubscription {
    pub rx: mpsc::Receiver<Delivery>,
    pub closing: Option<oneshot::Sender<()>>,
    pub inner: Arc<Inner>,
    pub redeliveries: crate::DelayedRedeliveries,
    pub _claim: Option<crate::ExclusiveClaim>,
}

#[async_trait::async_trait]
impl Subscription for PulsarSubscription {
    async fn next(&mut self) -> Result<Delivery> {
        self.rx.recv().await.ok_or(TransportError::Closed)
    }
}

impl Drop for PulsarSubscription {
    fn drop(&mut self) {
        // The task sends the acks already given, then closes the consumer: the broker hands
        // what is unacknowledged to the subscription's other consumers.
        if let Some(closing) = self.closing.take() {
            let _ = closing.send(());
        }
        self.redeliveries.close();
        self.inner.opened.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Turns a received message into a delivery, remembering it until it is settled.
fn deliver(state: &Arc<AckState>, message: pulsar::consumer::Message<Vec<u8>>) -> Delivery {
    let properties: HashMap<String, String> = message
        .payload
        .metadata
        .properties
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    let redeliveries = properties.get(REDELIVERIES).and_then(|v| v.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = properties
        .iter()
        .filter(|(k, _)| k.as_str() != REDELIVERIES)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let key = message.key().unwrap_or_default();
    let batch = batch_position(&message.message_id.id, message.payload.metadata.num_messages_in_batch);
    let payload: Arc<[u8]> = Arc::from(message.payload.data);
    let tag = state.tag();
    locked(&state.inflight).insert(
        tag,
        InFlight {
            topic: message.topic,
            id: message.message_id.id,
            batch,
            key: key.clone(),
            payload: payload.clone(),
            properties,
            redeliveries,
        },
    );
    Delivery::new(
        state.logical_topic.clone(),
        key,
        payload,
        Arc::new(headers),
        redeliveries,
        tag,
        Arc::new(crate::BrokerAcker(state.clone())),
    )
}

/// Where a message sits in a batched entry of more than one message.
fn batch_position(id: &pulsar::proto::MessageIdData, messages_in_batch: Option<i32>) -> Option<BatchPosition> {
    let size = u32::try_from(messages_in_batch?).ok().filter(|n| *n > 1)?;
    let index = u32::try_from(id.batch_index?).ok().filter(|i| *i < size)?;
    Some(BatchPosition { index, size })
}

async fn apply(consumer: &mut RawConsumer, settle: Settle) {
    let (topic, outcome) = match settle {
        Settle::Ack { topic, id } => {
            let outcome = consumer.ack_with_id(&topic, id).await;
            (topic, outcome)
        }
        Settle::Nack { topic, id } => {
            let outcome = consumer.nack_with_id(&topic, id).await;
            (topic, outcome)
        }
    };
    if let Err(e) = outcome {
        // The broker redelivers what it did not hear settled; consumers are idempotent.
        tracing::debug!(%topic, error = %e, "cannot settle a message");
    }
}

/// The consumer's task. Ends when the subscription is dropped.
pub(crate) async fn run(
    inner: Arc<Inner>,
    spec: ConsumerSpec,
    mut consumer: RawConsumer,
    state: Arc<AckState>,
    tx: mpsc::Sender<Delivery>,
    mut settles: mpsc::UnboundedReceiver<Settle>,
    mut closing: oneshot::Receiver<()>,
) {
    // The client recreates the per-topic consumers it lost with a broker only every 30 s; a
    // consumer missing some of its topics while the broker answers again is reopened here at
    // once instead (a broker restart would otherwise stall work for up to half a minute).
    let mut expected_topics = consumer.topics().len();
    let mut watch = tokio::time::interval(Duration::from_millis(500));
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    'consume: loop {
        // Room in the buffer first, so nothing is taken from the broker that cannot be handed on.
        let permit = loop {
            tokio::select! {
                biased;
                _ = &mut closing => break 'consume,
                Some(settle) = settles.recv() => apply(&mut consumer, settle).await,
                permit = tx.reserve() => match permit {
                    Ok(permit) => break permit,
                    Err(_) => break 'consume,
                },
            }
        };
        let received = loop {
            tokio::select! {
                biased;
                _ = &mut closing => break 'consume,
                Some(settle) = settles.recv() => apply(&mut consumer, settle).await,
                received = consumer.next() => break Some(received),
                _ = watch.tick() => {
                    if consumer.topics().len() < expected_topics
                        && matches!(tokio::time::timeout(Duration::from_millis(500), inner.probe()).await, Ok(Ok(())))
                    {
                        break None;
                    }
                }
            }
        };
        match received {
            Some(Some(Ok(message))) => permit.send(deliver(&state, message)),
            Some(Some(Err(e))) => {
                tracing::warn!(topic = %state.logical_topic, error = %e, "consumer error");
            }
            ended => {
                // The client gave up on this consumer (reconnections exhausted), or lost some
                // of its topics while the broker is back: open it again.
                let lost = consumer.topics().len();
                tracing::warn!(topic = %state.logical_topic, ended = ended.is_some(), topics = lost, expected = expected_topics, "consumer lost its broker; opening it again");
                drop(permit);
                let mut delay = Duration::from_millis(100);
                consumer = loop {
                    tokio::select! {
                        _ = &mut closing => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    match open(&inner, &spec).await {
                        Ok(c) => break c,
                        Err(e) => {
                            tracing::warn!(topic = %state.logical_topic, error = %e, "cannot reopen the consumer");
                            delay = (delay * 2).min(inner.config.max_reconnect_delay);
                        }
                    }
                };
                expected_topics = expected_topics.max(consumer.topics().len());
            }
        }
    }
    // Acks given before the subscription was dropped still reach the broker, ahead of the close.
    while let Ok(settle) = settles.try_recv() {
        apply(&mut consumer, settle).await;
    }
    drop(consumer);
}
