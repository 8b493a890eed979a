//! Chooses transport and storage backends from their URLs, never in code.

use std::sync::Arc;
use std::time::Duration;

use baton_storage::{InMemoryStore, RedisAccess, RedisOptions, RedisStore, Stores};
use baton_transport::{
    InMemoryTransport, KafkaConfig, KafkaTransport, MemoryConfig, PulsarConfig, PulsarPolicies, PulsarTransport,
    Transport,
};

use crate::config::{StorageSection, TransportSection, redact_url};

/// A backend could not be reached or configured.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The broker client could not be created.
    #[error("transport {url}: {source}")]
    Transport {
        /// The configured URL.
        url: String,
        /// Why.
        #[source]
        source: baton_transport::TransportError,
    },
    /// The store could not be reached.
    #[error("storage {url}: {source}")]
    Storage {
        /// The configured URL.
        url: String,
        /// Why.
        #[source]
        source: baton_storage::StorageError,
    },
    /// The URL names no known backend.
    #[error("{0}")]
    Unsupported(String),
    /// A connection attempt did not finish in time.
    #[error("{what} did not answer within {after:?}")]
    Timeout {
        /// `broker` or `store`.
        what: &'static str,
        /// How long it was given.
        after: Duration,
    },
}

impl BackendError {
    /// Whether connecting again later may succeed (the backend is down or slow), as opposed
    /// to a setting that can never work.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { source, .. } => source.is_transient(),
            Self::Storage { source, .. } => source.is_transient(),
            Self::Timeout { .. } => true,
            Self::Unsupported(_) => false,
        }
    }
}

/// `s` trimmed, or none if that leaves nothing.
fn non_empty(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.trim().to_string())
}

/// The Pulsar transport's settings from the `[transport]` section (reading `token_file`).
pub fn pulsar_config(section: &TransportSection) -> Result<PulsarConfig, String> {
    // The Pulsar client takes its credentials from the token settings only; refused without
    // echoing them, rather than printed in every connection error.
    for (setting, url) in [
        ("transport.url", &section.url),
        ("transport.pulsar.admin_url", &section.pulsar.admin_url),
    ] {
        if url.split_once("://").is_some_and(|(_, rest)| rest.contains('@')) {
            return Err(format!(
                "{setting} `{}` holds credentials, which Pulsar does not take in the URL: set \
                 transport.pulsar.token or token_file",
                redact_url(url)
            ));
        }
    }
    let p = &section.pulsar;
    let token = match (non_empty(&p.token), non_empty(&p.token_file)) {
        (Some(_), Some(_)) => return Err("set transport.pulsar.token or transport.pulsar.token_file, not both".into()),
        (Some(token), None) => Some(token),
        (None, Some(file)) => Some(
            std::fs::read_to_string(&file)
                .map_err(|e| format!("transport.pulsar.token_file {file}: {e}"))?
                .trim()
                .to_string(),
        ),
        (None, None) => None,
    };
    Ok(PulsarConfig {
        // `pulsar://host:6650/` means the same as without the slash; `pulsar://` stays as it is,
        // for validation to reject.
        service_url: match section.url.strip_suffix('/') {
            Some(url) if !url.ends_with(':') && !url.ends_with('/') => url.to_string(),
            _ => section.url.clone(),
        },
        admin_url: non_empty(&p.admin_url),
        tenant: p.tenant.clone(),
        namespace: p.namespace.clone(),
        partitions: section.partitions,
        max_redeliveries: section.max_redeliveries,
        nack_delay: Duration::from_millis(section.nack_delay_ms),
        prefetch: section.prefetch,
        batch_messages: p.batch_messages,
        policies: PulsarPolicies {
            retention_minutes: p.retention_minutes,
            retention_size_mb: p.retention_size_mb,
            deduplication: p.deduplication,
            inactive_topic_delete_secs: p.inactive_topic_delete_secs,
            enforce: p.enforce_policies,
        },
        token,
        tls_trust_certs: non_empty(&p.tls_trust_certs).map(Into::into),
        operation_timeout: Duration::from_millis(p.operation_timeout_ms),
        connect_timeout: Duration::from_millis(p.connect_timeout_ms),
        max_reconnect_delay: Duration::from_millis(p.max_reconnect_delay_ms),
    })
}

