//! The runner's group commit, through the real runner on the in-memory transport: a batch with
//! several messages per instance is decided in rounds, each round's states are saved in one
//! batch, and a compare-and-set lost to another writer is decided again on a fresh read.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_runtime::{CancellationToken, SystemClock};
use baton_shared_schemas::messages::{StartWorkflow, WorkflowEngineMessage, WorkflowTaskMessage};
use baton_shared_schemas::{ClientId, EncodedMessage, Envelope, HistoryEvent, Payload, Timestamp, Topic, WorkflowId};
use baton_storage::{Expected, HistoryWrite, InMemoryStore, StoredWorkflow, WorkflowStore, WorkflowWrite};
use baton_transport::{InMemoryTransport, MemoryConfig, SubscriptionKind, Transport, outgoing};
use baton_workflow_engine::{EngineConfig, Record, WorkflowState};

const NAME: &str = "Booking";

/// A store that records the size of every batch saved and, for every `every`-th write of a
/// record that exists, lets another writer move that record on first, so the write loses.
struct RacedStore {
    inner: InMemoryStore,
    every: usize,
    writes: AtomicUsize,
    raced: AtomicUsize,
    batches: Mutex<Vec<usize>>,
}

#[async_trait::async_trait]
impl WorkflowStore for RacedStore {
    async fn load(&self, id: WorkflowId) -> baton_storage::Result<Option<StoredWorkflow>> {
        self.inner.load(id).await
    }

    async fn save(&self, write: WorkflowWrite) -> baton_storage::Result<u64> {
        self.inner.save(write).await
    }

    async fn delete(&self, id: WorkflowId, version: u64) -> baton_storage::Result<()> {
        self.inner.delete(id, version).await
    }

    async fn save_all(&self, writes: Vec<WorkflowWrite>) -> Vec<baton_storage::Result<u64>> {
        self.batches.lock().expect("batches").push(writes.len());
        for w in &writes {
            let n = self.writes.fetch_add(1, Ordering::SeqCst);
            if let Expected::Version(_) = w.expected {
                if n % self.every == 0 {
                    // The other writer rewrites the record as it is, at the next version.
                    let stored = self.inner.load(w.id).await.expect("load").expect("exists");
                    self.inner
                        .save(WorkflowWrite::new(
                            w.id,
                            Expected::Version(stored.version),
                            stored.head,
                            HistoryWrite::Append(vec![]),
                        ))
                        .await
                        .expect("foreign write");
                    self.raced.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        self.inner.save_all(writes).await
    }
}

fn engine_message(body: WorkflowEngineMessage) -> EncodedMessage {
    EncodedMessage::encode(&Topic::workflow_engine(NAME), &Envelope::new(body, Timestamp(1_000))).expect("encode")
}

#[tokio::test]
async fn batches_are_decided_in_rounds_saved_together_and_lost_writes_decided_again() {
    let transport = Arc::new(InMemoryTransport::new(MemoryConfig::default()));
    let store = Arc::new(RacedStore {
        inner: InMemoryStore::new(),
        every: 3,
        writes: AtomicUsize::new(0),
        raced: AtomicUsize::new(0),
        batches: Mutex::new(Vec::new()),
    });
    let mut tasks = transport
        .subscribe(Topic::workflow_task(NAME).name(), "workers", SubscriptionKind::Shared)
        .await
        .expect("subscribe");
    // Every instance gets a start and two awaits, published before the engine runs, so its
    // shards take them in large batches holding several messages of one instance.
    let (starter, first, second) = (ClientId::new(), ClientId::new(), ClientId::new());
    let ids: Vec<WorkflowId> = (0..150).map(|_| WorkflowId::new()).collect();
    let mut messages = Vec::new();
    for id in &ids {
        messages.push(engine_message(WorkflowEngineMessage::Start(StartWorkflow {
            workflow_id: *id,
            workflow_name: NAME.into(),
            input: Payload::null(),
            tags: Vec::new(),
            meta: Default::default(),
            reply_to: Some(starter),
        })));
    }
    for client in [first, second] {
        for id in &ids {
            messages.push(engine_message(WorkflowEngineMessage::Await {
                workflow_id: *id,
                client,
            }));
        }
    }
    transport
        .publish_all(messages.into_iter().map(outgoing).collect())
        .await
        .expect("publish");

    let shutdown = CancellationToken::new();
    let config = EngineConfig {
        workflows: vec![NAME.into()],
        shards: 2,
        batch: 64,
        ..EngineConfig::default()
    };
    let engine = tokio::spawn(baton_workflow_engine::run(
        config,
        transport.clone(),
        store.clone(),
        Arc::new(SystemClock),
        shutdown.clone(),
    ));

    // Each instance dispatches one first workflow task. A state reloaded after a lost write
    // republishes the outbox it was stored with (its writer may have crashed before
    // publishing), so a task may arrive twice, but always as the same task.
    let mut dispatched: std::collections::HashMap<WorkflowId, std::collections::HashSet<_>> =
        std::collections::HashMap::new();
    while dispatched.len() < ids.len() {
        let delivery = tokio::time::timeout(Duration::from_secs(20), tasks.next())
            .await
            .expect("workflow tasks within 20 s")
            .expect("delivery");
        let envelope: Envelope<WorkflowTaskMessage> =
            baton_shared_schemas::codec::decode(&delivery.payload).expect("decode");
        let WorkflowTaskMessage::Execute(task) = envelope.body;
        dispatched.entry(task.workflow_id).or_default().insert(task.task_id);
        delivery.ack().await;
    }
    // Every await is applied, once, whatever the lost writes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut done = 0;
        for id in &ids {
            let stored = store.inner.load(*id).await.expect("load").expect("stored");
            let state = WorkflowState::decode(*id, &stored).expect("decode");
            let Record::Running(r) = &state.head.record else {
                panic!("{id} ended")
            };
            let starts = state
                .history
                .iter()
                .filter(|e| matches!(e, HistoryEvent::WorkflowTaskStarted { .. }))
                .count();
            assert_eq!(starts, 1, "{id} started once");
            assert!(r.waiting_clients.len() <= 3, "{id}: {:?}", r.waiting_clients);
            if r.waiting_clients == [starter, first, second] {
                done += 1;
            }
        }
        if done == ids.len() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{done} of {} instances have every await",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    engine.await.expect("join").expect("engine");

    assert!(
        dispatched.values().all(|tasks| tasks.len() == 1),
        "an instance dispatched two different first tasks"
    );
    let batches = store.batches.lock().expect("batches").clone();
    assert!(
        batches.iter().any(|n| *n > 1),
        "some round saved several states together: {batches:?}"
    );
    assert!(
        store.raced.load(Ordering::SeqCst) > 10,
        "the other writer won some writes"
    );
}
