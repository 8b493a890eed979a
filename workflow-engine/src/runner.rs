//! The engine's runner: carries out [`apply`]'s decisions. Per message it loads the state,
//! applies, saves the encoded effects with the state (its outbox) with a compare-and-set,
//! publishes them, and then the shared [`ConsumeLoop`] acknowledges.
//!
//! Both engine topics of every configured workflow are consumed with keyed subscriptions and
//! routed by workflow id to a fixed set of shard tasks, so one instance is handled by one task
//! at a time in this process; across processes the broker's key affinity and the storage
//! compare-and-set keep one writer. Each shard caches the states it owns.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use baton_runtime::{CancellationToken, Clock, Supervisor, Transient};
use baton_shared_schemas::messages::WorkflowEngineMessage;
use baton_shared_schemas::{Cause, Envelope, Topic, WorkflowId};
use baton_storage::{Expected, StorageError, WorkflowStore};
use baton_transport::{
    ConsumeLoop, Delivery, Handler, Incoming, OutgoingMessage, Subscription, SubscriptionKind, Transport,
    TransportError, subscribe_all,
};
use tokio::sync::mpsc;

pub use baton_config::EngineConfig;

use crate::EngineError;
use crate::state::{OutboxMessage, WorkflowState};
use crate::transition::{Next, TransitionContext, apply};

/// Subscription name the engine consumes with.
pub const SUBSCRIPTION: &str = "workflow-engine";

/// Whether the outbox stored with a cached state is published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outbox {
    /// Published (or empty).
    Published,
    /// Loaded from storage: its writer may have crashed before publishing it, so it is
    /// republished before the next transition.
    Unpublished,
    /// Saved by the batch being handled: published when the batch's effects are.
    InBatch,
}

struct Cached {
    state: WorkflowState,
    version: u64,
    outbox: Outbox,
}

struct Shard {
    transport: Arc<dyn Transport>,
    store: Arc<dyn WorkflowStore>,
    clock: Arc<dyn Clock>,
    retention: Duration,
    capacity: usize,
    cache: HashMap<WorkflowId, Cached>,
    /// What the batch being handled publishes once its states are saved, in order.
    pending: Vec<OutboxMessage>,
    /// Instances whose saved outbox is in `pending`.
    in_batch: Vec<WorkflowId>,
}

const CAS_ATTEMPTS: usize = 16;

#[async_trait::async_trait]
impl Handler<WorkflowEngineMessage> for Shard {
    type Error = EngineError;

    async fn handle_one(&mut self, message: &Incoming<WorkflowEngineMessage>) -> Result<(), EngineError> {
        let result = self.process(&message.envelope).await;
        self.flush().await?;
        result
    }

    /// Decides and saves each message in order, then publishes the effects of them all
    /// together; the loop acknowledges them after that.
    async fn handle(&mut self, batch: &[Incoming<WorkflowEngineMessage>]) -> Vec<Result<(), EngineError>> {
        let mut results = Vec::with_capacity(batch.len());
        for message in batch {
            let result = self.process(&message.envelope).await;
            let transient = matches!(&result, Err(e) if e.is_transient());
            results.push(result);
            if transient {
                break;
            }
        }
        if let Err(e) = self.flush().await {
            // Nothing of this batch may be acknowledged before its effects are out; the saved
            // states keep them in their outboxes, and handling the messages again republishes
            // them (the transitions themselves find the messages already applied).
            let failed = results.iter().position(Result::is_ok).unwrap_or(results.len());
            results.truncate(failed);
            results.push(Err(e));
        }
        results
    }
}

impl Shard {
    async fn load(&mut self, id: WorkflowId) -> Result<Option<&mut Cached>, EngineError> {
        if !self.cache.contains_key(&id) {
            let Some(stored) = self.store.load(id).await? else {
                return Ok(None);
            };
            let state =
                WorkflowState::decode(id, &stored).map_err(|source| EngineError::CorruptState { id, source })?;
            let outbox = if state.head.outbox.is_empty() {
                Outbox::Published
            } else {
                Outbox::Unpublished
            };
            self.remember(
                id,
                Cached {
                    state,
                    version: stored.version,
                    outbox,
                },
            );
        }
        Ok(self.cache.get_mut(&id))
    }

