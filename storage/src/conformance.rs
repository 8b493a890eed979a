//! The storage contract as executable checks, run by every backend through
//! [`storage_conformance_tests!`](crate::storage_conformance_tests). Each check uses fresh ids and
//! keys, so one server can serve all of them.

use std::time::Duration;

use baton_shared_schemas::{MessageId, TimerId, Timestamp, WorkflowId};

use crate::{
    DeadLetter, DeadLetterStore, Expected, HistoryWrite, IndexEntry, InstanceIndex, InstanceQuery, InstanceStatus,
    KeySetStore, StorageError, StoredTimer, TimerStore, WorkflowStore, WorkflowWrite,
};

fn entries(items: &[&str]) -> Vec<Vec<u8>> {
    items.iter().map(|s| s.as_bytes().to_vec()).collect()
}

/// Create, compare-and-set with appends and replaces, conflicts and deletes.
pub async fn workflow_compare_and_set(store: &dyn WorkflowStore) {
    let id = WorkflowId::new();
    assert_eq!(store.load(id).await.expect("load"), None);
    let v1 = store
        .save(WorkflowWrite::new(
            id,
            Expected::Absent,
            b"h1".to_vec(),
            HistoryWrite::Append(entries(&["a"])),
        ))
        .await
        .expect("create");
    assert!(matches!(
        store
            .save(WorkflowWrite::new(
                id,
                Expected::Absent,
                b"again".to_vec(),
                HistoryWrite::Append(vec![])
            ))
            .await,
        Err(StorageError::Conflict { .. })
    ));
    let v2 = store
        .save(WorkflowWrite::new(
            id,
            Expected::Version(v1),
            b"h2".to_vec(),
            HistoryWrite::Append(entries(&["b", "c"])),
        ))
        .await
        .expect("cas");
    assert!(v2 > v1);
    assert!(matches!(
        store
            .save(WorkflowWrite::new(
                id,
                Expected::Version(v1),
                b"stale".to_vec(),
                HistoryWrite::Append(entries(&["x"]))
            ))
            .await,
        Err(StorageError::Conflict { .. })
    ));
    let loaded = store.load(id).await.expect("load").expect("exists");
    assert_eq!((loaded.version, loaded.head.as_slice()), (v2, &b"h2"[..]));
    assert_eq!(loaded.history, entries(&["a", "b", "c"]), "a lost CAS must not append");
    assert_eq!(store.version(id).await.expect("version"), Some(v2));
    assert_eq!(store.version(WorkflowId::new()).await.expect("version"), None);
    let v3 = store
        .save(WorkflowWrite::new(
            id,
            Expected::Version(v2),
            b"h3".to_vec(),
            HistoryWrite::Replace(entries(&["z"])),
        ))
        .await
        .expect("replace");
    assert_eq!(
        store.load(id).await.expect("load").expect("exists").history,
        entries(&["z"])
    );
    assert!(matches!(store.delete(id, v2).await, Err(StorageError::Conflict { .. })));
    store.delete(id, v3).await.expect("delete");
    assert_eq!(store.load(id).await.expect("load"), None);
    store.delete(id, v3).await.expect("deleting a missing record succeeds");
    assert!(matches!(
        store
            .save(WorkflowWrite::new(
                id,
                Expected::Version(v3),
                b"h".to_vec(),
                HistoryWrite::Append(vec![])
            ))
            .await,
        Err(StorageError::Conflict { .. })
    ));
}

/// Several writers that all read one version: exactly one save wins, the others conflict.
pub async fn workflow_cas_has_one_winner(store: &dyn WorkflowStore) {
    let id = WorkflowId::new();
    let v = store
        .save(WorkflowWrite::new(
            id,
            Expected::Absent,
            b"h".to_vec(),
            HistoryWrite::Append(vec![]),
        ))
        .await
        .expect("create");
    let writes = (0..8).map(|i| {
        store.save(WorkflowWrite::new(
            id,
            Expected::Version(v),
            vec![i],
            HistoryWrite::Append(vec![vec![i]]),
        ))
    });
    let results = in_turn(writes).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    assert_eq!(store.load(id).await.expect("load").expect("exists").history.len(), 1);
}

