//! The transport conformance suite on the Kafka backend, against a real tansu broker.

use std::sync::Arc;
use std::time::Duration;

use baton_transport::{KafkaConfig, KafkaTransport, Transport};

baton_transport::transport_conformance_tests!(|| async {
    let broker = baton_test_support::KafkaBroker::start();
    let config = KafkaConfig {
        bootstrap_servers: broker.bootstrap.clone(),
        namespace: "test.".into(),
        nack_delay: Duration::from_millis(20),
        // tansu: short fetch waits (it holds every fetch for the full wait) and one message per
        // record batch (it skips the rest of a batch a consumer starts inside).
        fetch_wait: Duration::from_millis(10),
        batch_messages: 1,
        ..KafkaConfig::default()
    };
    let transport = KafkaTransport::connect(config).expect("kafka client");
    (Arc::new(transport) as Arc<dyn Transport>, broker)
});
