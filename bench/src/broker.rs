//! `baton-bench broker`: what one message costs the broker, through Baton's own Pulsar
//! transport and nothing else. For each setting — messages per batched entry (the producer's
//! `batch_messages`), partitions per topic — it publishes a burst from many concurrent
//! publishers to a fresh keyed topic while one consumer takes and acknowledges every message,
//! and reports messages per second, the entries the broker wrote (from its internal stats: the
//! messages per entry it reached), and the CPU the broker process and this process spent per
//! message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use baton::components::transport::{OutgoingMessage, PulsarConfig, PulsarTransport, SubscriptionKind, Transport};

use crate::procstat::process_cpu_seconds;

/// One setting's figures.
#[derive(Clone, Debug)]
pub struct Row {
    /// Most messages per batched entry the producer was allowed.
    pub batch_messages: u32,
    /// Partitions of the topic.
    pub partitions: u32,
    /// Messages sent and acknowledged.
    pub messages: usize,
    /// Entries the broker wrote for them.
    pub entries: u64,
    /// What the burst cost.
    pub burst: Burst,
}

/// What the runs need to know about the broker.
pub struct Broker {
    /// The binary protocol URL.
    pub service_url: String,
    /// The admin API.
    pub admin_url: String,
    /// The broker's process, whose CPU is counted.
    pub pid: u32,
}

/// Concurrent publishers: enough that a batch fills while the previous one is confirmed.
const PUBLISHERS: usize = 64;
/// Distinct routing keys.
const KEYS: usize = 64;
/// Bytes per message, about a workflow message's size.
const PAYLOAD: usize = 200;

/// Measures one setting on a namespace of its own.
pub async fn measure(broker: &Broker, batch_messages: u32, partitions: u32, messages: usize) -> anyhow::Result<Row> {
    // A namespace per run: a topic's entries are counted from its ledgers.
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let namespace = format!("broker-b{batch_messages}-p{partitions}-{}-{run}", std::process::id());
    let config = PulsarConfig {
        service_url: broker.service_url.clone(),
        admin_url: Some(broker.admin_url.clone()),
        namespace: namespace.clone(),
        partitions,
        batch_messages,
        ..PulsarConfig::default()
    };
    let tenant = config.tenant.clone();
    let transport: Arc<dyn Transport> = Arc::new(PulsarTransport::connect(config).await?);
    let cost = burst(transport, broker.pid, messages).await?;
    // The entries of every topic of the namespace (the partitions, and the warm-up's one).
    let entries = entries_written(&broker.admin_url, &tenant, &namespace)
        .await?
        .saturating_sub(1);
    Ok(Row {
        batch_messages,
        partitions,
        messages,
        entries,
        burst: cost,
    })
}

/// One Kafka setting's figures.
#[derive(Clone, Debug)]
pub struct KafkaRow {
    /// The producer's `linger.ms`.
    pub linger_ms: u64,
    /// Partitions of the topic.
    pub partitions: i32,
    /// Messages sent and acknowledged.
    pub messages: usize,
    /// What the burst cost.
    pub burst: Burst,
}

/// Measures one Kafka setting on a namespace of its own (`bootstrap` of the broker whose
/// process is `pid`).
pub async fn measure_kafka(
    bootstrap: &str,
    pid: u32,
    linger: Duration,
    partitions: i32,
    messages: usize,
) -> anyhow::Result<KafkaRow> {
    use baton::components::transport::{KafkaConfig, KafkaTransport};
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let config = KafkaConfig {
        bootstrap_servers: bootstrap.to_string(),
        namespace: format!(
            "broker-l{}-p{partitions}-{}-{run}.",
            linger.as_millis(),
            std::process::id()
        ),
        partitions,
        linger,
        ..KafkaConfig::default()
    };
    let transport: Arc<dyn Transport> = Arc::new(KafkaTransport::connect(config)?);
    let burst = burst(transport, pid, messages).await?;
    Ok(KafkaRow {
        linger_ms: u64::try_from(linger.as_millis()).unwrap_or(u64::MAX),
        partitions,
        messages,
        burst,
    })
}