/// The Kafka transport's settings from the `[transport]` section.
pub fn kafka_config(section: &TransportSection) -> Result<KafkaConfig, String> {
    let k = &section.kafka;
    let servers = section.url.split_once("://").map(|(_, rest)| rest).unwrap_or_default();
    // librdkafka takes no credentials in its bootstrap list; refused without echoing them.
    if servers.contains('@') {
        return Err(format!(
            "transport.url `{}` holds credentials, which Kafka does not take in the URL: set \
             transport.kafka.sasl_username and sasl_password (or sasl_password_file)",
            redact_url(&section.url)
        ));
    }
    let sasl_password = match (non_empty(&k.sasl_password), non_empty(&k.sasl_password_file)) {
        (Some(_), Some(_)) => {
            return Err("set transport.kafka.sasl_password or transport.kafka.sasl_password_file, not both".into());
        }
        (Some(password), None) => password,
        (None, Some(file)) => std::fs::read_to_string(&file)
            .map_err(|e| format!("transport.kafka.sasl_password_file {file}: {e}"))?
            .trim()
            .to_string(),
        (None, None) => String::new(),
    };
    Ok(KafkaConfig {
        bootstrap_servers: servers.trim_end_matches('/').to_string(),
        namespace: k.namespace.clone(),
        partitions: i32::try_from(section.partitions).unwrap_or(i32::MAX),
        replication_factor: k.replication_factor,
        max_redeliveries: section.max_redeliveries,
        nack_delay: Duration::from_millis(section.nack_delay_ms),
        prefetch: usize::try_from(section.prefetch).unwrap_or(usize::MAX),
        fetch_wait: Duration::from_millis(k.fetch_wait_ms),
        linger: Duration::from_millis(k.linger_ms),
        session_timeout: Duration::from_millis(k.session_timeout_ms),
        max_poll_interval: Duration::from_millis(k.max_poll_interval_ms),
        max_reconnect_delay: Duration::from_millis(k.max_reconnect_delay_ms),
        security: baton_transport::KafkaSecurity {
            protocol: k.security_protocol.clone(),
            sasl_mechanism: k.sasl_mechanism.clone(),
            sasl_username: k.sasl_username.clone(),
            sasl_password,
            tls_ca_file: k.tls_ca_file.clone(),
            tls_cert_file: k.tls_cert_file.clone(),
            tls_key_file: k.tls_key_file.clone(),
        },
        ..KafkaConfig::default()
    })
}

/// Connects the transport named by `transport.url`, its messages bounded by
/// `transport.max_message_bytes`, under the chaos layer when `transport.chaos` sets a rate.
pub async fn connect_transport(section: &TransportSection) -> Result<Arc<dyn Transport>, BackendError> {
    let transport = baton_transport::SizeLimit::wrap(connect_broker(section).await?, section.max_message_bytes);
    let chaos = section.chaos.config();
    if !chaos.is_active() {
        return Ok(transport);
    }
    tracing::warn!(
        duplicate_publish = chaos.duplicate_publish,
        duplicate_delivery = chaos.duplicate_delivery,
        reorder = chaos.reorder,
        "transport.chaos is on: deliveries are duplicated and reordered on purpose"
    );
    Ok(baton_transport::Chaos::wrap(transport, chaos).0)
}

