//! The configuration shared by every binary.
//!
//! Layers, later ones winning: built-in defaults, a TOML file (`--config`), environment
//! variables `BATON_<SECTION>__<KEY>` (e.g. `BATON_STORAGE__URL=redis://…`), then flags.

use std::net::SocketAddr;
use std::path::Path;

use baton_config::{ApiConfig, EngineConfig, TagEngineConfig, TimerConfig, WorkerConfig};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The configuration could not be loaded or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A layer could not be read or parsed.
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The message broker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportSection {
    /// `pulsar://host:6650` (or `pulsar+ssl://host:6651`), `kafka://host:port[,host:port]`, or
    /// `memory://` (one process only).
    pub url: String,
    /// Partitions of topics Baton creates.
    pub partitions: u32,
    /// Redeliveries before a message is dead-lettered.
    pub max_redeliveries: u32,
    /// Delay before a nacked message is redelivered, in milliseconds (multiplied by its
    /// redelivery count).
    pub nack_delay_ms: u64,
    /// Messages a consumer takes ahead of the component.
    pub prefetch: u32,
    /// Largest message, in bytes: a larger publish fails and a larger delivery is
    /// dead-lettered unread (`baton_transport::SizeLimit`).
    pub max_message_bytes: usize,
    /// Settings used when `url` is a Pulsar URL.
    pub pulsar: PulsarSection,
    /// Settings used when `url` is a Kafka URL.
    pub kafka: KafkaSection,
    /// Fault injection for fault tests and soak runs; off unless a rate is set. Never on in
    /// production: it makes the broker look like one that duplicates and reorders.
    pub chaos: ChaosSection,
}

/// Duplicated and reordered deliveries, injected over any broker (`baton_transport::Chaos`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChaosSection {
    /// Chance that a published message is published twice.
    pub duplicate_publish: f64,
    /// Chance that a delivery is handed to the component twice.
    pub duplicate_delivery: f64,
    /// Chance that a delivery is held back until the next one has overtaken it.
    pub reorder: f64,
    /// Longest a held-back delivery waits to be overtaken, in milliseconds.
    pub max_hold_ms: u64,
    /// Seed of the faults' dice.
    pub seed: u64,
}

impl Default for ChaosSection {
    fn default() -> Self {
        let config = baton_transport::ChaosConfig::default();
        Self {
            duplicate_publish: config.duplicate_publish,
            duplicate_delivery: config.duplicate_delivery,
            reorder: config.reorder,
            max_hold_ms: millis(config.max_hold),
            seed: config.seed,
        }
    }
}

impl ChaosSection {
    /// The transport layer's settings.
    pub fn config(&self) -> baton_transport::ChaosConfig {
        baton_transport::ChaosConfig {
            duplicate_publish: self.duplicate_publish,
            duplicate_delivery: self.duplicate_delivery,
            reorder: self.reorder,
            max_hold: std::time::Duration::from_millis(self.max_hold_ms),
            seed: self.seed,
        }
    }
}

impl Default for TransportSection {
    fn default() -> Self {
        Self {
            url: "pulsar://127.0.0.1:6650".into(),
            partitions: 4,
            max_redeliveries: 3,
            nack_delay_ms: 200,
            prefetch: 256,
            max_message_bytes: baton_transport::DEFAULT_MAX_MESSAGE_BYTES,
            pulsar: PulsarSection::default(),
            kafka: KafkaSection::default(),
            chaos: ChaosSection::default(),
        }
    }
}

