//! A consumer in a process of its own, for the conformance cases that SIGKILL a member:
//!
//! `conformance-member pulsar <service url> <admin url> <namespace> <topic> <subscription>`
//! `conformance-member kafka <bootstrap servers> <namespace> <topic> <subscription>`
//!
//! It joins a keyed subscription, prints `ready`, then for every message prints `got <payload>`
//! and acknowledges it, until it is killed.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use baton_transport::{KafkaConfig, KafkaTransport, PulsarConfig, PulsarTransport, SubscriptionKind, Transport};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
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

fn fail(message: &str) -> std::process::ExitCode {
    eprintln!("conformance-member: {message}");
    std::process::ExitCode::from(2)
}