async fn in_turn<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut out = Vec::new();
    for f in futures {
        out.push(f.await);
    }
    out
}

/// Key sets: idempotent add/remove and complete, stable paging.
pub async fn key_sets_page_through_members(store: &dyn KeySetStore) {
    let key = format!("tag:{}", MessageId::new());
    for i in 0..25 {
        store.add(&key, &format!("member-{i:02}")).await.expect("add");
    }
    store.add(&key, "member-03").await.expect("idempotent add");
    store.remove(&key, "member-04").await.expect("remove");
    store.remove(&key, "absent").await.expect("idempotent remove");
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.page(&key, cursor.as_deref(), 10).await.expect("page");
        assert!(page.members.len() <= 10);
        all.extend(page.members);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    all.sort();
    let expected: Vec<String> = (0..25).filter(|i| *i != 4).map(|i| format!("member-{i:02}")).collect();
    assert_eq!(all, expected);
    assert!(
        store
            .page("no-such-key", None, 10)
            .await
            .expect("page")
            .members
            .is_empty()
    );
}

/// Timers: only due ones are claimed, a lease hides a claimed timer until it expires, complete
/// and cancel remove, adding twice keeps one.
pub async fn timers_claim_with_lease(store: &dyn TimerStore) {
    // Far-future base so timers of other checks sharing the backend never interfere.
    let base = Timestamp(4_000_000_000_000 + (MessageId::new().0.as_u128() % 1_000_000_000) as u64 * 10_000);
    let early = StoredTimer {
        id: TimerId::new(),
        due: base,
        payload: b"early".to_vec(),
    };
    let late = StoredTimer {
        id: TimerId::new(),
        due: Timestamp(base.0 + 1_000),
        payload: b"late".to_vec(),
    };
    assert!(store.add(early.clone()).await.expect("add"));
    assert!(
        !store
            .add(StoredTimer {
                payload: b"other".to_vec(),
                ..early.clone()
            })
            .await
            .expect("add again")
    );
    assert!(store.add(late.clone()).await.expect("add"));

    let before = store
        .claim_due(Timestamp(base.0 - 1), Duration::from_secs(5), 100)
        .await
        .expect("claim");
    assert!(
        before.iter().all(|t| t.id != early.id && t.id != late.id),
        "nothing is due yet"
    );

    let claimed = store
        .claim_due(base, Duration::from_millis(500), 100)
        .await
        .expect("claim");
    let mine: Vec<_> = claimed.iter().filter(|t| t.id == early.id || t.id == late.id).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0], &early, "the first stored payload is kept");
    let again = store
        .claim_due(Timestamp(base.0 + 100), Duration::from_millis(500), 100)
        .await
        .expect("claim");
    assert!(
        again.iter().all(|t| t.id != early.id),
        "a leased timer is not claimed twice"
    );

    // The claimer "died": after the lease the timer is claimable again.
    let retaken = store
        .claim_due(Timestamp(base.0 + 1_000), Duration::from_secs(5), 100)
        .await
        .expect("claim");
    let ids: Vec<TimerId> = retaken.iter().map(|t| t.id).collect();
    assert!(ids.contains(&early.id) && ids.contains(&late.id), "{ids:?}");
    store.complete(early.id).await.expect("complete");
    assert!(store.cancel(late.id).await.expect("cancel"));
    assert!(!store.cancel(late.id).await.expect("cancel again"));
    let after = store
        .claim_due(Timestamp(base.0 + 100_000), Duration::from_secs(5), 100)
        .await
        .expect("claim");
    assert!(after.iter().all(|t| t.id != early.id && t.id != late.id));
}

/// `next_due` reports the earliest claimable instant.
pub async fn timers_report_next_due(store: &dyn TimerStore) {
    let t = StoredTimer {
        id: TimerId::new(),
        due: Timestamp(1_000),
        payload: vec![],
    };
    store.add(t.clone()).await.expect("add");
    let next = store.next_due().await.expect("next").expect("some timer");
    assert!(next <= t.due);
    store.cancel(t.id).await.expect("cancel");
}

