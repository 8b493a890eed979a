//! The storage conformance suite on the Redis backend, against a real `redis-server`.

use baton_storage::RedisStore;

baton_storage::storage_conformance_tests!(|| async {
    let server = baton_test_support::RedisServer::start();
    let store = RedisStore::connect(&server.url, "baton-test:")
        .await
        .expect("connect to redis");
    (store, server)
});

/// A batch sent after Redis forgot its scripts (a restart, `SCRIPT FLUSH`) loads them and is
/// applied once.
#[tokio::test]
async fn batches_survive_a_script_flush() {
    use baton_shared_schemas::WorkflowId;
    use baton_storage::{Expected, HistoryWrite, WorkflowStore, WorkflowWrite};

    let server = baton_test_support::RedisServer::start();
    let store = RedisStore::connect(&server.url, "baton-test:")
        .await
        .expect("connect to redis");
    let client = redis::Client::open(server.url.as_str()).expect("url");
    let mut con = client.get_multiplexed_async_connection().await.expect("connect");
    let ids = [WorkflowId::new(), WorkflowId::new()];
    let writes = |expected| {
        ids.iter()
            .map(|id| WorkflowWrite::new(*id, expected, b"h".to_vec(), HistoryWrite::Append(vec![b"e".to_vec()])))
            .collect::<Vec<_>>()
    };
    let first = store.save_all(writes(Expected::Absent)).await;
    let v1 = first.iter().map(|r| *r.as_ref().expect("saved")).collect::<Vec<_>>();
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .exec_async(&mut con)
        .await
        .expect("flush");
    let second = store.save_all(writes(Expected::Version(v1[0]))).await;
    assert!(second.iter().all(Result::is_ok), "{second:?}");
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .exec_async(&mut con)
        .await
        .expect("flush");
    let loaded = store.load_all(&ids).await.expect("load all");
    for stored in loaded {
        let stored = stored.expect("stored");
        assert_eq!(stored.history.len(), 2, "each batch applied exactly once");
    }
}
