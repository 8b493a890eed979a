//! A subscription: one task owns the Pulsar consumer (of the topic's partitions and of the
//! subscription's retry topic), hands messages to the application through a bounded buffer and
//! sends the acks that come back. It keeps serving acks while the buffer is full, and opens the
//! consumer again if the client gives up on it, loses some of its topics, goes silent on a
//! connection the broker no longer serves it on, or (keyed) finds a partition held by a
//! consumer of its name the client does not know.

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
use super::admin::AuditFailure;
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

/// How long a consumer may receive nothing before it asks the broker whether it is served.
const STALL_CHECK_AFTER: Duration = Duration::from_secs(5);

/// How long the broker has to answer a consumer's question about itself.
const STATS_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the broker's view of an idle consumer (one answer per topic it reads) says the consumer
/// is not being served, or `None` if it is. The broker answers an error for a consumer it does
/// not know; one it knows but holds no permits for while the subscription has a backlog is
/// never sent anything (the client only asks for more after receiving some).
fn stalled(stats: &[pulsar::proto::CommandConsumerStatsResponse]) -> Option<String> {
    stats.iter().find_map(|topic| {
        if let Some(code) = topic.error_code {
            let message = topic.error_message.as_deref().unwrap_or("");
            return Some(format!("the broker answered error {code}: {message}"));
        }
        let backlog = topic.msg_backlog.unwrap_or(0);
        (topic.available_permits == Some(0) && backlog > 0)
            .then(|| format!("the broker holds no permits for it with {backlog} messages in the backlog"))
    })
}

/// How often a keyed subscription's partitions are checked for consumers the client does not
/// know. One statistics request per topic the consumer reads.
const AUDIT_EVERY: Duration = Duration::from_secs(5);