/// `pending` lists stored timers, the next claimable first, with their due time and payload;
/// a completed one is not listed.
pub async fn timers_are_listed_while_pending(store: &dyn TimerStore) {
    let first = StoredTimer {
        id: TimerId::new(),
        due: Timestamp(10),
        payload: b"first".to_vec(),
    };
    let second = StoredTimer {
        id: TimerId::new(),
        due: Timestamp(20),
        payload: b"second".to_vec(),
    };
    store.add(second.clone()).await.expect("add");
    store.add(first.clone()).await.expect("add");
    let mine = |listed: Vec<StoredTimer>| -> Vec<StoredTimer> {
        listed
            .into_iter()
            .filter(|t| t.id == first.id || t.id == second.id)
            .collect()
    };
    let listed = mine(store.pending(usize::MAX).await.expect("pending"));
    assert_eq!(listed, vec![first.clone(), second.clone()]);
    assert!(store.count().await.expect("count") >= 2);
    assert!(store.pending(0).await.expect("none").is_empty());
    store.complete(first.id).await.expect("complete");
    assert_eq!(
        mine(store.pending(usize::MAX).await.expect("pending")),
        vec![second.clone()]
    );
    store.cancel(second.id).await.expect("cancel");
    assert!(mine(store.pending(usize::MAX).await.expect("pending")).is_empty());
}

/// `add_all` stores each timer as `add` does (one already stored is kept as it is) and
/// `complete_all` removes each.
pub async fn timers_are_stored_and_completed_in_batches(store: &dyn TimerStore) {
    let timers: Vec<StoredTimer> = (0..50u64)
        .map(|i| StoredTimer {
            id: TimerId::new(),
            due: Timestamp(100 + i),
            payload: format!("timer {i}").into_bytes(),
        })
        .collect();
    store.add(timers[0].clone()).await.expect("add one first");
    let mut again = timers.clone();
    again[0].payload = b"other".to_vec();
    store.add_all(again.clone()).await.expect("add all");
    store.add_all(again).await.expect("add all again");
    let ids: std::collections::HashSet<TimerId> = timers.iter().map(|t| t.id).collect();
    let mine =
        |listed: Vec<StoredTimer>| -> Vec<StoredTimer> { listed.into_iter().filter(|t| ids.contains(&t.id)).collect() };
    assert_eq!(
        mine(store.pending(usize::MAX).await.expect("pending")),
        timers,
        "each stored once, the first payload kept"
    );
    let fired: Vec<TimerId> = timers[..40].iter().map(|t| t.id).collect();
    store.complete_all(&fired).await.expect("complete all");
    store.complete_all(&[]).await.expect("complete none");
    assert_eq!(
        mine(store.pending(usize::MAX).await.expect("pending")),
        timers[40..].to_vec()
    );
    for t in &timers[40..] {
        store.cancel(t.id).await.expect("cancel");
    }
}

