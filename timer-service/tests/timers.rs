//! Timer service tests on the in-memory transport and store, with a manual clock.

use std::sync::Arc;
use std::time::Duration;

use baton_runtime::{CancellationToken, Clock, ManualClock};
use baton_shared_schemas::messages::{ScheduledMessage, TimerMessage};
use baton_shared_schemas::{TimerId, Timestamp, Topic};
use baton_storage::{InMemoryStore, StoredTimer, TimerStore};
use baton_timer_service::{TimerConfig, run};
use baton_transport::{InMemoryTransport, Publisher, Subscription, SubscriptionKind, Transport};

struct Fixture {
    transport: InMemoryTransport,
    store: InMemoryStore,
    clock: ManualClock,
    shutdown: CancellationToken,
    target: Box<dyn Subscription>,
    service: tokio::task::JoinHandle<Result<(), baton_timer_service::TimerError>>,
}

async fn fixture() -> Fixture {
    fixture_with_batch(2).await
}

async fn fixture_with_batch(batch: usize) -> Fixture {
    let transport = InMemoryTransport::default();
    let store = InMemoryStore::new();
    let clock = ManualClock::new(Timestamp(1_000_000));
    let shutdown = CancellationToken::new();
    let target = transport
        .subscribe("target", "test", SubscriptionKind::Shared)
        .await
        .expect("subscribe");
    let config = TimerConfig {
        lease: Duration::from_secs(10),
        batch,
        max_idle: Duration::from_millis(20),
    };
    let service = tokio::spawn(run(
        config,
        Arc::new(transport.clone()),
        Arc::new(store.clone()),
        Arc::new(clock.clone()),
        shutdown.clone(),
    ));
    Fixture {
        transport,
        store,
        clock,
        shutdown,
        target,
        service,
    }
}

async fn schedule(f: &Fixture, id: TimerId, due: Timestamp, body: &str) {
    let message = ScheduledMessage {
        topic: "target".into(),
        key: "k".into(),
        bytes: body.as_bytes().to_vec(),
    };
    Publisher::new(Arc::new(f.transport.clone()))
        .publish(
            &Topic::timers(),
            TimerMessage::Schedule {
                timer_id: id,
                due,
                message,
            },
            f.clock.now(),
        )
        .await
        .expect("publish");
}

async fn stored(f: &Fixture, count: usize) {
    for _ in 0..500 {
        if f.store.timer_count() == count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("expected {count} stored timers, have {}", f.store.timer_count());
}

async fn received(f: &mut Fixture) -> String {
    let d = tokio::time::timeout(Duration::from_secs(5), f.target.next())
        .await
        .expect("fired in time")
        .expect("delivery");
    let body = String::from_utf8_lossy(&d.payload).into_owned();
    d.ack().await;
    body
}

#[tokio::test]
async fn timers_fire_in_due_order_when_the_clock_reaches_them() {
    let mut f = fixture().await;
    let base = f.clock.now();
    schedule(&f, TimerId::new(), Timestamp(base.0 + 3_000), "third").await;
    schedule(&f, TimerId::new(), Timestamp(base.0 + 1_000), "first").await;
    schedule(&f, TimerId::new(), Timestamp(base.0 + 2_000), "second").await;
    stored(&f, 3).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(100), f.target.next())
            .await
            .is_err(),
        "nothing fires early"
    );
    f.clock.advance(Duration::from_millis(2_500));
    assert_eq!(received(&mut f).await, "first");
    assert_eq!(received(&mut f).await, "second");
    assert!(
        tokio::time::timeout(Duration::from_millis(100), f.target.next())
            .await
            .is_err()
    );
    f.clock.advance(Duration::from_secs(1));
    assert_eq!(received(&mut f).await, "third");
    stored(&f, 0).await;
    f.shutdown.cancel();
    f.service.await.expect("join").expect("clean stop");
}

#[tokio::test]
async fn a_timer_scheduled_twice_fires_once_and_a_cancelled_one_never() {
    let mut f = fixture().await;
    let due = Timestamp(f.clock.now().0 + 500);
    let id = TimerId::new();
    schedule(&f, id, due, "once").await;
    schedule(&f, id, due, "once").await;
    let cancelled = TimerId::new();
    schedule(&f, cancelled, due, "never").await;
    stored(&f, 2).await;
    Publisher::new(Arc::new(f.transport.clone()))
        .publish(
            &Topic::timers(),
            TimerMessage::Cancel { timer_id: cancelled },
            f.clock.now(),
        )
        .await
        .expect("publish");
    stored(&f, 1).await;
    f.clock.advance(Duration::from_secs(1));
    assert_eq!(received(&mut f).await, "once");
    assert!(
        tokio::time::timeout(Duration::from_millis(150), f.target.next())
            .await
            .is_err()
    );
    f.shutdown.cancel();
    f.service.await.expect("join").expect("clean stop");
}

