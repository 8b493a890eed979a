//! The storage conformance suite on Redis over mutual TLS (`rediss://`) with an ACL user:
//! a real `redis-server` that speaks only TLS, requires a client certificate and a password,
//! with certificates the test makes.

use baton_storage::{RedisAccess, RedisOptions, RedisStore};
use baton_test_support::{RedisServer, TestCertificates};

const PASSWORD: &str = "tls-user-password-4e1b";

baton_storage::storage_conformance_tests!(|| async {
    let certs = TestCertificates::generate("redis-conformance");
    let server = RedisServer::start_tls(
        &certs,
        true,
        &[
            "--user",
            "baton",
            "on",
            &format!(">{PASSWORD}"),
            "~*",
            "&*",
            "+@all",
            "--user",
            "default",
            "off",
        ],
    );
    let read = |path: &std::path::Path| std::fs::read(path).expect("certificate");
    let access = RedisAccess {
        username: Some("baton".into()),
        password: Some(PASSWORD.into()),
        tls_roots: Some(read(&certs.ca)),
        tls_client: Some((read(&certs.client_cert), read(&certs.client_key))),
    };
    let store = RedisStore::connect_as(&server.url, &access, "baton-test:", RedisOptions::default())
        .await
        .expect("connect to redis over TLS");
    (store, (server, certs))
});
