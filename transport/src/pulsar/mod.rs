//! The Pulsar transport (via the `pulsar` crate), the production default.
//!
//! - **Topics** are `persistent://{tenant}/{namespace}/{name}` (DESIGN §2), created on first use
//!   as partitioned topics through the admin REST API, with the tenant and namespace (and the
//!   namespace's retention, deduplication and inactive-topic policies) created if missing.
//! - **Publishing** is committed in groups per topic: what was published while the previous
//!   group was being confirmed goes as one batched entry per partition (`producer`).
//! - **Subscriptions:** keyed = Failover on each partition (messages are routed to partitions
//!   by key, and each partition is read by one consumer at a time, so one key's messages reach
//!   one consumer in order even inside a batched entry), shared = Shared, exclusive =
//!   Exclusive. A new subscription starts at the earliest retained message.
//! - **Acknowledgement** after processing, individually; a batched entry once every message
//!   in it is settled. A nack republishes the message, after a
//!   delay growing with its redelivery count, to the subscription's own retry topic (which the
//!   same consumer reads), with the count in a message property: the broker's own counter is
//!   lost when a consumer reconnects or the broker restarts. Past `max_redeliveries`, and for
//!   poison, the message goes to `dlq:{topic}`, which keeps it under a durable subscription.
//! - **Reconnection** is the client's: connections and lookups are retried with a backoff capped
//!   at `max_reconnect_delay`; producers resend what the broker did not confirm.
//!
//! Modules by role: `config`, `admin`, `producer`, `consumer`, `ack` (and `tls`).

mod ack;
mod admin;
mod config;
mod consumer;
mod producer;
mod tls;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::try_join_all;
use pulsar::{Authentication, ConnectionRetryOptions, OperationRetryOptions, Pulsar, TokioExecutor};
use tokio::sync::{mpsc, oneshot};

pub use admin::DEAD_LETTER_SUBSCRIPTION;
pub use config::{PulsarConfig, PulsarPolicies};

use crate::{OutgoingMessage, Result, Subscription, SubscriptionKind, Transport, TransportError};

/// A connection to a Pulsar cluster.
#[derive(Clone)]
pub struct PulsarTransport {
    inner: Arc<Inner>,
}

/// A broker lookup run as its own task, shared by every check until it ends.
type Probe = futures::future::Shared<futures::future::BoxFuture<'static, std::result::Result<(), String>>>;

pub(crate) struct Inner {
    pub config: PulsarConfig,
    /// The lookup a readiness check awaits. It runs detached: the client's connection
    /// manager must never see a connection attempt cancelled halfway (a dropped attempt leaves
    /// it "connecting" forever, and every later operation waits on it).
    probe: Mutex<Option<Probe>>,
    pub client: Pulsar<TokioExecutor>,
    admin: Arc<admin::Admin>,
    producers: producer::Producers,
    exclusive: crate::ExclusiveClaims,
    pub opened: AtomicUsize,
    process: String,
}

impl Inner {
    /// The lookup in flight, or a new one if the last has ended.
    pub(crate) fn probe(&self) -> Probe {
        use futures::FutureExt;
        let mut probe = crate::locked(&self.probe);
        if let Some(running) = probe.as_ref().filter(|p| p.peek().is_none()) {
            return running.clone();
        }
        let client = self.client.clone();
        let topic = self.config.topic("baton-health");
        // A lookup is one request on the broker connection (reopened if it broke); it creates
        // nothing.
        let task = tokio::spawn(async move { client.lookup_topic(topic).await.map(drop).map_err(|e| e.to_string()) });
        let shared = async move { task.await.unwrap_or_else(|e| Err(e.to_string())) }
            .boxed()
            .shared();
        *probe = Some(shared.clone());
        shared
    }

    /// The partitions a topic is created with: none (a non-partitioned topic) for a client's
    /// replies and for dead letters, which need no parallelism.
    fn partitions_of(&self, logical: &str) -> Option<u32> {
        if logical.starts_with("client:") || logical.starts_with("dlq:") {
            None
        } else {
            Some(self.config.partitions)
        }
    }