#[tokio::test]
async fn a_timer_claimed_by_a_replica_that_died_fires_after_its_lease() {
    let mut f = fixture().await;
    let now = f.clock.now();
    let message = ScheduledMessage {
        topic: "target".into(),
        key: "k".into(),
        bytes: b"survivor".to_vec(),
    };
    let payload = baton_shared_schemas::codec::encode(&message).expect("encode");
    let id = TimerId::new();
    f.store.add(StoredTimer { id, due: now, payload }).await.expect("add");
    // Another replica claims it and dies before publishing.
    let claimed = f
        .store
        .claim_due(now, Duration::from_secs(10), 10)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    assert!(
        tokio::time::timeout(Duration::from_millis(100), f.target.next())
            .await
            .is_err(),
        "leased"
    );
    f.clock.advance(Duration::from_secs(11));
    assert_eq!(received(&mut f).await, "survivor");
    f.shutdown.cancel();
    f.service.await.expect("join").expect("clean stop");
}

#[tokio::test]
async fn a_malformed_timer_message_is_dead_lettered_and_the_service_carries_on() {
    let mut f = fixture().await;
    let mut dlq = f
        .transport
        .subscribe("dlq:timers", "ops", SubscriptionKind::Shared)
        .await
        .expect("subscribe");
    f.transport
        .publish(
            "timers",
            baton_transport::OutgoingMessage::new("shard-1", vec![1, 255, 255, 255]),
        )
        .await
        .expect("publish");
    let dead = tokio::time::timeout(Duration::from_secs(5), dlq.next())
        .await
        .expect("dead letter")
        .expect("delivery");
    assert!(
        dead.header(baton_transport::headers::DEAD_LETTER_REASON)
            .unwrap_or_default()
            .contains("undecodable timer message")
    );
    schedule(&f, TimerId::new(), f.clock.now(), "still working").await;
    assert_eq!(received(&mut f).await, "still working");
    f.shutdown.cancel();
    f.service.await.expect("join").expect("clean stop");
}

#[tokio::test]
async fn a_batch_of_schedules_and_cancels_is_stored_in_order_and_fired_together_saying_when() {
    use baton_shared_schemas::{EncodedMessage, Envelope};
    use baton_transport::{headers, outgoing};

    let mut f = fixture_with_batch(64).await;
    let due = Timestamp(f.clock.now().0 + 500);
    let scheduled = |id: TimerId, body: &str| TimerMessage::Schedule {
        timer_id: id,
        due,
        message: ScheduledMessage {
            topic: "target".into(),
            key: "k".into(),
            bytes: body.as_bytes().to_vec(),
        },
    };
    let (cancelled, kept) = (TimerId::new(), TimerId::new());
    let mut batch = vec![
        scheduled(cancelled, "never"),
        TimerMessage::Cancel { timer_id: cancelled },
        scheduled(kept, "kept"),
    ];
    batch.extend((0..100).map(|i| scheduled(TimerId::new(), &format!("burst {i}"))));
    let messages = batch
        .into_iter()
        .map(|body| {
            outgoing(EncodedMessage::encode(&Topic::timers(), &Envelope::new(body, f.clock.now())).expect("encode"))
        })
        .collect();
    f.transport.publish_all(messages).await.expect("publish");
    stored(&f, 101).await;
    f.clock.advance(Duration::from_secs(1));
    let fired_at = f.clock.now().as_millis().to_string();
    let mut bodies = std::collections::BTreeSet::new();
    for _ in 0..101 {
        let d = tokio::time::timeout(Duration::from_secs(5), f.target.next())
            .await
            .expect("fired in time")
            .expect("delivery");
        assert_eq!(
            d.header(headers::TIMER_FIRED_AT),
            Some(fired_at.as_str()),
            "when it fired, by its clock"
        );
        assert!(
            bodies.insert(String::from_utf8_lossy(&d.payload).into_owned()),
            "fired once"
        );
        d.ack().await;
    }
    assert!(bodies.contains("kept") && !bodies.contains("never"));
    stored(&f, 0).await;
    f.shutdown.cancel();
    f.service.await.expect("join").expect("clean stop");
}
