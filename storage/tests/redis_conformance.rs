//! The storage conformance suite on the Redis backend, against a real `redis-server`.

use baton_storage::RedisStore;

baton_storage::storage_conformance_tests!(|| async {
    let server = baton_test_support::RedisServer::start();
    let store = RedisStore::connect(&server.url, "baton-test:")
        .await
        .expect("connect to redis");
    (store, server)
});
