//! The engine's runner: carries out [`apply`]'s decisions with group commit. A shard takes a
//! batch of deliveries from the shared [`ConsumeLoop`] and handles it in rounds of at most one
//! message per instance: the states it does not cache are loaded in one storage round trip,
//! each message is decided, the changed states are saved with their encoded effects (their
//! outbox) in one round trip, a compare-and-set per instance; then the effects of the whole
//! batch are published together, and the loop acknowledges. Cached states are handed to the
//! decision and back, never copied.
//!
//! Both engine topics of every configured workflow are consumed with keyed subscriptions and
//! routed by workflow id to a fixed set of shard tasks, so one instance is handled by one task
//! at a time in this process; across processes the broker's key affinity and the storage
//! compare-and-set keep one writer. Each shard caches the states it owns.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use baton_runtime::{CancellationToken, Clock, Supervisor, Transient};
use baton_shared_schemas::messages::WorkflowEngineMessage;
use baton_shared_schemas::{Cause, Topic, WorkflowId};
use baton_storage::{Expected, IndexEntry, InstanceStatus, StorageError, WorkflowStore, WorkflowWrite};
use baton_telemetry::names;
use baton_transport::{
    ConsumeLoop, Delivery, Handler, Incoming, OutgoingMessage, Subscription, SubscriptionKind, Transport,
    TransportError, subscribe_all,
};
use tokio::sync::mpsc;

pub use baton_config::EngineConfig;

use crate::EngineError;
use crate::state::{OutboxMessage, WorkflowState};
use crate::transition::{Next, TransitionContext, apply, refusal};

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
    /// Whether transitions publish CloudEvents.
    events: bool,
    capacity: usize,
    cache: HashMap<WorkflowId, Cached>,
    /// What the batch being handled publishes once its states are saved, in order.
    pending: Vec<OutboxMessage>,
    /// Instances whose saved outbox is in `pending`.
    in_batch: Vec<WorkflowId>,
}

const CAS_ATTEMPTS: u32 = 16;

#[async_trait::async_trait]
impl Handler<WorkflowEngineMessage> for Shard {
    type Error = EngineError;

    async fn handle_one(&mut self, message: &Incoming<WorkflowEngineMessage>) -> Result<(), EngineError> {
        self.handle(std::slice::from_ref(message))
            .await
            .pop()
            .unwrap_or(Err(EngineError::Contended(message.envelope.body.workflow_id())))
    }