/// A batch of saves keeps each record's compare-and-set: a conflict fails only its own write,
/// and a batch load answers each record in order.
pub async fn workflow_batches_keep_each_compare_and_set(store: &dyn WorkflowStore) {
    let (existing, fresh, stale, missing) = (
        WorkflowId::new(),
        WorkflowId::new(),
        WorkflowId::new(),
        WorkflowId::new(),
    );
    let v1 = store
        .save(WorkflowWrite::new(
            existing,
            Expected::Absent,
            b"e1".to_vec(),
            HistoryWrite::Append(entries(&["a"])),
        ))
        .await
        .expect("create");
    let write = |id, expected, head: &[u8], history| WorkflowWrite::new(id, expected, head.to_vec(), history);
    let saved = store
        .save_all(vec![
            write(
                existing,
                Expected::Version(v1),
                b"e2",
                HistoryWrite::Append(entries(&["b"])),
            ),
            write(
                fresh,
                Expected::Absent,
                b"f1",
                HistoryWrite::Replace(entries(&["x", "y"])),
            ),
            write(
                stale,
                Expected::Version(7),
                b"s1",
                HistoryWrite::Append(entries(&["z"])),
            ),
        ])
        .await;
    assert_eq!(saved.len(), 3);
    let v2 = *saved[0].as_ref().expect("the existing record moves on");
    assert!(v2 > v1);
    let f1 = *saved[1].as_ref().expect("the fresh record is created");
    assert!(
        matches!(&saved[2], Err(StorageError::Conflict { id, .. }) if *id == stale),
        "a record not at the expected version is not written: {:?}",
        saved[2]
    );
    let loaded = store
        .load_all(&[existing, missing, fresh, stale])
        .await
        .expect("load all");
    assert_eq!(loaded.len(), 4);
    let e = loaded[0].as_ref().expect("existing");
    assert_eq!(
        (e.version, e.head.as_slice(), e.history.clone()),
        (v2, &b"e2"[..], entries(&["a", "b"]))
    );
    assert_eq!(loaded[1], None);
    let f = loaded[2].as_ref().expect("fresh");
    assert_eq!((f.version, f.history.clone()), (f1, entries(&["x", "y"])));
    assert_eq!(loaded[3], None, "a lost compare-and-set writes nothing");
    assert!(store.save_all(Vec::new()).await.is_empty());
    assert!(store.load_all(&[]).await.expect("empty").is_empty());
}