/// What a burst cost.
#[derive(Clone, Debug)]
pub struct Burst {
    /// Messages per second, first publish to last acknowledgement.
    pub per_second: f64,
    /// Broker CPU per message, in milliseconds.
    pub broker_cpu_ms: f64,
    /// This process's CPU per message (publishers, consumer, acknowledgements), in
    /// milliseconds.
    pub client_cpu_ms: f64,
}

/// Publishes `messages` from [`PUBLISHERS`] concurrent publishers to a fresh keyed topic while
/// one consumer acknowledges each, after one warm-up message each way.
async fn burst(transport: Arc<dyn Transport>, broker_pid: u32, messages: usize) -> anyhow::Result<Burst> {
    let topic = "bench-broker";
    let mut consumer = transport.subscribe(topic, "bench", SubscriptionKind::Keyed).await?;
    // A warm-up message each way opens the producers and the consumer.
    transport
        .publish(topic, OutgoingMessage::new("warm", vec![0; PAYLOAD]))
        .await?;
    tokio::time::timeout(Duration::from_secs(30), consumer.next())
        .await??
        .ack()
        .await;

    let broker_before = process_cpu_seconds(broker_pid)?;
    let client_before = process_cpu_seconds(std::process::id())?;
    let began = Instant::now();
    let consuming = tokio::spawn(async move {
        for _ in 0..messages {
            let delivery = tokio::time::timeout(Duration::from_secs(60), consumer.next()).await??;
            delivery.ack().await;
        }
        anyhow::Ok(())
    });
    let mut publishers = tokio::task::JoinSet::new();
    for p in 0..PUBLISHERS {
        let transport = transport.clone();
        let count = messages / PUBLISHERS + usize::from(p < messages % PUBLISHERS);
        publishers.spawn(async move {
            for i in 0..count {
                let key = format!("k{}", (p + i * PUBLISHERS) % KEYS);
                transport
                    .publish(topic, OutgoingMessage::new(key, vec![7; PAYLOAD]))
                    .await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(published) = publishers.join_next().await {
        published??;
    }
    consuming.await??;
    let elapsed = began.elapsed();
    let broker_cpu = process_cpu_seconds(broker_pid)? - broker_before;
    let client_cpu = process_cpu_seconds(std::process::id())? - client_before;
    Ok(Burst {
        per_second: messages as f64 / elapsed.as_secs_f64(),
        broker_cpu_ms: broker_cpu * 1e3 / messages as f64,
        client_cpu_ms: client_cpu * 1e3 / messages as f64,
    })
}

/// The entries the broker added to the ledgers of every topic of `tenant/namespace`.
async fn entries_written(admin_url: &str, tenant: &str, namespace: &str) -> anyhow::Result<u64> {
    let topics: Vec<String> =
        serde_json::from_value(get_json(admin_url, &format!("/admin/v2/persistent/{tenant}/{namespace}")).await?)?;
    let mut entries = 0;
    for topic in topics {
        let Some(path) = topic.strip_prefix("persistent://") else {
            continue;
        };
        let stats = get_json(admin_url, &format!("/admin/v2/persistent/{path}/internalStats")).await?;
        entries += stats["entriesAddedCounter"].as_u64().unwrap_or(0);
    }
    Ok(entries)
}

/// A GET of the broker's admin API on loopback, as HTTP/1.0 (one plain body, then the
/// connection closes).
async fn get_json(admin_url: &str, path: &str) -> anyhow::Result<serde_json::Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = admin_url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("the admin URL {admin_url} is not http://"))?
        .trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(authority).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nAccept: application/json\r\n\r\n").as_bytes())
        .await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no HTTP response from {admin_url}{path}"))?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "GET {path}: {}",
        head.lines().next().unwrap_or_default()
    );
    Ok(serde_json::from_str(body)?)
}
