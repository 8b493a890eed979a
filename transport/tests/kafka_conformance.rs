//! The transport conformance suite on the Kafka backend, against a real Apache Kafka broker
//! (KRaft mode) started for each check.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use baton_test_support::KafkaBroker;
use baton_transport::conformance::BrokerHarness;
use baton_transport::{KafkaConfig, KafkaTransport, Transport};

const NAMESPACE: &str = "test.";

/// A broker for one check, and what the broker-level checks do with it.
struct Harness(KafkaBroker);

impl BrokerHarness for Harness {
    fn restart(&mut self) {
        self.0.restart();
    }

    fn crash_restart(&mut self) {
        self.0.crash_restart();
    }

    fn member(&self, topic: &str, subscription: &str) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_conformance-member"));
        command.args(["kafka", &self.0.bootstrap, NAMESPACE, topic, subscription]);
        command
    }
}

async fn transport() -> (Arc<dyn Transport>, Harness) {
    // RUST_LOG=baton_transport=debug shows what the transport does.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let broker = KafkaBroker::start();
    let config = KafkaConfig {
        bootstrap_servers: broker.bootstrap.clone(),
        namespace: NAMESPACE.into(),
        nack_delay: Duration::from_millis(20),
        session_timeout: Duration::from_secs(6),
        ..KafkaConfig::default()
    };
    let transport = KafkaTransport::connect(config).expect("kafka client");
    (Arc::new(transport) as Arc<dyn Transport>, Harness(broker))
}

baton_transport::transport_conformance_tests!(|| transport());
baton_transport::transport_broker_conformance_tests!(|| transport());