fn indexed(workflow: &str, status: InstanceStatus, started_at: u64, tags: &[&str]) -> IndexEntry {
    IndexEntry {
        workflow: workflow.to_string(),
        status,
        started_at: Timestamp(started_at),
        ended_at: None,
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

async fn ids_of<S: InstanceIndex + ?Sized>(index: &S, query: InstanceQuery) -> Vec<WorkflowId> {
    index
        .search(&query)
        .await
        .expect("search")
        .instances
        .into_iter()
        .map(|i| i.id)
        .collect()
}

/// The index follows each save that sets an entry, in the same write: by workflow, status, tag
/// and start time, newest first, paged; a lost compare-and-set changes nothing, and a delete
/// removes the entry.
pub async fn index_follows_saves<S: WorkflowStore + InstanceIndex>(store: &S) {
    let workflow = format!("Index{}", WorkflowId::new().0.simple());
    let tag = format!("customer:{}", WorkflowId::new().0.simple());
    let ids: Vec<WorkflowId> = (0..5).map(|_| WorkflowId::new()).collect();
    let mut versions = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let tags: &[&str] = if i % 2 == 0 { &[tag.as_str()] } else { &[] };
        let write = WorkflowWrite::new(*id, Expected::Absent, b"h".to_vec(), HistoryWrite::Append(vec![]))
            .indexed(indexed(&workflow, InstanceStatus::Running, 1_000 + i as u64, tags));
        versions.push(store.save(write).await.expect("create"));
    }
    let query = |status, tag: Option<&str>| InstanceQuery {
        workflow: Some(workflow.clone()),
        status,
        tag: tag.map(str::to_string),
        limit: 10,
        ..InstanceQuery::default()
    };
    let newest_first: Vec<WorkflowId> = ids.iter().rev().copied().collect();
    assert_eq!(ids_of(store, query(None, None)).await, newest_first);
    assert_eq!(
        ids_of(store, query(None, Some(&tag))).await,
        vec![ids[4], ids[2], ids[0]]
    );

    // A status change moves the instance between status sets; a save without an entry keeps it.
    let mut done = indexed(&workflow, InstanceStatus::Completed, 1_002, &[tag.as_str()]);
    done.ended_at = Some(Timestamp(2_000));
    versions[2] = store
        .save(
            WorkflowWrite::new(
                ids[2],
                Expected::Version(versions[2]),
                b"h2".to_vec(),
                HistoryWrite::Append(vec![]),
            )
            .indexed(done.clone()),
        )
        .await
        .expect("complete");
    versions[3] = store
        .save(WorkflowWrite::new(
            ids[3],
            Expected::Version(versions[3]),
            b"h2".to_vec(),
            HistoryWrite::Append(vec![]),
        ))
        .await
        .expect("unindexed save");
    assert_eq!(
        ids_of(store, query(Some(InstanceStatus::Running), None)).await,
        vec![ids[4], ids[3], ids[1], ids[0]]
    );
    assert_eq!(
        ids_of(store, query(Some(InstanceStatus::Completed), Some(&tag))).await,
        vec![ids[2]]
    );
    assert_eq!(store.entry(ids[2]).await.expect("entry"), Some(done));

    // A lost compare-and-set writes no entry.
    let stale = WorkflowWrite::new(ids[0], Expected::Absent, b"x".to_vec(), HistoryWrite::Append(vec![]))
        .indexed(indexed(&workflow, InstanceStatus::Failed, 1_000, &[]));
    assert!(matches!(store.save(stale).await, Err(StorageError::Conflict { .. })));
    assert!(
        ids_of(store, query(Some(InstanceStatus::Failed), None))
            .await
            .is_empty()
    );

    // Start-time range (from inclusive, before exclusive) and paging by cursor.
    let ranged = InstanceQuery {
        started_from: Some(Timestamp(1_001)),
        started_before: Some(Timestamp(1_004)),
        ..query(None, None)
    };
    assert_eq!(ids_of(store, ranged.clone()).await, vec![ids[3], ids[2], ids[1]]);
    let first = store
        .search(&InstanceQuery {
            limit: 2,
            ..ranged.clone()
        })
        .await
        .expect("page 1");
    assert_eq!(
        first.instances.iter().map(|i| i.id).collect::<Vec<_>>(),
        vec![ids[3], ids[2]]
    );
    let cursor = first.next_cursor.expect("a second page");
    let second = store
        .search(&InstanceQuery {
            limit: 2,
            cursor: Some(cursor),
            ..ranged
        })
        .await
        .expect("page 2");
    assert_eq!(second.instances.iter().map(|i| i.id).collect::<Vec<_>>(), vec![ids[1]]);
    assert_eq!(second.next_cursor, None);

    // Counts per status, and the instance is gone from every set once deleted.
    let counts = store.counts().await.expect("counts");
    let ours = counts
        .iter()
        .find(|c| c.workflow == workflow)
        .expect("our workflow is counted");
    assert_eq!(
        ours.counts,
        vec![
            (InstanceStatus::Running, 4),
            (InstanceStatus::Stuck, 0),
            (InstanceStatus::Completed, 1),
            (InstanceStatus::Failed, 0),
            (InstanceStatus::Cancelled, 0),
        ]
    );
    store.delete(ids[2], versions[2]).await.expect("delete");
    assert!(
        ids_of(store, query(None, Some(&tag)))
            .await
            .iter()
            .all(|id| *id != ids[2])
    );
    assert!(
        ids_of(store, query(Some(InstanceStatus::Completed), None))
            .await
            .is_empty()
    );
    assert_eq!(store.entry(ids[2]).await.expect("entry"), None);
    let across = ids_of(
        store,
        InstanceQuery {
            tag: Some(tag.clone()),
            limit: 10,
            ..InstanceQuery::default()
        },
    )
    .await;
    assert_eq!(across, vec![ids[4], ids[0]], "a tag is searchable without the workflow");
}

/// An instance with as many tags as one may have
/// ([`baton_shared_schemas::tags::MAX_TAGS_PER_INSTANCE`]) is found under each of them; a save
/// with fewer tags takes it out of the others, and a delete out of all.
pub async fn index_holds_an_instance_with_the_most_tags<S: WorkflowStore + InstanceIndex>(store: &S) {
    let workflow = format!("Tags{}", WorkflowId::new().0.simple());
    let run = WorkflowId::new().0.simple().to_string();
    let tags: Vec<String> = (0..baton_shared_schemas::tags::MAX_TAGS_PER_INSTANCE)
        .map(|i| format!("tag-{run}-{i}"))
        .collect();
    let all: Vec<&str> = tags.iter().map(String::as_str).collect();
    let id = WorkflowId::new();
    let by_tag = |tag: &str| InstanceQuery {
        tag: Some(tag.to_string()),
        limit: 10,
        ..InstanceQuery::default()
    };
    let write = WorkflowWrite::new(id, Expected::Absent, b"h".to_vec(), HistoryWrite::Append(vec![])).indexed(indexed(
        &workflow,
        InstanceStatus::Running,
        1_000,
        &all,
    ));
    let version = store.save(write).await.expect("create");
    for tag in [all[0], all[all.len() / 2], all[all.len() - 1]] {
        assert_eq!(ids_of(store, by_tag(tag)).await, vec![id], "{tag}");
    }
    assert_eq!(
        store.entry(id).await.expect("entry").map(|e| e.tags.len()),
        Some(all.len())
    );
    let fewer = WorkflowWrite::new(
        id,
        Expected::Version(version),
        b"h2".to_vec(),
        HistoryWrite::Append(vec![]),
    )
    .indexed(indexed(&workflow, InstanceStatus::Running, 1_000, &all[..1]));
    let version = store.save(fewer).await.expect("fewer tags");
    assert_eq!(ids_of(store, by_tag(all[0])).await, vec![id]);
    assert!(ids_of(store, by_tag(all[all.len() - 1])).await.is_empty());
    store.delete(id, version).await.expect("delete");
    assert!(ids_of(store, by_tag(all[0])).await.is_empty());
}

/// Dead letters are held once per id, paged oldest first, and removed one by one.
pub async fn dead_letters_are_held_until_removed(store: &dyn DeadLetterStore) {
    let topic = format!("service-task:Conformance{}", WorkflowId::new().0.simple());
    let letter = |i: u64| DeadLetter {
        id: format!("letter-{i}"),
        topic: topic.clone(),
        key: format!("key-{i}"),
        payload: vec![i as u8; 3],
        headers: vec![("baton-dead-letter-reason".into(), "poison".into())],
        reason: "poison".into(),
        redeliveries: Some(3),
        dead_at: Timestamp(10 + i),
    };
    for i in 0..3 {
        assert!(store.add(letter(i)).await.expect("add"));
    }
    assert!(!store.add(letter(1)).await.expect("add again"), "a letter is held once");
    let listed = store.topics().await.expect("topics");
    assert!(listed.contains(&(topic.clone(), 3)), "{listed:?}");
    let first = store.page(&topic, None, 2).await.expect("page 1");
    assert_eq!(first.letters, vec![letter(0), letter(1)]);
    let second = store
        .page(&topic, first.next_cursor.as_deref(), 2)
        .await
        .expect("page 2");
    assert_eq!((second.letters, second.next_cursor), (vec![letter(2)], None));
    assert_eq!(store.get(&topic, "letter-1").await.expect("get"), Some(letter(1)));
    assert!(store.remove(&topic, "letter-1").await.expect("remove"));
    assert!(!store.remove(&topic, "letter-1").await.expect("remove again"));
    assert_eq!(store.get(&topic, "letter-1").await.expect("get"), None);
    for i in [0, 2] {
        assert!(store.remove(&topic, &format!("letter-{i}")).await.expect("remove"));
    }
    let listed = store.topics().await.expect("topics");
    assert!(
        listed.iter().all(|(t, _)| *t != topic),
        "an emptied topic is not listed: {listed:?}"
    );
    assert_eq!(store.page(&topic, None, 5).await.expect("empty"), Default::default());
}

/// Instantiates every storage check as a `#[tokio::test]`, given an expression that evaluates
/// to an async factory `|| async { (store, guard) }`: the store implements all three traits,
/// and the guard (a server process, or `()`) lives until the check ends.
#[macro_export]
macro_rules! storage_conformance_tests {
    ($factory:expr) => {
        $crate::storage_conformance_tests!(@cases $factory;
            workflow_compare_and_set,
            workflow_cas_has_one_winner,
            workflow_batches_keep_each_compare_and_set,
            key_sets_page_through_members,
            timers_claim_with_lease,
            timers_report_next_due,
            timers_are_listed_while_pending,
            timers_are_stored_and_completed_in_batches,
            index_follows_saves,
            index_holds_an_instance_with_the_most_tags,
            dead_letters_are_held_until_removed,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let factory = $factory;
                let (store, _guard) = factory().await;
                $crate::conformance::$case(&store).await;
            }
        )*
    };
}