/// The broker client `section.url` names.
async fn connect_broker(section: &TransportSection) -> Result<Arc<dyn Transport>, BackendError> {
    let (scheme, _) = section.url.split_once("://").unwrap_or(("", ""));
    let failed = |source| BackendError::Transport {
        url: redact_url(&section.url),
        source,
    };
    match scheme {
        "pulsar" | "pulsar+ssl" => {
            let config = pulsar_config(section).map_err(|e| failed(baton_transport::TransportError::Config(e)))?;
            Ok(Arc::new(PulsarTransport::connect(config).await.map_err(failed)?))
        }
        "kafka" => Ok(Arc::new(
            KafkaTransport::connect(
                kafka_config(section).map_err(|e| failed(baton_transport::TransportError::Config(e)))?,
            )
            .map_err(failed)?,
        )),
        "memory" => Ok(Arc::new(InMemoryTransport::new(MemoryConfig {
            max_redeliveries: section.max_redeliveries,
            ..MemoryConfig::default()
        }))),
        other => Err(BackendError::Unsupported(format!(
            "unknown transport scheme `{other}` in {}",
            redact_url(&section.url)
        ))),
    }
}

/// The Redis connection's settings from the `[storage]` section.
pub fn redis_options(section: &StorageSection) -> RedisOptions {
    RedisOptions {
        connect_timeout: Duration::from_millis(section.connect_timeout_ms),
        response_timeout: Duration::from_millis(section.response_timeout_ms),
        max_reconnect_delay: Duration::from_millis(section.max_reconnect_delay_ms),
        reconnect_attempts: section.reconnect_attempts,
    }
}

/// How to reach and sign in to Redis: `storage.username`, `storage.password` or
/// `storage.password_file`, and `storage.tls_ca_file`, `storage.tls_cert_file` and
/// `storage.tls_key_file` (the files are read now).
pub fn redis_access(section: &StorageSection) -> Result<RedisAccess, String> {
    // A password is taken as written (spaces included); a file loses its trailing newline.
    let inline = (!section.password.is_empty()).then(|| section.password.clone());
    let password = match (inline, non_empty(&section.password_file)) {
        (Some(_), Some(_)) => return Err("set storage.password or storage.password_file, not both".into()),
        (Some(password), None) => Some(password),
        (None, Some(file)) => {
            let text = std::fs::read_to_string(&file).map_err(|e| format!("storage.password_file {file}: {e}"))?;
            let password = text.trim_end_matches(['\r', '\n']).to_string();
            if password.is_empty() {
                return Err(format!("storage.password_file {file} is empty"));
            }
            Some(password)
        }
        (None, None) => None,
    };
    let read = |setting: &str, file: &str| std::fs::read(file).map_err(|e| format!("{setting} {file}: {e}"));
    let tls_roots = match non_empty(&section.tls_ca_file) {
        Some(file) => Some(read("storage.tls_ca_file", &file)?),
        None => None,
    };
    let tls_client = match (non_empty(&section.tls_cert_file), non_empty(&section.tls_key_file)) {
        (Some(cert), Some(key)) => Some((
            read("storage.tls_cert_file", &cert)?,
            read("storage.tls_key_file", &key)?,
        )),
        (None, None) => None,
        _ => return Err("set both storage.tls_cert_file and storage.tls_key_file, or neither".into()),
    };
    if (tls_roots.is_some() || tls_client.is_some()) && !section.url.starts_with("rediss://") {
        return Err("storage.tls_ca_file, tls_cert_file and tls_key_file need a rediss:// storage.url".into());
    }
    Ok(RedisAccess {
        username: non_empty(&section.username),
        password,
        tls_roots,
        tls_client,
    })
}

/// Connects the stores named by `storage.url`.
pub async fn connect_stores(section: &StorageSection) -> Result<Stores, BackendError> {
    let (scheme, _) = section.url.split_once("://").unwrap_or(("", ""));
    match scheme {
        "redis" | "rediss" => {
            let access = redis_access(section).map_err(BackendError::Unsupported)?;
            let store = RedisStore::connect_as(&section.url, &access, &section.prefix, redis_options(section))
                .await
                .map_err(|source| BackendError::Storage {
                    url: redact_url(&section.url),
                    source,
                })?;
            Ok(Stores::all(store))
        }
        "memory" => Ok(Stores::all(InMemoryStore::new())),
        other => Err(BackendError::Unsupported(format!(
            "unknown storage scheme `{other}` in {}",
            redact_url(&section.url)
        ))),
    }
}