    /// Caches a state, evicting another when the shard's cache is full. An evicted state is
    /// reloaded from storage when next needed.
    fn remember(&mut self, id: WorkflowId, cached: Cached) {
        if self.cache.len() >= self.capacity && !self.cache.contains_key(&id) {
            if let Some(evict) = self.cache.keys().next().copied() {
                self.cache.remove(&evict);
            }
        }
        self.cache.insert(id, cached);
    }

    async fn publish(&self, messages: &[OutboxMessage]) -> Result<(), EngineError> {
        if messages.is_empty() {
            return Ok(());
        }
        let batch = messages
            .iter()
            .map(|m| (m.topic.clone(), OutgoingMessage::new(m.key.clone(), m.bytes.clone())))
            .collect();
        self.transport.publish_all(batch).await?;
        Ok(())
    }

    /// Publishes what the batch so far emitted. If that fails, the states saved by the batch
    /// count as loaded from storage: their outboxes are republished before their next
    /// transition.
    async fn flush(&mut self) -> Result<(), EngineError> {
        let published = self.publish(&self.pending).await;
        let outbox = if published.is_ok() {
            Outbox::Published
        } else {
            Outbox::Unpublished
        };
        for id in self.in_batch.drain(..) {
            if let Some(cached) = self.cache.get_mut(&id) {
                if cached.outbox == Outbox::InBatch {
                    cached.outbox = outbox;
                }
            }
        }
        self.pending.clear();
        published
    }

