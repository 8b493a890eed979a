//! The transport conformance suite on the in-memory backend.

use std::sync::Arc;
use std::time::Duration;

use baton_transport::{InMemoryTransport, MemoryConfig, Transport};

baton_transport::transport_conformance_tests!(|| async {
    let config = MemoryConfig {
        nack_delay: Duration::from_millis(1),
        ..MemoryConfig::default()
    };
    (Arc::new(InMemoryTransport::new(config)) as Arc<dyn Transport>, ())
});

/// A message published before the first subscriber comes is held for it; one published while
/// that subscriber is subscribing must still come after it (same key, so same order). The
/// window is small, so the race is run many times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_was_published_before_the_first_subscribe_stays_ahead_of_what_races_it() {
    use baton_transport::{OutgoingMessage, SubscriptionKind};
    for round in 0..20_000 {
        let transport = Arc::new(InMemoryTransport::new(MemoryConfig::default()));
        transport
            .publish("t", OutgoingMessage::new("k", vec![0]))
            .await
            .expect("publish");
        let subscriber = {
            let transport = transport.clone();
            tokio::spawn(async move { transport.subscribe("t", "s", SubscriptionKind::Keyed).await })
        };
        for n in 1..=3u8 {
            transport
                .publish("t", OutgoingMessage::new("k", vec![n]))
                .await
                .expect("publish");
        }
        let mut subscription = subscriber.await.expect("join").expect("subscribe");
        let mut order = Vec::new();
        for _ in 0..4 {
            let delivery = tokio::time::timeout(Duration::from_secs(5), subscription.next())
                .await
                .expect("delivered")
                .expect("delivery");
            order.extend_from_slice(&delivery.payload);
            delivery.ack().await;
        }
        assert_eq!(order, [0, 1, 2, 3], "round {round}");
    }
}