/// The Pulsar transport.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PulsarSection {
    /// The admin REST API; empty derives it from `transport.url` (`http://host:8080`, or
    /// `https://host:8443` for `pulsar+ssl://`).
    pub admin_url: String,
    /// Tenant of Baton's topics (created if missing).
    pub tenant: String,
    /// Namespace of Baton's topics (created if missing, with the policies below).
    pub namespace: String,
    /// Token for token authentication; prefer `token_file`.
    pub token: String,
    /// File holding the token (read at start).
    pub token_file: String,
    /// PEM file of certificate authorities to trust for TLS.
    pub tls_trust_certs: String,
    /// Retention of the namespace, in minutes (-1: forever).
    pub retention_minutes: i64,
    /// Retention of the namespace, in megabytes per topic (-1: unbounded).
    pub retention_size_mb: i64,
    /// Broker-side deduplication of resent messages.
    pub deduplication: bool,
    /// Inactive topics whose subscriptions are caught up are deleted after this many seconds
    /// (0 keeps them).
    pub inactive_topic_delete_secs: u32,
    /// Set the namespace policies at every start, not only when Baton creates the namespace.
    pub enforce_policies: bool,
    /// Longest wait for one broker operation, in milliseconds.
    pub operation_timeout_ms: u64,
    /// Longest wait to open a connection, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Longest delay between reconnection attempts, in milliseconds.
    pub max_reconnect_delay_ms: u64,
    /// Most messages in one batched entry (1: no batching). A publish never waits for more.
    pub batch_messages: u32,
}

impl Default for PulsarSection {
    fn default() -> Self {
        let config = baton_transport::PulsarConfig::default();
        Self {
            admin_url: String::new(),
            tenant: config.tenant,
            namespace: config.namespace,
            token: String::new(),
            token_file: String::new(),
            tls_trust_certs: String::new(),
            retention_minutes: config.policies.retention_minutes,
            retention_size_mb: config.policies.retention_size_mb,
            deduplication: config.policies.deduplication,
            inactive_topic_delete_secs: config.policies.inactive_topic_delete_secs,
            enforce_policies: config.policies.enforce,
            operation_timeout_ms: millis(config.operation_timeout),
            connect_timeout_ms: millis(config.connect_timeout),
            max_reconnect_delay_ms: millis(config.max_reconnect_delay),
            batch_messages: config.batch_messages,
        }
    }
}

/// The Kafka transport.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSection {
    /// Prefix of topics and consumer groups.
    pub namespace: String,
    /// Replication factor of topics Baton creates.
    pub replication_factor: i32,
    /// Longest time the broker may hold an empty fetch, in milliseconds.
    pub fetch_wait_ms: u64,
    /// How long the producer waits to batch messages, in milliseconds.
    pub linger_ms: u64,
    /// How long the group coordinator waits for a silent consumer before its partitions go to
    /// the others, in milliseconds (at least the broker's `group.min.session.timeout.ms`).
    pub session_timeout_ms: u64,
    /// Longest pause between two polls before a consumer leaves its group, in milliseconds.
    pub max_poll_interval_ms: u64,
    /// Longest delay between two reconnection attempts to a broker, in milliseconds.
    pub max_reconnect_delay_ms: u64,
    /// `plaintext`, `ssl` (TLS), `sasl_plaintext` or `sasl_ssl` (SASL over TLS).
    pub security_protocol: String,
    /// With SASL: `PLAIN` (the default), `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub sasl_mechanism: String,
    /// With SASL: the user name.
    pub sasl_username: String,
    /// With SASL: the password; prefer `sasl_password_file`.
    pub sasl_password: String,
    /// With SASL: a file holding the password (read at start).
    pub sasl_password_file: String,
    /// With TLS: a PEM file of authorities to trust (empty: the system's).
    pub tls_ca_file: String,
    /// With TLS: a client certificate (PEM), for brokers that ask for one.
    pub tls_cert_file: String,
    /// With TLS: the client certificate's PEM private key.
    pub tls_key_file: String,
}