    /// Republishes the outbox of a state loaded from storage (its writer may have crashed before
    /// publishing it), then stores the state with an empty outbox so it is published once, not
    /// on every later load.
    async fn settle_outbox(&mut self, id: WorkflowId) -> Result<(), EngineError> {
        let Some(cached) = self.cache.get(&id) else {
            return Ok(());
        };
        let (outbox, version) = (cached.state.head.outbox.clone(), cached.version);
        self.publish(&outbox).await?;
        let mut settled = cached.state.clone();
        settled.head.outbox.clear();
        let (head, history) = settled.encode_for_save().map_err(EngineError::Encode)?;
        match self.store.save(id, Expected::Version(version), head, history).await {
            Ok(new_version) => {
                settled.mark_saved();
                self.remember(
                    id,
                    Cached {
                        state: settled,
                        version: new_version,
                        outbox: Outbox::Published,
                    },
                );
            }
            // Another writer moved on; its own outbox is its own to publish.
            Err(StorageError::Conflict { .. }) => {
                self.cache.remove(&id);
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Applies one message: decides on the current state, saves the next state with the
    /// encoded effects as its outbox (a compare-and-set, retried on conflict) and adds the
    /// effects to what the batch publishes.
    async fn process(&mut self, envelope: &Envelope<WorkflowEngineMessage>) -> Result<(), EngineError> {
        let id = envelope.body.workflow_id();
        // Whether the state used below was read from storage while handling this message (as
        // opposed to cached from earlier, when another replica may have written since).
        let mut fresh = false;
        for _ in 0..CAS_ATTEMPTS {
            if !fresh && !self.cache.contains_key(&id) {
                fresh = true;
            }
            let (state, expected, unpublished) = match self.load(id).await? {
                Some(cached) => {
                    if cached.outbox == Outbox::Unpublished {
                        self.settle_outbox(id).await?;
                    }
                    let cached = self.cache.get(&id).ok_or(EngineError::Contended(id))?;
                    // A state saved earlier in this batch keeps its outbox until the batch is
                    // published: the next save carries it along.
                    let unpublished = match cached.outbox {
                        Outbox::InBatch => cached.state.head.outbox.clone(),
                        Outbox::Published | Outbox::Unpublished => Vec::new(),
                    };
                    (
                        Some(cached.state.clone()),
                        Expected::Version(cached.version),
                        unpublished,
                    )
                }
                None => (None, Expected::Absent, Vec::new()),
            };
            let ctx = TransitionContext {
                now: self.clock.now(),
                retention: self.retention,
            };
            let decision = apply(state, envelope, &ctx);
            tracing::debug!(workflow = %id, kind = envelope.body.kind(), note = decision.note, "transition");
            let publish = Cause::of(envelope, ctx.now)
                .encode_all(&decision.effects)
                .map_err(EngineError::Encode)?;
            match decision.next {
                // A decision to change nothing (a duplicate, a stale result) made on a cached
                // state is checked against storage first: if the key moved to another replica
                // and back, the cache may predate what this message answers, and dropping it
                // would lose it. Writes need no such check: the compare-and-set catches them.
                Next::Keep if !fresh => {
                    fresh = true;
                    let stored = self.store.version(id).await?;
                    let cached = self.cache.get(&id).map(|c| c.version);
                    if stored != cached {
                        self.cache.remove(&id);
                    }
                }
                Next::Keep => {
                    self.pending.extend(publish);
                    return Ok(());
                }
                Next::Write(mut state) => {
                    state.head.outbox = unpublished;
                    state.head.outbox.extend(publish.iter().cloned());
                    let (head, history) = state.encode_for_save().map_err(EngineError::Encode)?;
                    match self.store.save(id, expected, head, history).await {
                        Ok(version) => {
                            state.mark_saved();
                            self.remember(
                                id,
                                Cached {
                                    state: *state,
                                    version,
                                    outbox: Outbox::InBatch,
                                },
                            );
                            self.in_batch.push(id);
                            self.pending.extend(publish);
                            return Ok(());
                        }
                        Err(StorageError::Conflict { .. }) => {
                            tracing::debug!(workflow = %id, "lost compare-and-set; reloading");
                            self.cache.remove(&id);
                        }
                        Err(e) => {
                            self.cache.remove(&id);
                            return Err(e.into());
                        }
                    }
                }
                Next::Delete => {
                    if !unpublished.is_empty() {
                        // The record goes, and with it the outbox saved earlier in this batch:
                        // publish that first.
                        self.flush().await?;
                    }
                    if let Expected::Version(version) = expected {
                        match self.store.delete(id, version).await {
                            Ok(()) => {}
                            Err(StorageError::Conflict { .. }) => {
                                self.cache.remove(&id);
                                continue;
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                    self.cache.remove(&id);
                    self.pending.extend(publish);
                    return Ok(());
                }
            }
        }
        Err(EngineError::Contended(id))
    }
}

fn shard_of(key: &str, shards: usize) -> usize {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % shards as u64) as usize
}

/// Routes one subscription's deliveries to the shards by key.
async fn route(
    mut subscription: Box<dyn Subscription>,
    shards: Vec<mpsc::Sender<Delivery>>,
    shutdown: CancellationToken,
) -> Result<(), EngineError> {
    loop {
        let delivery = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            next = subscription.next() => match next {
                Ok(d) => d,
                Err(TransportError::Closed) => return Ok(()),
                Err(e) => return Err(e.into()),
            },
        };
        let shard = shard_of(&delivery.key, shards.len());
        if shards[shard].send(delivery).await.is_err() {
            return Ok(());
        }
    }
}

/// Runs the engine until `shutdown` is cancelled; then stops consuming and returns. Messages
/// taken but not yet handled are left unacknowledged and redelivered.
pub async fn run(
    config: EngineConfig,
    transport: Arc<dyn Transport>,
    store: Arc<dyn WorkflowStore>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> Result<(), EngineError> {
    let shard_count = config.shards.max(1);
    let mut senders = Vec::with_capacity(shard_count);
    let mut supervisor = Supervisor::new(shutdown.clone());
    let consume = ConsumeLoop::new("workflow engine message", shutdown.clone()).batch(config.batch);
    for index in 0..shard_count {
        let (tx, rx) = mpsc::channel::<Delivery>(256);
        senders.push(tx);
        let mut shard = Shard {
            transport: transport.clone(),
            store: store.clone(),
            clock: clock.clone(),
            retention: config.retention,
            capacity: config.cache_per_shard.max(1),
            cache: HashMap::new(),
            pending: Vec::new(),
            in_batch: Vec::new(),
        };
        let consume = consume.clone();
        supervisor.spawn(format!("engine shard {index}"), async move {
            consume.run(rx, &mut shard).await
        });
    }
    let topics: Vec<_> = config
        .workflows
        .iter()
        .flat_map(|workflow| [Topic::workflow_engine(workflow), Topic::workflow_cmd(workflow)])
        .collect();
    let subscriptions = subscribe_all(transport.as_ref(), &topics, SUBSCRIPTION, SubscriptionKind::Keyed).await?;
    for (topic, subscription) in topics.iter().zip(subscriptions) {
        supervisor.spawn(
            format!("engine router of {}", topic.name()),
            route(subscription, senders.clone(), shutdown.clone()),
        );
    }
    drop(senders);
    Ok(supervisor.join().await?)
}
