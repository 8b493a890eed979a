//! The storage contract as executable checks, run by every backend through
//! [`storage_conformance_tests!`](crate::storage_conformance_tests). Each check uses fresh ids and
//! keys, so one server can serve all of them.

use std::time::Duration;

use baton_shared_schemas::{MessageId, TimerId, Timestamp, WorkflowId};

use crate::{Expected, HistoryWrite, KeySetStore, StorageError, StoredTimer, TimerStore, WorkflowStore, WorkflowWrite};

fn entries(items: &[&str]) -> Vec<Vec<u8>> {
    items.iter().map(|s| s.as_bytes().to_vec()).collect()
}

/// Create, compare-and-set with appends and replaces, conflicts and deletes.
pub async fn workflow_compare_and_set(store: &dyn WorkflowStore) {
    let id = WorkflowId::new();
    assert_eq!(store.load(id).await.expect("load"), None);
    let v1 = store
        .save(
            id,
            Expected::Absent,
            b"h1".to_vec(),
            HistoryWrite::Append(entries(&["a"])),
        )
        .await
        .expect("create");
    assert!(matches!(
        store
            .save(id, Expected::Absent, b"again".to_vec(), HistoryWrite::Append(vec![]))
            .await,
        Err(StorageError::Conflict { .. })
    ));
    let v2 = store
        .save(
            id,
            Expected::Version(v1),
            b"h2".to_vec(),
            HistoryWrite::Append(entries(&["b", "c"])),
        )
        .await
        .expect("cas");
    assert!(v2 > v1);
    assert!(matches!(
        store
            .save(
                id,
                Expected::Version(v1),
                b"stale".to_vec(),
                HistoryWrite::Append(entries(&["x"]))
            )
            .await,
        Err(StorageError::Conflict { .. })
    ));
    let loaded = store.load(id).await.expect("load").expect("exists");
    assert_eq!((loaded.version, loaded.head.as_slice()), (v2, &b"h2"[..]));
    assert_eq!(loaded.history, entries(&["a", "b", "c"]), "a lost CAS must not append");
    assert_eq!(store.version(id).await.expect("version"), Some(v2));
    assert_eq!(store.version(WorkflowId::new()).await.expect("version"), None);
    let v3 = store
        .save(
            id,
            Expected::Version(v2),
            b"h3".to_vec(),
            HistoryWrite::Replace(entries(&["z"])),
        )
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
            .save(id, Expected::Version(v3), b"h".to_vec(), HistoryWrite::Append(vec![]))
            .await,
        Err(StorageError::Conflict { .. })
    ));
}

/// Several writers that all read one version: exactly one save wins, the others conflict.
pub async fn workflow_cas_has_one_winner(store: &dyn WorkflowStore) {
    let id = WorkflowId::new();
    let v = store
        .save(id, Expected::Absent, b"h".to_vec(), HistoryWrite::Append(vec![]))
        .await
        .expect("create");
    let writes = (0..8).map(|i| store.save(id, Expected::Version(v), vec![i], HistoryWrite::Append(vec![vec![i]])));
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
        .save(
            existing,
            Expected::Absent,
            b"e1".to_vec(),
            HistoryWrite::Append(entries(&["a"])),
        )
        .await
        .expect("create");
    let write = |id, expected, head: &[u8], history| WorkflowWrite {
        id,
        expected,
        head: head.to_vec(),
        history,
    };
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