impl Default for KafkaSection {
    fn default() -> Self {
        let config = baton_transport::KafkaConfig::default();
        Self {
            namespace: config.namespace,
            replication_factor: config.replication_factor,
            fetch_wait_ms: millis(config.fetch_wait),
            linger_ms: millis(config.linger),
            session_timeout_ms: millis(config.session_timeout),
            max_poll_interval_ms: millis(config.max_poll_interval),
            max_reconnect_delay_ms: millis(config.max_reconnect_delay),
            security_protocol: "plaintext".into(),
            sasl_mechanism: String::new(),
            sasl_username: String::new(),
            sasl_password: String::new(),
            sasl_password_file: String::new(),
            tls_ca_file: String::new(),
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
        }
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The state store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSection {
    /// `redis://host:port/db`, or `memory://` (one process only).
    pub url: String,
    /// The Redis ACL user to sign in as (empty: the default user).
    pub username: String,
    /// The Redis password; prefer `password_file`.
    pub password: String,
    /// File holding the Redis password (read at start; a trailing newline is ignored).
    pub password_file: String,
    /// PEM file of the authorities to trust for a `rediss://` URL (empty: the system's roots).
    pub tls_ca_file: String,
    /// PEM client certificate, for a Redis that requires one (`tls-auth-clients yes`).
    pub tls_cert_file: String,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: String,
    /// Prefix of every key.
    pub prefix: String,
    /// Longest wait for one connection attempt to Redis, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Longest wait for the answer to one Redis command, in milliseconds.
    pub response_timeout_ms: u64,
    /// Longest delay between two reconnection attempts, in milliseconds (they start at 1 s).
    pub max_reconnect_delay_ms: u64,
    /// Reconnection attempts a command waits through before it fails (the component then
    /// retries it, with its own backoff, until Redis is back).
    pub reconnect_attempts: usize,
}

impl Default for StorageSection {
    fn default() -> Self {
        let options = baton_storage::RedisOptions::default();
        Self {
            url: "redis://127.0.0.1:6379/0".into(),
            username: String::new(),
            password: String::new(),
            password_file: String::new(),
            tls_ca_file: String::new(),
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            prefix: "baton:".into(),
            connect_timeout_ms: millis(options.connect_timeout),
            response_timeout_ms: millis(options.response_timeout),
            max_reconnect_delay_ms: millis(options.max_reconnect_delay),
            reconnect_attempts: options.reconnect_attempts,
        }
    }
}

/// Traces (`[telemetry]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySection {
    /// Where to export traces over OTLP/HTTP (`http://collector:4318`); none exports nothing.
    pub otlp_endpoint: Option<String>,
    /// The fraction of workflows traced (0 to 1); a trace is kept or dropped whole.
    pub sample_ratio: f64,
}

impl Default for TelemetrySection {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            sample_ratio: 1.0,
        }
    }
}

/// Process settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessSection {
    /// Where `/health` and `/ready` are served.
    pub health_listen: SocketAddr,
    /// How long shutdown may take before the process exits anyway, in seconds.
    pub shutdown_deadline_secs: u64,
    /// How long to keep trying an unreachable broker or store at start, in seconds, before
    /// exiting with an error.
    pub startup_deadline_secs: u64,
    /// How often readiness checks the broker and the store, in milliseconds (also the
    /// longest wait for each check's answer).
    pub readiness_period_ms: u64,
    /// Log filter (`info`, `baton=debug`, …).
    pub log: String,
    /// For fault runs only: this process reads its clock this many milliseconds off the
    /// system clock (ahead when positive), as a host whose clock drifted would. Logged as a
    /// warning at start when not 0.
    pub clock_offset_ms: i64,
}

impl Default for ProcessSection {
    fn default() -> Self {
        Self {
            health_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            shutdown_deadline_secs: 30,
            startup_deadline_secs: 60,
            readiness_period_ms: 1_000,
            log: "info".into(),
            clock_offset_ms: 0,
        }
    }
}

/// What `--print-config` shows in place of a secret; [`redact_url`] shows it in URLs.
pub use baton_runtime::{REDACTED, redact_url};

/// Everything a Baton binary can be configured with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatonConfig {
    /// The broker.
    pub transport: TransportSection,
    /// The store.
    pub storage: StorageSection,
    /// The workflow engine (its own settings, as the engine library takes them).
    pub engine: EngineConfig,
    /// The tag engine.
    pub tag_engine: TagEngineConfig,
    /// The timer service.
    pub timers: TimerConfig,
    /// Workers.
    pub worker: WorkerConfig,
    /// The HTTP API and dashboard.
    pub api: ApiConfig,
    /// Traces and events.
    pub telemetry: TelemetrySection,
    /// The process.
    pub process: ProcessSection,
}

