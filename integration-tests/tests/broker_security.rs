//! Authenticated and encrypted broker connections against real brokers started by the tests:
//! an Apache Pulsar standalone broker that asks every client for a token (HS256 JWTs signed
//! with a key made for the broker) and serves TLS with a certificate of the test authority,
//! and an Apache Kafka broker with a SASL PLAIN over TLS listener.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use baton::Embedded;
use baton_examples::booking::{self, Booking, FailureRates, Ledger};
use baton_test_support::{
    ComponentProcess, KAFKA_SASL_PASSWORD, KAFKA_SASL_USER, KafkaBroker, PulsarBroker, PulsarSecurity, RedisServer,
    TestCertificates,
};
use baton_transport::{KafkaConfig, KafkaSecurity, KafkaTransport, PulsarConfig, PulsarTransport, Transport};

/// Runs three bookings in process on `transport`; each must complete (`what` says how).
async fn three_bookings_complete(transport: Arc<dyn Transport>, what: &str) {
    let ledger = Ledger::new(FailureRates::default(), 3);
    let baton = booking::embedded(&ledger, Embedded::builder())
        .transport(transport)
        .start()
        .await
        .expect("start");
    for n in 0..3 {
        let handle = baton
            .client()
            .start::<Booking>(&booking::request(n))
            .await
            .expect("start booking");
        handle.result().await.unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    baton.shutdown().await;
}

fn secret_file(name: &str, contents: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("baton-{name}-{}", std::process::id()));
    std::fs::write(&path, contents).expect("write secret");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_pulsar_over_tls_with_a_token_bookings_complete_and_bad_credentials_are_refused_at_once() {
    let security = PulsarSecurity::generate("pulsar-security");
    let broker = PulsarBroker::start_secured(&security);
    let service_url = broker.tls_service_url.clone().expect("TLS port");
    let admin_url = broker.tls_admin_url.clone().expect("TLS admin port");
    let token = security.token("admin");
    let ca = security.certs.ca.clone();

    // In process: the booking saga over pulsar+ssl:// with the token.
    let config = PulsarConfig {
        service_url: service_url.clone(),
        admin_url: Some(admin_url.clone()),
        namespace: "secured".into(),
        partitions: 1,
        token: Some(token.clone()),
        tls_trust_certs: Some(ca.clone()),
        nack_delay: Duration::from_millis(50),
        ..PulsarConfig::default()
    };
    let transport: Arc<dyn Transport> = Arc::new(PulsarTransport::connect(config.clone()).await.expect("connect"));
    three_bookings_complete(transport, "a booking over TLS with a token completes").await;

    // The same without the token, with a token of another key, or without the authority.
    let refused = [
        PulsarConfig {
            token: None,
            ..config.clone()
        },
        PulsarConfig {
            token: Some(baton_test_support::token_signed_with(b"another key entirely", "admin")),
            ..config.clone()
        },
        PulsarConfig {
            tls_trust_certs: None,
            ..config.clone()
        },
    ];
    for (case, config) in ["no token", "a token of another key", "no trust certificates"]
        .iter()
        .zip(refused)
    {
        let outcome = tokio::time::timeout(Duration::from_secs(60), PulsarTransport::connect(config)).await;
        match outcome {
            Ok(Err(e)) => {
                let message = e.to_string();
                assert!(!e.is_transient(), "{case}: waiting cannot fix this: {message}");
                assert!(
                    message.contains("transport.pulsar.token") && message.contains("tls_trust_certs"),
                    "{case}: {message}"
                );
            }
            Ok(Ok(_)) => panic!("{case}: the broker accepted the connection"),
            Err(_) => panic!("{case}: the refusal did not come within 60 s"),
        }
    }

    // A component binary: the token from a file, the authority from transport.pulsar.
    let redis = RedisServer::start();
    let token_file = secret_file("pulsar-token", &format!("{token}\n"));
    let env = vec![
        ("BATON_TRANSPORT__URL", service_url.clone()),
        ("BATON_TRANSPORT__PULSAR__ADMIN_URL", admin_url.clone()),
        ("BATON_TRANSPORT__PULSAR__NAMESPACE", "secured".to_string()),
        ("BATON_TRANSPORT__PULSAR__TOKEN_FILE", token_file.display().to_string()),
        ("BATON_TRANSPORT__PULSAR__TLS_TRUST_CERTS", ca.display().to_string()),
        ("BATON_STORAGE__URL", redis.url.clone()),
    ];
    let mut timers = ComponentProcess::start("timer-service", &[], &env);
    timers.wait_ready_status(200, Duration::from_secs(60));
    assert!(!timers.log_text().contains(&token), "the token never reaches the log");
    drop(timers);

    // A binary with a token the broker refuses ends its start at once (exit 2), naming the
    // settings, without the token in its log.
    let wrong = baton_test_support::token_signed_with(b"another key entirely", "admin");
    let wrong_file = secret_file("pulsar-wrong-token", &wrong);
    let mut env = env;
    env.push(("BATON_TRANSPORT__PULSAR__TOKEN_FILE", wrong_file.display().to_string()));
    let mut refused = ComponentProcess::start("timer-service", &[], &env);
    let exit = refused
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("a refused token must end the start:\n{}", refused.log_text()));
    let log = refused.log_text();
    assert_eq!(exit.code(), Some(2), "{log}");
    assert!(log.contains("transport.pulsar.token"), "{log}");
    assert!(!log.contains(&wrong), "the token never reaches the log:\n{log}");
}