/// Checks a keyed subscription's partitions every [`AUDIT_EVERY`] for a consumer of this
/// process the client does not know it has (a subscribe the broker completed after the client
/// retried it, typically after a slow broker restart). Such a consumer never gets permits; if
/// the Failover subscription makes it a partition's active consumer, that partition stalls
/// while the process's other partitions keep flowing, so no idleness check would notice. The
/// admin API unloads such a partition and the consumer task is asked to reopen. It runs apart
/// from the consumer's task so that deliveries never wait on the admin API, and ends with it.
async fn audit(inner: Arc<Inner>, spec: ConsumerSpec, logical_topic: String, reopen: mpsc::Sender<()>) {
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + AUDIT_EVERY, AUDIT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned = false;
    loop {
        tokio::select! {
            _ = reopen.closed() => return,
            _ = every.tick() => {}
        }
        let cleared = tokio::time::timeout(
            STATS_TIMEOUT,
            inner
                .admin
                .clear_unknown_consumers(&spec.topics, &spec.subscription, &spec.name),
        )
        .await;
        match cleared {
            Ok(Ok(0)) => {}
            Ok(Ok(_)) => {
                // A full channel already holds a request to reopen.
                let _ = reopen.try_send(());
            }
            // Said once as a warning: a role without the permission to read statistics or
            // unload a topic (a tenant admin's) turns the audit off for good.
            Ok(Err(AuditFailure::Refused(e))) if !warned => {
                warned = true;
                tracing::warn!(topic = %logical_topic, error = %e, "cannot check the subscription's consumers through the admin API");
            }
            Ok(Err(AuditFailure::Refused(e) | AuditFailure::Unavailable(e))) => {
                tracing::debug!(topic = %logical_topic, error = %e, "cannot check the subscription's consumers")
            }
            Err(_) => {
                tracing::debug!(topic = %logical_topic, "the admin API did not answer about the subscription's consumers")
            }
        }
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
    // After a broker restart a per-topic consumer can also stay in place but silent: its
    // connection is gone without the client noticing, or the broker holds no permits for it.
    // A consumer idle for a while asks the broker about itself; one the broker does not serve
    // is reopened.
    let mut last_activity = tokio::time::Instant::now();
    // A keyed subscription's partitions are audited for consumers the client does not know
    // (see `audit`); the audit asks for a reopening through this channel. The sender kept here
    // keeps `recv` pending when there is no audit.
    let (reopen_tx, mut reopen) = mpsc::channel(1);
    if spec.kind == SubscriptionKind::Keyed {
        tokio::spawn(audit(
            inner.clone(),
            spec.clone(),
            state.logical_topic.clone(),
            reopen_tx.clone(),
        ));
    }
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
                Some(()) = reopen.recv() => break None,
                _ = watch.tick() => {
                    let lost_topics = consumer.topics().len() < expected_topics;
                    let idle = last_activity.elapsed() >= STALL_CHECK_AFTER;
                    if !lost_topics && !idle {
                        continue;
                    }
                    let broker_answers = matches!(
                        tokio::time::timeout(Duration::from_millis(500), inner.probe()).await,
                        Ok(Ok(()))
                    );
                    if !broker_answers {
                        continue;
                    }
                    if lost_topics {
                        break None;
                    }
                    last_activity = tokio::time::Instant::now();
                    let stats = tokio::time::timeout(STATS_TIMEOUT, consumer.get_stats()).await;
                    let verdict = match stats {
                        Ok(Ok(stats)) => stalled(&stats),
                        Ok(Err(e)) => Some(format!("the broker cannot report on it: {e}")),
                        Err(_) => Some(format!("its connection did not answer within {STATS_TIMEOUT:?}")),
                    };
                    if let Some(reason) = verdict {
                        tracing::warn!(topic = %state.logical_topic, %reason, "idle consumer is not served by the broker");
                        break None;
                    }
                }
            }
        };
        match received {
            Some(Some(Ok(message))) => {
                last_activity = tokio::time::Instant::now();
                permit.send(deliver(&state, message));
            }
            Some(Some(Err(e))) => {
                tracing::warn!(topic = %state.logical_topic, error = %e, "consumer error");
            }
            ended => {
                // The client gave up on this consumer (reconnections exhausted), lost some of
                // its topics while the broker is back, or is not served by the broker: open
                // it again. The old one is closed first, so that an exclusive subscription is
                // free for the new one and a failover one hands its partitions on.
                let lost = consumer.topics().len();
                tracing::warn!(topic = %state.logical_topic, ended = ended.is_some(), topics = lost, expected = expected_topics, "consumer lost its broker; opening it again");
                drop(permit);
                if ended.is_none() {
                    let _ = tokio::time::timeout(STATS_TIMEOUT, consumer.close()).await;
                }
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
                last_activity = tokio::time::Instant::now();
            }
        }
    }
    // Acks given before the subscription was dropped still reach the broker, ahead of the close.
    while let Ok(settle) = settles.try_recv() {
        apply(&mut consumer, settle).await;
    }
    drop(consumer);
}

#[cfg(test)]
mod tests {
    use pulsar::proto::CommandConsumerStatsResponse;

    use super::stalled;

    fn served(permits: u64, backlog: u64) -> CommandConsumerStatsResponse {
        CommandConsumerStatsResponse {
            available_permits: Some(permits),
            msg_backlog: Some(backlog),
            ..Default::default()
        }
    }

    #[test]
    fn a_consumer_with_permits_or_without_backlog_is_served() {
        assert_eq!(stalled(&[served(1000, 0), served(12, 40), served(0, 0)]), None);
        assert_eq!(stalled(&[]), None);
    }

    #[test]
    fn a_consumer_without_permits_over_a_backlog_is_stalled() {
        let reason = stalled(&[served(1000, 3), served(0, 7)]).expect("stalled");
        assert!(reason.contains("no permits") && reason.contains('7'), "{reason}");
    }

    #[test]
    fn a_consumer_the_broker_does_not_know_is_stalled() {
        let unknown = CommandConsumerStatsResponse {
            error_code: Some(pulsar::proto::ServerError::ConsumerNotFound as i32),
            error_message: Some("Consumer 4 not found".into()),
            ..Default::default()
        };
        let reason = stalled(&[served(1000, 0), unknown]).expect("stalled");
        assert!(reason.contains("Consumer 4 not found"), "{reason}");
    }
}
