//! The transport conformance suite on the Pulsar backend, against a real Apache Pulsar
//! standalone broker started for each check.

use std::sync::Arc;
use std::time::Duration;

use baton_transport::{PulsarConfig, PulsarTransport, Transport};

baton_transport::transport_conformance_tests!(|| async {
    let broker = baton_test_support::PulsarBroker::start();
    let config = PulsarConfig {
        service_url: broker.service_url.clone(),
        admin_url: Some(broker.admin_url.clone()),
        namespace: "conformance".into(),
        partitions: 2,
        nack_delay: Duration::from_millis(20),
        ..PulsarConfig::default()
    };
    let transport = PulsarTransport::connect(config).await.expect("pulsar client");
    (Arc::new(transport) as Arc<dyn Transport>, broker)
});
