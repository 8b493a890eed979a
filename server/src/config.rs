//! The configuration shared by every binary.
//!
//! Layers, later ones winning: built-in defaults, a TOML file (`--config`), environment
//! variables `BATON_<SECTION>__<KEY>` (e.g. `BATON_STORAGE__URL=redis://…`), then flags.

use std::net::SocketAddr;
use std::path::Path;

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
    /// `kafka://host:port[,host:port]`, or `memory://` (one process only).
    pub url: String,
    /// Prefix of topics and consumer groups.
    pub namespace: String,
    /// Partitions of topics Baton creates.
    pub partitions: i32,
    /// Redeliveries before a message is dead-lettered.
    pub max_redeliveries: u32,
    /// Longest time the broker may hold a fetch without data, in milliseconds. Brokers that
    /// answer as soon as data arrives (Apache Kafka) are not slowed by it; tansu always waits the
    /// full time, so every hop of a workflow pays it there: use 5–10.
    pub fetch_wait_ms: u64,
    /// How long the producer waits to batch messages, in milliseconds.
    pub linger_ms: u64,
    /// Most messages in one record batch. Use 1 on tansu, which serves a consumer starting inside
    /// a batch from the next batch (skipping the rest of that one).
    pub batch_messages: usize,
    /// How often a process announces its consumers to the others, in milliseconds.
    pub heartbeat_ms: u64,
    /// How long a process may stay silent before the others take over its partitions, in
    /// milliseconds (the time a killed process's partitions wait for a new reader).
    pub session_timeout_ms: u64,
}

impl Default for TransportSection {
    fn default() -> Self {
        Self {
            url: "kafka://127.0.0.1:9092".into(),
            namespace: "baton.".into(),
            partitions: 4,
            max_redeliveries: 3,
            fetch_wait_ms: 100,
            linger_ms: 1,
            batch_messages: 10_000,
            heartbeat_ms: 500,
            session_timeout_ms: 6000,
        }
    }
}

/// The state store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSection {
    /// `redis://host:port/db`, or `memory://` (one process only).
    pub url: String,
    /// Prefix of every key.
    pub prefix: String,
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379/0".into(),
            prefix: "baton:".into(),
        }
    }
}

/// The workflow engine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSection {
    /// Workflows whose instances this engine handles.
    pub workflows: Vec<String>,
    /// Shard tasks per process.
    pub shards: usize,
    /// States cached per shard.
    pub cache_per_shard: usize,
    /// How long ended instances are kept, in seconds.
    pub retention_secs: u64,
}

impl Default for EngineSection {
    fn default() -> Self {
        Self {
            workflows: Vec::new(),
            shards: 8,
            cache_per_shard: 4_096,
            retention_secs: 7 * 24 * 3600,
        }
    }
}

/// The tag engine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TagEngineSection {
    /// Workflows whose tags it keeps.
    pub workflows: Vec<String>,
    /// Services whose delegated tasks it handles.
    pub services: Vec<String>,
    /// Instances per page of a command by tag.
    pub page_size: usize,
}

impl Default for TagEngineSection {
    fn default() -> Self {
        Self {
            workflows: Vec::new(),
            services: Vec::new(),
            page_size: 1_000,
        }
    }
}

/// The timer service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimersSection {
    /// Lease of a claimed timer, in milliseconds.
    pub lease_ms: u64,
    /// Timers claimed per round.
    pub batch: usize,
    /// Longest sleep between checks, in milliseconds.
    pub max_idle_ms: u64,
}

impl Default for TimersSection {
    fn default() -> Self {
        Self {
            lease_ms: 30_000,
            batch: 256,
            max_idle_ms: 500,
        }
    }
}

/// Workers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSection {
    /// Service attempts at once.
    pub concurrency: usize,
    /// Workflow tasks at once.
    pub workflow_concurrency: usize,
}

impl Default for WorkerSection {
    fn default() -> Self {
        Self {
            concurrency: 64,
            workflow_concurrency: 16,
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
    /// Log filter (`info`, `baton=debug`, …).
    pub log: String,
}

impl Default for ProcessSection {
    fn default() -> Self {
        Self {
            health_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            shutdown_deadline_secs: 30,
            log: "info".into(),
        }
    }
}

/// Everything a Baton binary can be configured with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatonConfig {
    /// The broker.
    pub transport: TransportSection,
    /// The store.
    pub storage: StorageSection,
    /// The workflow engine.
    pub engine: EngineSection,
    /// The tag engine.
    pub tag_engine: TagEngineSection,
    /// The timer service.
    pub timers: TimersSection,
    /// Workers.
    pub worker: WorkerSection,
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
            "kafka" | "memory" => {}
            other => {
                return invalid(format!(
                    "transport.url `{}`: unknown scheme `{other}` (use kafka:// or memory://)",
                    self.transport.url
                ));
            }
        }
        match scheme(&self.storage.url).as_str() {
            "redis" | "memory" => {}
            other => {
                return invalid(format!(
                    "storage.url `{}`: unknown scheme `{other}` (use redis:// or memory://)",
                    self.storage.url
                ));
            }
        }
        if self.transport.partitions < 1 {
            return invalid("transport.partitions must be at least 1".into());
        }
        if self.transport.fetch_wait_ms == 0 || self.transport.fetch_wait_ms > 300_000 {
            return invalid("transport.fetch_wait_ms must be between 1 and 300000".into());
        }
        if self.transport.batch_messages == 0 || self.transport.batch_messages > 1_000_000 {
            return invalid("transport.batch_messages must be between 1 and 1000000".into());
        }
        if self.transport.linger_ms > 300_000 {
            return invalid("transport.linger_ms must be at most 300000".into());
        }
        if self.transport.heartbeat_ms == 0 || self.transport.session_timeout_ms < 3 * self.transport.heartbeat_ms {
            return invalid(format!(
                "transport.session_timeout_ms ({}) must be at least three heartbeats (transport.heartbeat_ms = {}, at least 1)",
                self.transport.session_timeout_ms, self.transport.heartbeat_ms
            ));
        }
        if self.engine.shards == 0 || self.engine.cache_per_shard == 0 {
            return invalid("engine.shards and engine.cache_per_shard must be at least 1".into());
        }
        if self.worker.concurrency == 0 || self.worker.workflow_concurrency == 0 {
            return invalid("worker.concurrency and worker.workflow_concurrency must be at least 1".into());
        }
        if self.tag_engine.page_size == 0 || self.timers.batch == 0 {
            return invalid("tag_engine.page_size and timers.batch must be at least 1".into());
        }
        Ok(())
    }

    /// The effective configuration as TOML (for `--print-config`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
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
            text.contains("[transport]") && text.contains("kafka://127.0.0.1:9092"),
            "{text}"
        );
        let back: BatonConfig = toml::from_str(&text).expect("round trip");
        assert_eq!(back, config);
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
        rejects(
            |c| c.transport.session_timeout_ms = 1000,
            "transport.session_timeout_ms (1000)",
        );
        rejects(|c| c.transport.fetch_wait_ms = 0, "fetch_wait_ms");
        rejects(|c| c.transport.batch_messages = 0, "batch_messages");
    }
}
