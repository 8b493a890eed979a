//! The transport conformance suite on the Pulsar backend, against a real Apache Pulsar
//! standalone broker started for each check.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use baton_test_support::PulsarBroker;
use baton_transport::conformance::BrokerHarness;
use baton_transport::{PulsarConfig, PulsarTransport, Transport};

const NAMESPACE: &str = "conformance";

/// A broker for one check, and what the broker-level checks do with it.
struct Harness(PulsarBroker);

impl BrokerHarness for Harness {
    fn restart(&mut self) {
        self.0.restart();
    }

    fn crash_restart(&mut self) {
        self.0.crash_restart();
    }

    fn member(&self, topic: &str, subscription: &str) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_conformance-member"));
        command.args([
            "pulsar",
            &self.0.service_url,
            &self.0.admin_url,
            NAMESPACE,
            topic,
            subscription,
        ]);
        command
    }
}

async fn transport() -> (Arc<dyn Transport>, Harness) {
    transport_batching(PulsarConfig::default().batch_messages).await
}

/// A transport whose producers put up to `batch_messages` messages in one entry.
async fn transport_batching(batch_messages: u32) -> (Arc<dyn Transport>, Harness) {
    // RUST_LOG=baton_transport=debug shows what the transport does.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let broker = PulsarBroker::start();
    let config = PulsarConfig {
        service_url: broker.service_url.clone(),
        admin_url: Some(broker.admin_url.clone()),
        namespace: NAMESPACE.into(),
        partitions: 2,
        nack_delay: Duration::from_millis(20),
        batch_messages,
        ..PulsarConfig::default()
    };
    let transport = PulsarTransport::connect(config).await.expect("pulsar client");
    (Arc::new(transport) as Arc<dyn Transport>, Harness(broker))
}

baton_transport::transport_conformance_tests!(|| transport());
baton_transport::transport_broker_conformance_tests!(|| transport());

/// With producer batching on, messages published together share an entry, which the broker
/// acknowledges as a whole: each message is still settled on its own.
#[tokio::test]
async fn batched_messages_are_settled_one_by_one() {
    let (transport, _broker) = transport_batching(1000).await;
    baton_transport::conformance::messages_published_together_are_settled_one_by_one(transport).await;
}
