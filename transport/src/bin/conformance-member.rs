//! A consumer in a process of its own, for the conformance cases that SIGKILL a member:
//!
//! `conformance-member pulsar <service url> <admin url> <namespace> <topic> <subscription>`
//! `conformance-member kafka <bootstrap servers> <namespace> <topic> <subscription>`
//!
//! It joins a keyed subscription, prints `ready`, then for every message prints `got <payload>`
//! and acknowledges it, until it is killed.
//!
//! `conformance-member pulsar-ghost <service url> <admin url> <namespace> <topic> <subscription>`
//!
//! plays a consumer a process does not know it has: it subscribes to partition 1 of the topic
//! under the name of the subscription's consumer already there (the one a process's client
//! would have left behind after retrying a subscribe), prints `ready` and never reads. The
//! conformance check then SIGSTOPs it, so it cannot reconnect either.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use baton_transport::{KafkaConfig, KafkaTransport, PulsarConfig, PulsarTransport, SubscriptionKind, Transport};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [kind, url, admin, namespace, topic, subscription] = args.as_slice() {
        if kind == "pulsar-ghost" {
            return match ghost(url, admin, namespace, topic, subscription).await {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => fail(&e),
            };
        }
    }
    let (transport, topic, subscription): (Arc<dyn Transport>, &str, &str) = match args.as_slice() {
        [kind, url, admin, namespace, topic, subscription] if kind == "pulsar" => {
            let config = PulsarConfig {
                service_url: url.clone(),
                admin_url: Some(admin.clone()),
                namespace: namespace.clone(),
                partitions: 2,
                ..PulsarConfig::default()
            };
            match PulsarTransport::connect(config).await {
                Ok(t) => (Arc::new(t), topic, subscription),
                Err(e) => return fail(&e.to_string()),
            }
        }
        [kind, bootstrap, namespace, topic, subscription] if kind == "kafka" => {
            let config = KafkaConfig {
                bootstrap_servers: bootstrap.clone(),
                namespace: namespace.clone(),
                session_timeout: Duration::from_secs(6),
                ..KafkaConfig::default()
            };
            match KafkaTransport::connect(config) {
                Ok(t) => (Arc::new(t), topic, subscription),
                Err(e) => return fail(&e.to_string()),
            }
        }
        _ => {
            return fail(
                "usage: conformance-member pulsar <url> <admin url> <namespace> <topic> <subscription> | kafka <bootstrap> <namespace> <topic> <subscription>",
            );
        }
    };
    let mut consumer = match transport.subscribe(topic, subscription, SubscriptionKind::Keyed).await {
        Ok(c) => c,
        Err(e) => return fail(&e.to_string()),
    };
    let mut out = std::io::stdout();
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    loop {
        match consumer.next().await {
            Ok(d) => {
                let _ = writeln!(out, "got {}", String::from_utf8_lossy(&d.payload));
                let _ = out.flush();
                d.ack().await;
            }
            Err(e) => return fail(&e.to_string()),
        }
    }
}

/// Subscribes to partition 1 of `topic` under the name its subscription's consumer has, and
/// keeps the consumer open without reading.
async fn ghost(url: &str, admin: &str, namespace: &str, topic: &str, subscription: &str) -> Result<(), String> {
    let config = PulsarConfig {
        service_url: url.to_string(),
        namespace: namespace.to_string(),
        ..PulsarConfig::default()
    };
    let partition = format!("{}-partition-1", config.topic(topic));
    let local = partition.rsplit('/').next().unwrap_or(&partition);
    let stats_url = format!(
        "{}/admin/v2/persistent/{}/{namespace}/{local}/stats",
        admin.trim_end_matches('/'),
        config.tenant
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let mut name = None;
    for _ in 0..100 {
        if let Ok(response) = http.get(&stats_url).send().await {
            if let Ok(stats) = response.json::<serde_json::Value>().await {
                name = stats["subscriptions"][subscription]["consumers"][0]["consumerName"]
                    .as_str()
                    .map(str::to_string);
            }
        }
        if name.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let name = name.ok_or_else(|| format!("{partition} has no consumer in {subscription}"))?;
    let client = pulsar::Pulsar::builder(url, pulsar::TokioExecutor)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let _consumer: pulsar::Consumer<Vec<u8>, _> = client
        .consumer()
        .with_topic(&partition)
        .with_subscription(subscription)
        .with_subscription_type(pulsar::SubType::Failover)
        .with_consumer_name(&name)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    std::future::pending::<()>().await;
    Ok(())
}

fn fail(message: &str) -> std::process::ExitCode {
    eprintln!("conformance-member: {message}");
    std::process::ExitCode::from(2)
}