/// Kafka settings for the secured listener of `broker`, as `baton` with `password`.
fn sasl_ssl(broker: &KafkaBroker, certs: &TestCertificates, password: &str) -> KafkaConfig {
    KafkaConfig {
        bootstrap_servers: broker.secure_bootstrap.clone().expect("SASL_SSL listener"),
        namespace: "secured.".into(),
        partitions: 1,
        nack_delay: Duration::from_millis(50),
        session_timeout: Duration::from_secs(6),
        security: KafkaSecurity {
            protocol: "sasl_ssl".into(),
            sasl_mechanism: "PLAIN".into(),
            sasl_username: KAFKA_SASL_USER.into(),
            sasl_password: password.into(),
            tls_ca_file: certs.ca.display().to_string(),
            ..KafkaSecurity::default()
        },
        ..KafkaConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka_with_sasl_over_tls_bookings_complete_and_bad_credentials_are_refused() {
    let certs = TestCertificates::generate("kafka-security");
    let broker = KafkaBroker::start_secured(&certs);
    let config = sasl_ssl(&broker, &certs, KAFKA_SASL_PASSWORD);
    let transport: Arc<dyn Transport> = Arc::new(KafkaTransport::connect(config.clone()).expect("connect"));
    transport
        .check(Duration::from_secs(30))
        .await
        .expect("the broker answers over SASL_SSL");
    three_bookings_complete(transport, "a booking over SASL_SSL completes").await;

    // A wrong password, or no authority for the broker's certificate: the broker never answers.
    let untrusting = KafkaConfig {
        security: KafkaSecurity {
            tls_ca_file: String::new(),
            ..config.security.clone()
        },
        ..config.clone()
    };
    for (case, config) in [
        ("a wrong password", sasl_ssl(&broker, &certs, "not-the-password")),
        ("the system's roots only", untrusting),
    ] {
        let transport = KafkaTransport::connect(config).expect("clients are created lazily");
        assert!(
            transport.check(Duration::from_secs(5)).await.is_err(),
            "{case}: the broker must not answer"
        );
    }

    // A component binary: the password from a file.
    let redis = RedisServer::start();
    let password_file = secret_file("kafka-password", &format!("{KAFKA_SASL_PASSWORD}\n"));
    let env = vec![
        (
            "BATON_TRANSPORT__URL",
            format!("kafka://{}", broker.secure_bootstrap.clone().expect("listener")),
        ),
        ("BATON_TRANSPORT__KAFKA__NAMESPACE", "secured.".to_string()),
        ("BATON_TRANSPORT__KAFKA__SECURITY_PROTOCOL", "sasl_ssl".to_string()),
        ("BATON_TRANSPORT__KAFKA__SASL_USERNAME", KAFKA_SASL_USER.to_string()),
        (
            "BATON_TRANSPORT__KAFKA__SASL_PASSWORD_FILE",
            password_file.display().to_string(),
        ),
        ("BATON_TRANSPORT__KAFKA__TLS_CA_FILE", certs.ca.display().to_string()),
        ("BATON_STORAGE__URL", redis.url.clone()),
    ];
    let mut timers = ComponentProcess::start("timer-service", &[], &env);
    timers.wait_ready_status(200, Duration::from_secs(60));
    assert!(
        !timers.log_text().contains(KAFKA_SASL_PASSWORD),
        "the password never reaches the log"
    );
}