    /// The Pulsar name of a logical topic, created if missing.
    async fn ensure(&self, logical: &str) -> Result<String> {
        let topic = self.config.topic(logical);
        self.admin
            .ensure_topic(&topic, self.partitions_of(logical), logical.starts_with("dlq:"))
            .await?;
        Ok(topic)
    }

    /// Publishes to a logical topic.
    pub(crate) async fn publish_logical(
        &self,
        logical: &str,
        key: &str,
        payload: Vec<u8>,
        properties: HashMap<String, String>,
    ) -> Result<()> {
        let topic = self.ensure(logical).await?;
        self.publish_full(&topic, key, payload, properties).await
    }

    /// Publishes to a Pulsar topic that exists.
    pub(crate) async fn publish_full(
        &self,
        topic: &str,
        key: &str,
        payload: Vec<u8>,
        properties: HashMap<String, String>,
    ) -> Result<()> {
        let message = producer::Outgoing {
            key: key.to_string(),
            payload,
            properties,
        };
        self.producers.publish(topic, vec![message]).await
    }
}

impl PulsarTransport {
    /// Validates the configuration and connects to the broker (retrying with a backoff capped at
    /// `max_reconnect_delay`, within `connect_timeout` per attempt).
    pub async fn connect(config: PulsarConfig) -> Result<Self> {
        config.validate()?;
        // Producers get a connection of their own. The client does not turn Nagle's algorithm
        // off, so on a shared connection a publish written after an acknowledgement (which the
        // broker does not answer) waits for the broker's delayed TCP ack, about 40 ms.
        let client = connect_client(&config).await?;
        let producing = connect_client(&config).await?;
        let admin = admin::Admin::new(&config)?;
        admin.ensure_namespace().await?;
        Ok(Self {
            inner: Arc::new(Inner {
                probe: Mutex::new(None),
                producers: producer::Producers::new(producing, config.batch_messages),
                client,
                admin,
                exclusive: crate::ExclusiveClaims::default(),
                opened: AtomicUsize::new(0),
                process: baton_shared_schemas::ClientId::new().to_string(),
                config,
            }),
        })
    }

    /// The Pulsar topic of a logical topic.
    pub fn pulsar_topic(&self, logical: &str) -> String {
        self.inner.config.topic(logical)
    }
}

/// A client of the broker, with Baton's retry, authentication and TLS settings.
async fn connect_client(config: &PulsarConfig) -> Result<Pulsar<TokioExecutor>> {
    let mut builder = Pulsar::builder(config.service_url.clone(), TokioExecutor)
        .with_connection_retry_options(ConnectionRetryOptions {
            min_backoff: Duration::from_millis(10),
            max_backoff: config.max_reconnect_delay,
            max_retries: 8,
            connection_timeout: config.connect_timeout,
            keep_alive: Duration::from_secs(10),
            ..ConnectionRetryOptions::default()
        })
        .with_operation_retry_options(OperationRetryOptions {
            operation_timeout: config.operation_timeout,
            retry_delay: Duration::from_millis(200),
            // A busy exclusive subscription or a topic still loading is retried this often.
            max_retries: Some(
                u32::try_from(config.operation_timeout.as_millis() / 200)
                    .unwrap_or(50)
                    .max(1),
            ),
        });
    if let Some(token) = &config.token {
        builder = builder.with_auth(Authentication {
            name: "token".into(),
            data: token.clone().into_bytes(),
        });
    }
    if config.tls_trust_certs.is_some() {
        let chain: Vec<u8> = tls::trust_certificates(config)?
            .iter()
            .flat_map(|der| pem_encode(der.as_ref()).into_bytes())
            .collect();
        builder = builder.with_certificate_chain(chain);
    }
    builder.build().await.map_err(|e| {
        let reason = e.to_string();
        // The client gives up at once, without saying why, on what waiting cannot fix: a
        // certificate it does not trust, or credentials the broker refuses.
        if reason.contains("fatal error when connecting") {
            return TransportError::Config(format!(
                "{} refused the connection for good (not an outage): check transport.pulsar.token or token_file, \
                 and for pulsar+ssl:// transport.pulsar.tls_trust_certs ({reason})",
                config.service_url
            ));
        }
        TransportError::Broker {
            topic: "(connect)".into(),
            reason: format!("cannot connect to {}: {reason}", config.service_url),
        }
    })
}

