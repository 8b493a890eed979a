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

/// A consumer of this process the client does not know it has (a subscribe the broker completed
/// after the client gave up waiting for it, seen after slow broker restarts) becomes the active
/// consumer of a keyed subscription's partition and never reads: the transport notices the
/// name listed twice, unloads the partition, and what was published to it still arrives, well
/// before the broker's keep-alive (30 s) would drop the silent connection.
#[tokio::test]
async fn a_partition_held_by_a_consumer_the_client_does_not_know_is_freed() {
    use std::io::BufRead;
    let (transport, harness) = transport().await;
    let topic = format!("ghost-{}", uuid::Uuid::new_v4());
    let mut subscription = transport
        .subscribe(&topic, "s", baton_transport::SubscriptionKind::Keyed)
        .await
        .expect("subscribe");
    let mut ghost = Command::new(env!("CARGO_BIN_EXE_conformance-member"))
        .args([
            "pulsar-ghost",
            &harness.0.service_url,
            &harness.0.admin_url,
            NAMESPACE,
            &topic,
            "s",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the ghost consumer");
    let stdout = ghost.stdout.take().expect("ghost stdout");
    let ready = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line == "ready")
    });
    let ready = tokio::time::timeout(Duration::from_secs(30), ready).await;
    assert!(matches!(ready, Ok(Ok(true))), "the ghost consumer did not subscribe");
    let stopped = Command::new("kill")
        .args(["-STOP", &ghost.id().to_string()])
        .status()
        .expect("kill -STOP");
    assert!(stopped.success());

    let total = 40;
    for i in 0..total {
        let message = baton_transport::OutgoingMessage::new(format!("k{i}"), format!("{i}").into_bytes());
        transport.publish(&topic, message).await.expect("publish");
    }
    let mut received = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    while received.len() < total && tokio::time::Instant::now() < deadline {
        if let Ok(Ok(delivery)) = tokio::time::timeout(Duration::from_millis(500), subscription.next()).await {
            received.insert(String::from_utf8_lossy(&delivery.payload).into_owned());
            delivery.ack().await;
        }
    }
    let _ = ghost.kill();
    let _ = ghost.wait();
    assert_eq!(
        received.len(),
        total,
        "messages of the partition the unknown consumer held never arrived"
    );
}
