//! Every component on the real backends: a real Apache Pulsar or Apache Kafka broker and a
//! Redis server, each started by the test on free loopback ports. Each scenario runs on both
//! brokers.
#![allow(missing_docs)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use baton::components::storage::RedisStore;
use baton::components::transport::{OutgoingMessage, SubscriptionKind, Transport, headers};
use baton::{Embedded, Stores, WorkflowError};
use baton_examples::booking::{self, Booking, BookingOutcome, FailureRates, Ledger};
use baton_test_support::{KafkaBroker, PulsarBroker, RedisServer};
use baton_transport::{KafkaConfig, KafkaTransport, PulsarConfig, PulsarTransport};
use tokio::task::JoinSet;

struct Backends {
    transport: Arc<dyn Transport>,
    stores: Stores,
    _broker: Broker,
    _redis: RedisServer,
}

impl Backends {
    /// The booking components in this process, on these backends.
    async fn start(&self, ledger: &Ledger) -> Embedded {
        booking::embedded(ledger, Embedded::builder())
            .transport(self.transport.clone())
            .stores(self.stores.clone())
            .start()
            .await
            .expect("start")
    }
}

/// A broker kept running for a test.
#[allow(dead_code)]
enum Broker {
    Pulsar(PulsarBroker),
    Kafka(KafkaBroker),
}

#[derive(Clone, Copy)]
enum Kind {
    Pulsar,
    Kafka,
}

async fn backends(kind: Kind) -> Backends {
    let redis = RedisServer::start();
    let (transport, broker): (Arc<dyn Transport>, Broker) = match kind {
        Kind::Pulsar => {
            let broker = PulsarBroker::start();
            let config = PulsarConfig {
                service_url: broker.service_url.clone(),
                admin_url: Some(broker.admin_url.clone()),
                namespace: "it".into(),
                partitions: 2,
                nack_delay: Duration::from_millis(50),
                ..PulsarConfig::default()
            };
            let transport = PulsarTransport::connect(config).await.expect("pulsar");
            (Arc::new(transport), Broker::Pulsar(broker))
        }
        Kind::Kafka => {
            let broker = KafkaBroker::start();
            let config = KafkaConfig {
                bootstrap_servers: broker.bootstrap.clone(),
                namespace: "it.".into(),
                nack_delay: Duration::from_millis(50),
                session_timeout: Duration::from_secs(6),
                ..KafkaConfig::default()
            };
            (
                Arc::new(KafkaTransport::connect(config).expect("kafka")),
                Broker::Kafka(broker),
            )
        }
    };
    let stores = Stores::all(RedisStore::connect(&redis.url, "baton:").await.expect("redis"));
    Backends {
        transport,
        stores,
        _broker: broker,
        _redis: redis,
    }
}

/// Runs a scenario on each broker, as one test per broker.
macro_rules! on_both_brokers {
    ($scenario:ident: $pulsar:ident, $kafka:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $pulsar() {
            $scenario(Kind::Pulsar).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $kafka() {
            $scenario(Kind::Kafka).await;
        }
    };
}

on_both_brokers!(bookings_balance_their_books: bookings_balance_their_books_on_pulsar_and_redis, bookings_balance_their_books_on_kafka_and_redis);
on_both_brokers!(malformed_messages_are_dead_lettered: malformed_messages_on_pulsar_are_dead_lettered_and_components_carry_on, malformed_messages_on_kafka_are_dead_lettered_and_components_carry_on);

async fn bookings_balance_their_books(kind: Kind) {
    let b = backends(kind).await;
    let ledger = Ledger::new(
        FailureRates {
            transient: 0.15,
            declined: 0.08,
            flight_sold_out: 0.08,
            hotel_sold_out: 0.08,
        },
        21,
    );
    let baton = b.start(&ledger).await;
    let mut running = JoinSet::new();
    for n in 0..60 {
        let client = baton.client().clone();
        running.spawn(async move {
            let outcome = match client.start::<Booking>(&booking::request(n)).await {
                Ok(handle) => handle.result().await,
                Err(e) => Err(WorkflowError::Client(e)),
            };
            (n, outcome)
        });
    }
    let mut outcomes: HashMap<u64, Option<BookingOutcome>> = HashMap::new();
    let mut failed = Vec::new();
    while let Some(joined) = running.join_next().await {
        let (n, outcome) = joined.expect("task");
        match outcome {
            Ok(o) => {
                outcomes.insert(n, Some(o));
            }
            Err(e) => {
                failed.push(format!("{n}: {e}"));
                outcomes.insert(n, None);
            }
        }
    }
    baton.shutdown().await;
    assert!(failed.is_empty(), "{failed:?}");
    let audit = ledger.audit(&outcomes).await.expect("books readable");
    assert!(audit.problems.is_empty(), "{:#?}", audit.problems);
    assert_eq!(audit.booked_ok + audit.compensated_ok, 60);
    assert!(audit.compensated_ok >= 3 && audit.transient_failures >= 10, "{audit:?}");
}

async fn malformed_messages_are_dead_lettered(kind: Kind) {
    let b = backends(kind).await;
    let ledger = Ledger::new(FailureRates::default(), 3);
    let baton = b.start(&ledger).await;
    let topics = [
        "workflow-cmd:Booking",
        "workflow-engine:Booking",
        "workflow-task:Booking",
        "service-task:Payment",
        "timers",
        "workflow-tag:Booking",
    ];
    let mut dead_letters = Vec::new();
    for topic in topics {
        dead_letters.push(
            b.transport
                .subscribe(&format!("dlq:{topic}"), "ops", SubscriptionKind::Shared)
                .await
                .expect("dlq"),
        );
        b.transport
            .publish(
                topic,
                OutgoingMessage::new("garbage", b"\x01\xff\xff not a message".to_vec()),
            )
            .await
            .expect("publish");
    }
    for (topic, dlq) in topics.iter().zip(dead_letters.iter_mut()) {
        let dead = tokio::time::timeout(Duration::from_secs(30), dlq.next())
            .await
            .expect("dead-lettered in time")
            .expect("delivery");
        let reason = dead.header(headers::DEAD_LETTER_REASON).unwrap_or_default().to_string();
        assert!(
            reason.contains("undecodable") || reason.contains("malformed"),
            "{topic}: {reason}"
        );
        assert_eq!(dead.header(headers::ORIGINAL_TOPIC), Some(*topic));
        dead.ack().await;
    }
    let handle = baton
        .client()
        .start::<Booking>(&booking::request(1))
        .await
        .expect("start");
    assert!(handle.result().await.is_ok(), "components keep working after bad input");
    baton.shutdown().await;
}