fn pem_encode(der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

fn properties_of(headers: Vec<(String, String)>) -> HashMap<String, String> {
    headers.into_iter().collect()
}

#[async_trait::async_trait]
impl Transport for PulsarTransport {
    fn subscription_status(&self) -> crate::SubscriptionStatus {
        crate::SubscriptionStatus {
            opened: self.inner.opened.load(Ordering::SeqCst),
            waiting: 0,
        }
    }

    async fn check(&self, timeout: Duration) -> Result<()> {
        let probe = self.inner.probe();
        let unreachable = |reason: String| TransportError::Broker {
            topic: "(health)".into(),
            reason: format!("broker {} does not answer: {reason}", self.inner.config.service_url),
        };
        match tokio::time::timeout(timeout, probe).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(unreachable(reason)),
            Err(_) => Err(unreachable(format!("no answer within {timeout:?}"))),
        }
    }

    async fn publish(&self, topic: &str, message: OutgoingMessage) -> Result<()> {
        self.inner
            .publish_logical(topic, &message.key, message.payload, properties_of(message.headers))
            .await
    }

    async fn publish_all(&self, messages: Vec<(String, OutgoingMessage)>) -> Result<()> {
        // One request per topic, in publish order, all topics at once.
        let mut by_topic: Vec<(String, Vec<producer::Outgoing>)> = Vec::new();
        for (logical, message) in messages {
            let message = producer::Outgoing {
                key: message.key,
                payload: message.payload,
                properties: properties_of(message.headers),
            };
            match by_topic.iter_mut().find(|(topic, _)| *topic == logical) {
                Some((_, group)) => group.push(message),
                None => by_topic.push((logical, vec![message])),
            }
        }
        try_join_all(by_topic.into_iter().map(|(logical, group)| async move {
            let topic = self.inner.ensure(&logical).await?;
            self.inner.producers.publish(&topic, group).await
        }))
        .await?;
        Ok(())
    }

    async fn subscribe(
        &self,
        topic: &str,
        subscription: &str,
        kind: SubscriptionKind,
    ) -> Result<Box<dyn Subscription>> {
        // Released when the subscription (or this call, on an error) drops it.
        let claim = self.inner.exclusive.claim(topic, subscription, kind)?;
        let opened = async {
            let main = self.inner.ensure(topic).await?;
            let retry = self.inner.config.retry_topic(topic, subscription);
            self.inner.admin.ensure_topic(&retry, None, false).await?;
            let spec = consumer::ConsumerSpec::new(vec![main, retry.clone()], subscription, kind, &self.inner.process);
            let raw = consumer::open(&self.inner, &spec).await?;
            Ok::<_, TransportError>((spec, raw, retry))
        };
        let (spec, raw, retry_topic) = match opened.await {
            Ok(opened) => opened,
            Err(e) => return Err(e),
        };
        let (settle_tx, settle_rx) = mpsc::unbounded_channel();
        let state = Arc::new(ack::AckState {
            inner: self.inner.clone(),
            logical_topic: topic.to_string(),
            retry_topic,
            inflight: Mutex::new(HashMap::new()),
            batches: Mutex::new(ack::BatchAcks::default()),
            next_tag: AtomicU64::new(0),
            settle: settle_tx,
            redeliveries: crate::DelayedRedeliveries::default(),
        });
        let redeliveries = state.redeliveries.clone();
        let buffer = usize::try_from(self.inner.config.prefetch).unwrap_or(256).max(1);
        let (tx, rx) = mpsc::channel(buffer);
        let (closing_tx, closing_rx) = oneshot::channel();
        tokio::spawn(consumer::run(
            self.inner.clone(),
            spec,
            raw,
            state,
            tx,
            settle_rx,
            closing_rx,
        ));
        self.inner.opened.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(consumer::PulsarSubscription {
            redeliveries,
            rx,
            closing: Some(closing_tx),
            inner: self.inner.clone(),
            _claim: claim,
        }))
    }
}