impl BatonConfig {
    /// Defaults, then `file` if given, then the `BATON_*` environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(BatonConfig::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Invalid(format!(
                    "configuration file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file(file));
        }
        // BATON_CONFIG names the file itself (the --config flag); it is not a setting.
        figment = figment.merge(Env::prefixed("BATON_").ignore(&["CONFIG"]).split("__"));
        figment.extract().map_err(|e| ConfigError::Load(Box::new(e)))
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let scheme = |url: &str| url.split_once("://").map(|(s, _)| s.to_string()).unwrap_or_default();
        match scheme(&self.transport.url).as_str() {
            "pulsar" | "pulsar+ssl" | "kafka" | "memory" => {}
            other => {
                return invalid(format!(
                    "transport.url `{}`: unknown scheme `{other}` (use pulsar://, pulsar+ssl://, kafka:// or memory://)",
                    redact_url(&self.transport.url)
                ));
            }
        }
        match scheme(&self.storage.url).as_str() {
            "redis" | "rediss" | "memory" => {}
            other => {
                return invalid(format!(
                    "storage.url `{}`: unknown scheme `{other}` (use redis://, rediss:// or memory://)",
                    redact_url(&self.storage.url)
                ));
            }
        }
        // Each backend checks its own settings; the message names the setting.
        match scheme(&self.transport.url).as_str() {
            "pulsar" | "pulsar+ssl" => {
                crate::backends::pulsar_config(&self.transport)
                    .and_then(|c| c.validate().map_err(|e| e.to_string()))
                    .map_err(|e| ConfigError::Invalid(format!("transport: {e}")))?;
            }
            "kafka" => {
                crate::backends::kafka_config(&self.transport)
                    .map_err(|e| ConfigError::Invalid(format!("transport: {e}")))?
                    .validate()
                    .map_err(|e| ConfigError::Invalid(format!("transport: {e}")))?;
            }
            _ => {}
        }
        self.transport.chaos.config().validate().map_err(ConfigError::Invalid)?;
        if self.transport.max_message_bytes < 1024 {
            return invalid(format!(
                "transport.max_message_bytes must be at least 1024, not {}",
                self.transport.max_message_bytes
            ));
        }
        if self.transport.partitions < 1 || self.transport.prefetch < 1 {
            return invalid("transport.partitions and transport.prefetch must be at least 1".into());
        }
        // Each component checks its own section.
        self.engine
            .validate()
            .and_then(|()| self.tag_engine.validate())
            .and_then(|()| self.timers.validate())
            .and_then(|()| self.worker.validate())
            .and_then(|()| self.api.validate())
            .map_err(ConfigError::Invalid)?;
        // Zero durations that parse but cannot work: a zero lease fires a timer again at once,
        // a zero retention deletes an instance as it ends, zero deadlines never wait.
        let positive = [
            ("process.shutdown_deadline_secs", self.process.shutdown_deadline_secs),
            ("process.startup_deadline_secs", self.process.startup_deadline_secs),
            ("process.readiness_period_ms", self.process.readiness_period_ms),
            ("storage.connect_timeout_ms", self.storage.connect_timeout_ms),
            ("storage.response_timeout_ms", self.storage.response_timeout_ms),
            ("storage.max_reconnect_delay_ms", self.storage.max_reconnect_delay_ms),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return invalid(format!("{name} must be above zero"));
        }
        if !(0.0..=1.0).contains(&self.telemetry.sample_ratio) {
            return invalid(format!(
                "telemetry.sample_ratio {} must be between 0 and 1",
                self.telemetry.sample_ratio
            ));
        }
        if let Some(endpoint) = &self.telemetry.otlp_endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return invalid(format!(
                    "telemetry.otlp_endpoint `{}` must be an http:// or https:// URL (OTLP over HTTP, port 4318)",
                    redact_url(endpoint)
                ));
            }
        }
        if self.storage.prefix.is_empty() {
            return invalid("storage.prefix must not be empty (it keeps Baton's keys apart from others)".into());
        }
        if matches!(scheme(&self.storage.url).as_str(), "redis" | "rediss") {
            let host = self
                .storage
                .url
                .split_once("://")
                .map(|(_, rest)| rest)
                .unwrap_or_default();
            let host = host.rsplit_once('@').map(|(_, h)| h).unwrap_or(host);
            if host.is_empty() || host.starts_with(':') || host.starts_with('/') {
                return invalid(format!(
                    "storage.url `{}` has no host (use redis://host:port/db)",
                    redact_url(&self.storage.url)
                ));
            }
        }
        Ok(())
    }

    /// The effective configuration as TOML (for `--print-config`), secrets shown as
    /// `<redacted>`: the output is for reading and diffing, and it often ends up in logs.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        let redact = |secret: &mut String| {
            if !secret.is_empty() {
                *secret = REDACTED.to_string();
            }
        };
        redact(&mut shown.transport.pulsar.token);
        redact(&mut shown.transport.kafka.sasl_password);
        redact(&mut shown.storage.password);
        // A password can also sit inside any URL.
        for url in [
            &mut shown.transport.url,
            &mut shown.transport.pulsar.admin_url,
            &mut shown.storage.url,
        ] {
            *url = redact_url(url);
        }
        if let Some(endpoint) = &mut shown.telemetry.otlp_endpoint {
            *endpoint = redact_url(endpoint);
        }
        for token in &mut shown.api.tokens {
            redact(&mut token.token);
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }

    /// Reads the secret files the components named by `needs` use, so a missing or unreadable
    /// mount fails at start (and `--print-config`) with the setting's name. The contents are
    /// not kept here: each backend reads its file again when it connects.
    pub fn check_secret_files(&self, needs_store: bool) -> Result<(), ConfigError> {
        if needs_store && self.storage.url.starts_with("redis") {
            crate::backends::redis_access(&self.storage).map_err(ConfigError::Invalid)?;
        }
        Ok(())
    }
}

