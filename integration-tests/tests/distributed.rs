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
use baton_transport::{KafkaConfig, KafkaTransport, PulsarConfig, PulsarTransport, SizeLimit};
use tokio::task::JoinSet;

struct Backends {
    /// The broker's transport, its messages bounded by [`MAX_MESSAGE_BYTES`].
    transport: Arc<dyn Transport>,
    /// The same broker without the bound: a producer elsewhere.
    unbounded: Arc<dyn Transport>,
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
        transport: SizeLimit::wrap(transport.clone(), MAX_MESSAGE_BYTES),
        unbounded: transport,
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

/// A golden wire fixture: a valid message of the kind its name starts with.
fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared-schemas/tests/fixtures")
        .join(format!("{name}.bin"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The bound on message size the scenarios run with (`transport.max_message_bytes`), low
/// enough for an oversized message to stay well under the brokers' own limits.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Bytes no component can use, of every kind a broker could carry, for a topic whose messages
/// look like `own` (a valid message of that topic): each is (what it is, its bytes).
fn bad_inputs(own: &[u8], other_topics: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    // A deterministic pseudo-random body behind the codec byte.
    let mut noise = vec![baton_shared_schemas::codec::CODEC_BINCODE2];
    let mut x: u32 = 0x9E37_79B9;
    for _ in 0..96 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        noise.push(x.to_le_bytes()[0]);
    }
    // An envelope whose body is variant 250 of the topic's enum (an enum variant is written as
    // its index), which no enum has.
    let unknown_variant = baton_shared_schemas::codec::encode(&baton_shared_schemas::Envelope::new(
        250u32,
        baton_shared_schemas::Timestamp(1_700_000_000_000),
    ))
    .expect("encode");
    vec![
        ("random bytes", noise),
        ("empty", Vec::new()),
        ("truncated", own[..own.len() / 2].to_vec()),
        ("unknown variant", unknown_variant),
        ("another codec", [&[0x7F_u8][..], &own[1..]].concat()),
        ("another topic's message", other_topics.to_vec()),
        // A valid message as a newer build would write it: its envelope claims the next
        // schema version (the version is the byte after the codec's).
        ("newer schema version", {
            let mut newer = own.to_vec();
            newer[1] = u8::try_from(baton_shared_schemas::SCHEMA_VERSION + 1).expect("a one-byte version");
            newer
        }),
        // A valid message padded past the transport's bound: it must not even be read.
        ("oversized", [own, &vec![0; MAX_MESSAGE_BYTES][..]].concat()),
    ]
}

async fn malformed_messages_are_dead_lettered(kind: Kind) {
    let b = backends(kind).await;
    let ledger = Ledger::new(FailureRates::default(), 3);
    let baton = b.start(&ledger).await;
    // Every topic a component or the client consumes, with a valid message of its own and one
    // of another topic's kind (a client reply decodes as nothing a component reads, a start
    // as nothing a client reads).
    let client_reply = fixture("client_status");
    let client_topic = baton::components::schemas::Topic::client(baton.client().id());
    let topics = [
        ("workflow-cmd:Booking", fixture("engine_start"), client_reply.clone()),
        (
            "workflow-engine:Booking",
            fixture("engine_task_completed"),
            client_reply.clone(),
        ),
        (
            "workflow-task:Booking",
            fixture("workflow_task_execute"),
            client_reply.clone(),
        ),
        (
            "service-task:Payment",
            fixture("service_task_execute"),
            client_reply.clone(),
        ),
        ("timers", fixture("timer_schedule"), client_reply.clone()),
        ("workflow-tag:Booking", fixture("tag_add"), client_reply.clone()),
        (
            "service-tag:Payment",
            fixture("tag_task_delegated"),
            client_reply.clone(),
        ),
        (
            "task-control:Payment",
            fixture("task_control_cancel"),
            client_reply.clone(),
        ),
        (client_topic.name(), client_reply.clone(), fixture("engine_start")),
    ];
    let mut dead_letters = Vec::new();
    let mut sent = Vec::new();
    for (topic, own, other) in &topics {
        dead_letters.push(
            b.transport
                .subscribe(&format!("dlq:{topic}"), "ops", SubscriptionKind::Shared)
                .await
                .expect("dlq"),
        );
        let inputs = bad_inputs(own, other);
        for (what, bytes) in &inputs {
            b.unbounded
                .publish(topic, OutgoingMessage::new(*what, bytes.clone()))
                .await
                .expect("publish");
        }
        sent.push(inputs.len());
    }
    for (((topic, _, _), dlq), count) in topics.iter().zip(dead_letters.iter_mut()).zip(sent) {
        for _ in 0..count {
            let dead = tokio::time::timeout(Duration::from_secs(30), dlq.next())
                .await
                .unwrap_or_else(|_| panic!("{topic}: a bad message was not dead-lettered in time"))
                .expect("delivery");
            let reason = dead.header(headers::DEAD_LETTER_REASON).unwrap_or_default().to_string();
            // The key says which bad input it was.
            if dead.key == "oversized" {
                assert!(
                    reason.contains("oversized message") && reason.contains("transport.max_message_bytes"),
                    "{topic}: {reason}"
                );
            } else if dead.key == "newer schema version" {
                // Left for an upgraded replica first, then dead-lettered with the versions.
                assert!(
                    reason.starts_with("redelivered ")
                        && reason.contains(&format!(
                            "written by schema version {}, this reader knows ≤ {}",
                            baton_shared_schemas::SCHEMA_VERSION + 1,
                            baton_shared_schemas::SCHEMA_VERSION
                        )),
                    "{topic}: {reason}"
                );
            } else {
                assert!(
                    ["undecodable", "malformed", "empty", "codec", "trailing"]
                        .iter()
                        .any(|w| reason.contains(w)),
                    "{topic} ({}): {reason}",
                    dead.key
                );
            }
            assert_eq!(dead.header(headers::ORIGINAL_TOPIC), Some(*topic));
            dead.ack().await;
        }
    }
    let handle = baton
        .client()
        .start::<Booking>(&booking::request(1))
        .await
        .expect("start");
    assert!(handle.result().await.is_ok(), "components keep working after bad input");
    baton.shutdown().await;
}