    /// Group commit: decides the batch in rounds of at most one message per instance, saves
    /// each round's states in one storage round trip (a compare-and-set per instance), then
    /// publishes the effects of the whole batch together; the loop acknowledges after that.
    async fn handle(&mut self, batch: &[Incoming<WorkflowEngineMessage>]) -> Vec<Result<(), EngineError>> {
        let mut outcomes: Vec<Option<Result<(), EngineError>>> = batch.iter().map(|_| None).collect();
        let mut attempts = vec![0u32; batch.len()];
        let mut stopped = false;
        while !stopped {
            // An instance's messages are handled in arrival order, one per round.
            let mut taken = HashSet::new();
            let round: Vec<usize> = (0..batch.len())
                .filter(|&i| outcomes[i].is_none())
                .filter(|&i| taken.insert(batch[i].envelope.body.workflow_id()))
                .collect();
            if round.is_empty() {
                break;
            }
            for &i in &round {
                attempts[i] += 1;
                if attempts[i] > CAS_ATTEMPTS {
                    outcomes[i] = Some(Err(EngineError::Contended(batch[i].envelope.body.workflow_id())));
                }
            }
            let round: Vec<usize> = round.into_iter().filter(|&i| outcomes[i].is_none()).collect();
            stopped = self.round(batch, &round, &mut outcomes).await;
        }
        // What is reported is a prefix of the batch ending at its first transient failure or
        // at the first message not handled: the loop redelivers the rest.
        let mut results = Vec::with_capacity(batch.len());
        for outcome in outcomes {
            let Some(result) = outcome else { break };
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

/// A decision of a round waiting for its save.
struct PendingSave {
    index: usize,
    state: Box<WorkflowState>,
    expected: Expected,
    publish: Vec<OutboxMessage>,
    /// The new index entry, when the transition changed it.
    entry: Option<IndexEntry>,
    /// The status before and after, when the transition changed it (for metrics).
    moved: Option<(Option<InstanceStatus>, InstanceStatus, String)>,
}

impl Shard {
    /// Handles one round: loads the states not cached in one round trip, decides each message,
    /// saves the changed states in one round trip and queues their effects. A message whose
    /// compare-and-set lost stays without an outcome and is decided again, on a fresh read, in
    /// the next round. Returns whether a transient failure stopped the batch.
    async fn round(
        &mut self,
        batch: &[Incoming<WorkflowEngineMessage>],
        round: &[usize],
        outcomes: &mut [Option<Result<(), EngineError>>],
    ) -> bool {
        let id_of = |i: usize| batch[i].envelope.body.workflow_id();
        // States read from storage for this round; they are current, unlike cached ones,
        // which another replica may have moved past.
        let mut fresh: HashMap<WorkflowId, Option<Cached>> = HashMap::new();
        let missing: Vec<WorkflowId> = round
            .iter()
            .map(|&i| id_of(i))
            .filter(|id| !self.cache.contains_key(id))
            .collect();
        metrics::counter!(names::CACHE_HITS).increment((round.len() - missing.len()) as u64);
        metrics::counter!(names::CACHE_MISSES).increment(missing.len() as u64);
        if !missing.is_empty() {
            match self.store.load_all(&missing).await {
                Ok(loaded) => {
                    for (id, stored) in missing.iter().zip(loaded) {
                        let cached = match stored {
                            None => None,
                            Some(stored) => match WorkflowState::decode(*id, &stored) {
                                Ok(state) => Some(Cached {
                                    outbox: if state.head.outbox.is_empty() {
                                        Outbox::Published
                                    } else {
                                        Outbox::Unpublished
                                    },
                                    state,
                                    version: stored.version,
                                }),
                                Err(source) => {
                                    if let Some(&i) = round.iter().find(|&&i| id_of(i) == *id) {
                                        outcomes[i] = Some(Err(EngineError::CorruptState { id: *id, source }));
                                    }
                                    continue;
                                }
                            },
                        };
                        fresh.insert(*id, cached);
                    }
                }
                Err(e) => {
                    if let Some(&first) = round.first() {
                        outcomes[first] = Some(Err(e.into()));
                    }
                    return true;
                }
            }
        }
        let now = self.clock.now();
        let mut ctx = TransitionContext {
            now,
            retention: self.retention,
            fired_at: None,
        };
        let mut saves: Vec<PendingSave> = Vec::new();
        for &i in round {
            if outcomes[i].is_some() {
                continue;
            }
            let id = id_of(i);
            let envelope = &batch[i].envelope;
            if let Some(reason) = refusal(&envelope.body) {
                outcomes[i] = Some(Err(EngineError::Refused(reason)));
                continue;
            }
            let (mut cached, is_fresh) = match fresh.remove(&id) {
                Some(loaded) => (loaded, true),
                None => (self.cache.remove(&id), false),
            };
            if let Some(c) = cached.take_if(|c| c.outbox == Outbox::Unpublished) {
                match self.settle_outbox(id, c).await {
                    Ok(settled) => cached = settled,
                    Err(e) => {
                        let transient = e.is_transient();
                        outcomes[i] = Some(Err(e));
                        if transient {
                            return true;
                        }
                        continue;
                    }
                }
                if cached.is_none() {
                    // Another writer moved on: decide again on a fresh read.
                    continue;
                }
            }
            // A state saved earlier in this batch keeps its outbox until the batch is
            // published: the next save carries it along.
            let (state, expected, unpublished, outbox) = match cached {
                Some(mut c) => {
                    let unpublished = match c.outbox {
                        Outbox::InBatch => std::mem::take(&mut c.state.head.outbox),
                        Outbox::Published | Outbox::Unpublished => Vec::new(),
                    };
                    (Some(c.state), Expected::Version(c.version), unpublished, c.outbox)
                }
                None => (None, Expected::Absent, Vec::new(), Outbox::Published),
            };
            let entry_before = state.as_ref().map(WorkflowState::index_entry);
            let result_service = if self.events {
                task_service(state.as_ref(), &envelope.body)
            } else {
                None
            };
            // The engine subscribes to its workflows' engine topics only, so the name is there.
            let workflow = Topic::workflow_of(&batch[i].topic).unwrap_or_default();
            ctx.fired_at = batch[i].fired_at;
            let decision = apply(state, workflow, envelope, &ctx);
            if let Some(early) = decision.early {
                metrics::counter!(names::TIMERS_EARLY, "consumer" => "engine").increment(1);
                tracing::warn!(workflow = %id, kind = envelope.body.kind(), early_ms = early.as_millis() as u64, "a timer fired before its due time by this engine's clock (the timer service's clock runs ahead); held until then");
            }
            tracing::debug!(workflow = %id, kind = envelope.body.kind(), note = decision.note, "transition");
            let publish = match Cause::of(envelope, now).encode_all(&decision.effects) {
                Ok(publish) => publish,
                Err(e) => {
                    outcomes[i] = Some(Err(EngineError::Encode(e)));
                    continue;
                }
            };
            match decision.next {
                Next::Keep(state) => {
                    let version = match expected {
                        Expected::Version(v) => Some(v),
                        Expected::Absent => None,
                    };
                    if let Some(mut state) = state {
                        state.head.outbox = unpublished;
                        if let Some(version) = version {
                            self.remember(
                                id,
                                Cached {
                                    state: *state,
                                    version,
                                    outbox,
                                },
                            );
                        }
                    }
                    // A decision to change nothing made on a cached state is checked against
                    // storage first: if the key moved to another replica and back, the cache
                    // may predate what this message answers, and dropping it would lose it.
                    // Writes need no such check: the compare-and-set catches them.
                    if !is_fresh {
                        match self.store.version(id).await {
                            Ok(stored) if stored == version => {}
                            Ok(_) => {
                                self.cache.remove(&id);
                                continue;
                            }
                            Err(e) => {
                                outcomes[i] = Some(Err(e.into()));
                                return true;
                            }
                        }
                    }
                    self.pending.extend(publish);
                    outcomes[i] = Some(Ok(()));
                }
                Next::Write(mut state) => {
                    let mut publish = publish;
                    if self.events {
                        let after = state.index_entry();
                        publish.extend(crate::events::events(&crate::events::Transition {
                            id,
                            cause: envelope.message_id,
                            now,
                            before: entry_before.as_ref(),
                            after: &after,
                            state: &state,
                            message: &envelope.body,
                            result_service: result_service.as_deref(),
                            effects: &decision.effects,
                        }));
                    }
                    state.head.outbox = unpublished;
                    state.head.outbox.extend(publish.iter().cloned());
                    let entry = Some(state.index_entry()).filter(|e| entry_before.as_ref() != Some(e));
                    let before = entry_before.as_ref().map(|e| e.status);
                    let moved = entry
                        .as_ref()
                        .filter(|e| before != Some(e.status))
                        .map(|e| (before, e.status, e.workflow.clone()));
                    saves.push(PendingSave {
                        index: i,
                        state,
                        expected,
                        publish,
                        entry,
                        moved,
                    });
                }
                Next::Delete => {
                    if !unpublished.is_empty() {
                        // The record goes, and with it the outbox saved earlier in this
                        // batch: publish that first.
                        self.pending.extend(unpublished);
                        if let Err(e) = self.flush().await {
                            outcomes[i] = Some(Err(e));
                            return true;
                        }
                    }
                    if let Expected::Version(version) = expected {
                        match self.store.delete(id, version).await {
                            Ok(()) => {}
                            Err(StorageError::Conflict { .. }) => continue,
                            Err(e) => {
                                outcomes[i] = Some(Err(e.into()));
                                return true;
                            }
                        }
                    }
                    self.pending.extend(publish);
                    outcomes[i] = Some(Ok(()));
                }
            }
        }
        self.save_round(saves, outcomes).await
    }

    /// Saves a round's states in one round trip. A save that lost its compare-and-set leaves
    /// its message without an outcome, so the next round decides it again on a fresh read.
    async fn save_round(&mut self, saves: Vec<PendingSave>, outcomes: &mut [Option<Result<(), EngineError>>]) -> bool {
        if saves.is_empty() {
            return false;
        }
        let mut writes = Vec::with_capacity(saves.len());
        let mut decided = Vec::with_capacity(saves.len());
        for mut save in saves {
            match save.state.encode_for_save() {
                Ok((head, history)) => {
                    writes.push(WorkflowWrite {
                        id: save.state.id,
                        expected: save.expected,
                        head,
                        history,
                        index: save.entry.take(),
                    });
                    decided.push(save);
                }
                Err(e) => outcomes[save.index] = Some(Err(EngineError::Encode(e))),
            }
        }
        let saved = self.store.save_all(writes).await;
        let mut stopped = false;
        for (save, result) in decided.into_iter().zip(saved) {
            let PendingSave {
                index,
                mut state,
                publish,
                moved,
                ..
            } = save;
            let id = state.id;
            match result {
                Ok(version) => {
                    if let Some((before, after, workflow)) = moved {
                        record_status_change(before, after, workflow);
                    }
                    state.mark_saved();
                    state.release_ended_history();
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
                    outcomes[index] = Some(Ok(()));
                }
                Err(StorageError::Conflict { .. }) => {
                    metrics::counter!(names::CAS_CONFLICTS).increment(1);
                    tracing::debug!(workflow = %id, "lost compare-and-set; reloading");
                }
                Err(e) => {
                    stopped = true;
                    outcomes[index] = Some(Err(e.into()));
                }
            }
        }
        stopped
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

    async fn publish(&self, messages: Vec<OutboxMessage>) -> Result<(), EngineError> {
        if messages.is_empty() {
            return Ok(());
        }
        let batch = messages
            .into_iter()
            .map(|m| (m.topic, OutgoingMessage::new(m.key, m.bytes)))
            .collect();
        self.transport.publish_all(batch).await?;
        Ok(())
    }

    /// Publishes what the batch so far emitted. If that fails, the states saved by the batch
    /// count as loaded from storage: their outboxes are republished before their next
    /// transition.
    async fn flush(&mut self) -> Result<(), EngineError> {
        let pending = std::mem::take(&mut self.pending);
        let published = self.publish(pending).await;
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
        published
    }

    /// Republishes the outbox of a state loaded from storage (its writer may have crashed before
    /// publishing it), then stores the state with an empty outbox so it is published once, not
    /// on every later load. `None` when another writer moved the record on meanwhile.
    async fn settle_outbox(&mut self, id: WorkflowId, mut cached: Cached) -> Result<Option<Cached>, EngineError> {
        self.publish(std::mem::take(&mut cached.state.head.outbox)).await?;
        let (head, history) = cached.state.encode_for_save().map_err(EngineError::Encode)?;
        match self
            .store
            .save(WorkflowWrite::new(id, Expected::Version(cached.version), head, history))
            .await
        {
            Ok(version) => {
                cached.state.mark_saved();
                Ok(Some(Cached {
                    state: cached.state,
                    version,
                    outbox: Outbox::Published,
                }))
            }
            // Another writer moved on; its own outbox is its own to publish.
            Err(StorageError::Conflict { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// The service of the task a result message is about, from the state before the result.
fn task_service(state: Option<&WorkflowState>, message: &WorkflowEngineMessage) -> Option<String> {
    let task_id = match message {
        WorkflowEngineMessage::TaskCompleted { task_id, .. } | WorkflowEngineMessage::TaskFailed { task_id, .. } => {
            *task_id
        }
        _ => return None,
    };
    match &state?.head.record {
        crate::state::Record::Running(r) => match &r.pending.get(&baton_shared_schemas::CommandId(task_id.0))?.kind {
            crate::state::PendingKind::Task { service } => Some(service.clone()),
            _ => None,
        },
        crate::state::Record::Completed(_) => None,
    }
}

/// Counts an instance that started, ended or got stuck.
fn record_status_change(before: Option<InstanceStatus>, after: InstanceStatus, workflow: String) {
    match after {
        InstanceStatus::Running if before.is_none() => {
            metrics::counter!(names::WORKFLOWS_STARTED, "workflow" => workflow).increment(1);
        }
        InstanceStatus::Stuck => {
            if before.is_none() {
                metrics::counter!(names::WORKFLOWS_STARTED, "workflow" => workflow.clone()).increment(1);
            }
            metrics::counter!(names::WORKFLOW_TASK_FAILURES, "workflow" => workflow).increment(1);
        }
        InstanceStatus::Completed | InstanceStatus::Failed | InstanceStatus::Cancelled => {
            if before.is_none() {
                metrics::counter!(names::WORKFLOWS_STARTED, "workflow" => workflow.clone()).increment(1);
            }
            metrics::counter!(names::WORKFLOWS_ENDED, "workflow" => workflow, "status" => after.as_str()).increment(1);
        }
        InstanceStatus::Running => {}
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
    let consume = ConsumeLoop::new("workflow engine message", shutdown.clone())
        .batch(config.batch)
        .clock(clock.clone());
    for index in 0..shard_count {
        let (tx, rx) = mpsc::channel::<Delivery>(256);
        senders.push(tx);
        let mut shard = Shard {
            transport: transport.clone(),
            store: store.clone(),
            clock: clock.clone(),
            retention: config.retention,
            events: config.events,
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