#[cfg(test)]
// figment's `Jail` closures return its (large) error type; that is its API, not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_render_as_toml() {
        let config = BatonConfig::default();
        config.validate().expect("defaults are valid");
        let text = config.to_toml();
        assert!(
            text.contains("[transport]") && text.contains("pulsar://127.0.0.1:6650"),
            "{text}"
        );
        let back: BatonConfig = toml::from_str(&text).expect("round trip");
        assert_eq!(back, config);
    }

    #[test]
    fn print_config_shows_no_password_of_any_url_field() {
        let mut config = BatonConfig::default();
        config.transport.url = "pulsar://broker:6650".into();
        config.transport.pulsar.admin_url = "http://admin:s3cret-admin@broker:8080".into();
        config.storage.url = "redis://:s3cret-redis@redis:6379/0".into();
        config.telemetry.otlp_endpoint = Some("http://collector:4318/?token=s3cret-otlp".into());
        let text = config.to_toml();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(
            text.contains("redis://:<redacted>@redis:6379/0")
                && text.contains("http://admin:<redacted>@broker:8080")
                && text.contains("http://collector:4318/?token=<redacted>"),
            "{text}"
        );
        config.storage.url = "postgres://:s3cret@db".into();
        let refused = config.validate().expect_err("unknown scheme").to_string();
        assert!(
            !refused.contains("s3cret") && refused.contains("<redacted>"),
            "{refused}"
        );
    }

    #[test]
    fn a_file_and_the_environment_override_defaults_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "baton.toml",
                "[storage]\nurl = \"redis://10.0.0.1:6379/2\"\n[engine]\nworkflows = [\"Booking\"]\nshards = 3\n",
            )?;
            jail.set_env("BATON_ENGINE__SHARDS", "5");
            jail.set_env("BATON_CONFIG", "baton.toml");
            let config = BatonConfig::load(Some(Path::new("baton.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.storage.url, "redis://10.0.0.1:6379/2");
            assert_eq!(config.engine.workflows, vec!["Booking".to_string()]);
            assert_eq!(config.engine.shards, 5, "the environment wins over the file");
            Ok(())
        });
    }

    #[test]
    fn bad_values_are_precise_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("typo.toml", "[engine]\nshardz = 3\n")?;
            let err = BatonConfig::load(Some(Path::new("typo.toml"))).expect_err("unknown key");
            assert!(err.to_string().contains("shardz"), "{err}");
            let missing = BatonConfig::load(Some(Path::new("nope.toml"))).expect_err("missing file");
            assert!(missing.to_string().contains("nope.toml"), "{missing}");
            Ok(())
        });
        let rejects = |change: fn(&mut BatonConfig), needle: &str| {
            let mut config = BatonConfig::default();
            change(&mut config);
            let message = config.validate().expect_err(needle).to_string();
            assert!(message.contains(needle), "{message}");
        };
        rejects(|c| c.storage.url = "postgres://db".into(), "unknown scheme `postgres`");
        rejects(|c| c.transport.url = "kafka://".into(), "bootstrap server ``");
        rejects(|c| c.transport.url = "pulsar://".into(), "has no host:port");
        rejects(|c| c.transport.url = "amqp://x:1".into(), "unknown scheme `amqp`");
        rejects(
            |c| {
                c.transport.url = "kafka://k:9092".into();
                c.transport.kafka.session_timeout_ms = 500;
            },
            "session timeout",
        );
        rejects(
            |c| {
                c.transport.url = "kafka://k:9092".into();
                c.transport.kafka.fetch_wait_ms = 0;
            },
            "fetch wait",
        );
        rejects(|c| c.transport.pulsar.tenant = "a/b".into(), "tenant `a/b`");
        rejects(
            |c| c.timers.lease = std::time::Duration::ZERO,
            "timers.lease_ms must be above zero",
        );
        rejects(
            |c| c.engine.retention = std::time::Duration::ZERO,
            "engine.retention_secs must be above zero",
        );
        rejects(
            |c| c.process.shutdown_deadline_secs = 0,
            "process.shutdown_deadline_secs must be above zero",
        );
        rejects(|c| c.storage.response_timeout_ms = 0, "storage.response_timeout_ms");
        rejects(
            |c| {
                c.transport.url = "kafka://k:9092".into();
                c.transport.kafka.security_protocol = "sasl_ssl".into();
            },
            "needs a SASL user name and password",
        );
        rejects(
            |c| {
                c.transport.url = "kafka://k:9092".into();
                c.transport.kafka.tls_ca_file = "/etc/ca.pem".into();
            },
            "Kafka TLS files need security protocol ssl or sasl_ssl",
        );
        rejects(
            |c| {
                c.transport.url = "kafka://k:9092".into();
                c.transport.kafka.security_protocol = "tls".into();
            },
            "Kafka security protocol `tls`",
        );
        rejects(
            |c| {
                c.transport.url = "kafka://k:9092".into();
                c.transport.kafka.sasl_password_file = "/nonexistent/kafka-password".into();
            },
            "transport.kafka.sasl_password_file /nonexistent/kafka-password",
        );
        rejects(
            |c| c.transport.max_message_bytes = 10,
            "transport.max_message_bytes must be at least 1024, not 10",
        );
        rejects(
            |c| c.transport.chaos.reorder = 2.0,
            "transport.chaos.reorder must be between 0 and 1",
        );
        rejects(
            |c| c.transport.chaos.duplicate_delivery = f64::NAN,
            "transport.chaos.duplicate_delivery",
        );
        // The components' own sections are read with their file keys.
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "keys.toml",
                "[timers]\nlease_ms = 1500\n[engine]\nretention_secs = 60\n[worker]\ndrain_timeout_ms = 250\n",
            )?;
            let config = BatonConfig::load(Some(Path::new("keys.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.timers.lease, std::time::Duration::from_millis(1500));
            assert_eq!(config.engine.retention, std::time::Duration::from_secs(60));
            assert_eq!(config.worker.drain_timeout, std::time::Duration::from_millis(250));
            Ok(())
        });
        rejects(|c| c.storage.url = "redis://".into(), "has no host");
        rejects(|c| c.storage.url = "redis://:6379/0".into(), "has no host");
        rejects(|c| c.transport.url = "pulsar://:6650".into(), "host");
        rejects(
            |c| c.transport.pulsar.token_file = "/nonexistent/token".into(),
            "/nonexistent/token",
        );
    }

    #[test]
    fn printed_configuration_shows_no_secret() {
        let mut config = BatonConfig::default();
        config.transport.pulsar.token = "pulsar-secret-token".into();
        config.storage.password = "redis-secret-password".into();
        config.transport.kafka.sasl_password = "kafka-secret-password".into();
        config.api.tokens.push(baton_config::ApiToken {
            token: "api-secret-token-0123456789".into(),
            role: baton_config::ApiRole::Operator,
        });
        let text = config.to_toml();
        for secret in [
            "pulsar-secret-token",
            "redis-secret-password",
            "kafka-secret-password",
            "api-secret-token-0123456789",
        ] {
            assert!(!text.contains(secret), "{secret} printed:\n{text}");
        }
        assert_eq!(text.matches(REDACTED).count(), 4, "{text}");
        assert!(text.contains("role = \"operator\""), "{text}");
    }

    #[test]
    fn the_redis_password_comes_from_one_place() {
        let dir = std::env::temp_dir().join(format!("baton-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("password");
        std::fs::write(&file, "from-the-file\n").expect("write");
        let mut config = BatonConfig::default();
        config.storage.username = "baton".into();
        config.storage.password_file = file.display().to_string();
        let credentials = crate::backends::redis_access(&config.storage).expect("credentials");
        assert_eq!(credentials.username.as_deref(), Some("baton"));
        assert_eq!(
            credentials.password.as_deref(),
            Some("from-the-file"),
            "the newline is dropped"
        );
        config.check_secret_files(true).expect("readable");

        config.storage.password = "inline".into();
        let both = config.check_secret_files(true).expect_err("both").to_string();
        assert!(both.contains("not both"), "{both}");
        config.storage.password.clear();
        config.storage.password_file = "/nonexistent/password".into();
        let missing = config.check_secret_files(true).expect_err("missing").to_string();
        assert!(
            missing.contains("storage.password_file /nonexistent/password"),
            "{missing}"
        );
        config
            .check_secret_files(false)
            .expect("a component without Redis does not read it");
        std::fs::write(&file, "\n").expect("write");
        config.storage.password_file = file.display().to_string();
        let empty = config.check_secret_files(true).expect_err("empty").to_string();
        assert!(empty.contains("is empty"), "{empty}");

        // TLS files: both halves of a client certificate, read at start, and only with rediss://.
        std::fs::write(&file, "password\n").expect("write");
        config.storage.tls_cert_file = file.display().to_string();
        let half = config.check_secret_files(true).expect_err("half").to_string();
        assert!(
            half.contains("both storage.tls_cert_file and storage.tls_key_file"),
            "{half}"
        );
        config.storage.tls_key_file = "/nonexistent/key.pem".into();
        let missing = config.check_secret_files(true).expect_err("key").to_string();
        assert!(
            missing.contains("storage.tls_key_file /nonexistent/key.pem"),
            "{missing}"
        );
        config.storage.tls_key_file = file.display().to_string();
        let plain = config.check_secret_files(true).expect_err("plain url").to_string();
        assert!(plain.contains("need a rediss://"), "{plain}");
        config.storage.url = "rediss://redis:6380/0".into();
        config.validate().expect("rediss:// is a storage scheme");
        config.check_secret_files(true).expect("readable TLS files");
    }
}
