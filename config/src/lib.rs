//! The settings of every Baton component, one definition each: its fields, defaults (serde),
//! and validation. The component libraries take them as they are, and the binaries' shared
//! configuration file embeds them as its `[engine]`, `[timers]`, `[tag_engine]` and `[worker]`
//! sections, so no field is copied from one to the other by hand.
//!
//! Durations are whole milliseconds or seconds in files (`lease_ms`, `retention_secs`) and
//! [`Duration`]s in code.

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod durations;

/// The workflow engine's settings (`[engine]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Workflow names whose topics this engine consumes.
    pub workflows: Vec<String>,
    /// Shard tasks (instances are spread over them by id).
    pub shards: usize,
    /// States cached per shard.
    pub cache_per_shard: usize,
    /// Deliveries a shard takes at a time when several are ready.
    pub batch: usize,
    /// How long ended instances are kept (`retention_secs`).
    #[serde(rename = "retention_secs", with = "durations::secs")]
    pub retention: Duration,
    /// Publish every status change of an instance on `events:{Workflow}`, and every task it
    /// dispatches or takes a result of on `events:{Service}`, as CloudEvents. Off by default:
    /// each event is one more broker message.
    pub events: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            workflows: Vec::new(),
            shards: 8,
            cache_per_shard: 4_096,
            batch: 64,
            retention: Duration::from_secs(7 * 24 * 3600),
            events: false,
        }
    }
}

impl EngineConfig {
    /// Rejects settings that cannot work, naming the setting: a zero retention would delete an
    /// instance as it ends.
    pub fn validate(&self) -> Result<(), String> {
        if self.shards == 0 || self.cache_per_shard == 0 || self.batch == 0 {
            return Err("engine.shards, engine.cache_per_shard and engine.batch must be at least 1".into());
        }
        if self.retention.is_zero() {
            return Err("engine.retention_secs must be above zero".into());
        }
        Ok(())
    }
}

/// The timer service's settings (`[timers]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimerConfig {
    /// How long a claim hides a timer from other claimers (`lease_ms`).
    #[serde(rename = "lease_ms", with = "durations::millis")]
    pub lease: Duration,
    /// Timers claimed per round.
    pub batch: usize,
    /// Longest sleep between checks when nothing is known to be due, which bounds how late a
    /// timer added by another replica fires (`max_idle_ms`).
    #[serde(rename = "max_idle_ms", with = "durations::millis")]
    pub max_idle: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            batch: 256,
            max_idle: Duration::from_millis(500),
        }
    }
}

impl TimerConfig {
    /// Rejects settings that cannot work, naming the setting: a zero lease would fire a timer
    /// again at once.
    pub fn validate(&self) -> Result<(), String> {
        if self.batch == 0 {
            return Err("timers.batch must be at least 1".into());
        }
        if self.lease.is_zero() {
            return Err("timers.lease_ms must be above zero".into());
        }
        if self.max_idle.is_zero() {
            return Err("timers.max_idle_ms must be above zero".into());
        }
        Ok(())
    }
}

/// The tag engine's settings (`[tag_engine]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TagEngineConfig {
    /// Workflows whose tag topics to consume.
    pub workflows: Vec<String>,
    /// Services whose delegated tasks to handle.
    pub services: Vec<String>,
    /// Instances addressed per page of a command by tag.
    pub page_size: usize,
    /// Deliveries taken at a time when several are ready.
    pub batch: usize,
}

impl Default for TagEngineConfig {
    fn default() -> Self {
        Self {
            workflows: Vec::new(),
            services: Vec::new(),
            page_size: 1_000,
            batch: 64,
        }
    }
}

impl TagEngineConfig {
    /// Rejects settings that cannot work, naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.page_size == 0 || self.batch == 0 {
            return Err("tag_engine.page_size and tag_engine.batch must be at least 1".into());
        }
        Ok(())
    }
}

/// A worker's settings (`[worker]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Service task attempts run at once.
    pub concurrency: usize,
    /// Workflow tasks run at once.
    pub workflow_concurrency: usize,
    /// How long shutdown waits for in-flight attempts before cancelling them
    /// (`drain_timeout_ms`).
    #[serde(rename = "drain_timeout_ms", with = "durations::millis")]
    pub drain_timeout: Duration,
    /// How long a cancelled task may take to stop on its own before it is dropped
    /// (`cancel_grace_ms`).
    #[serde(rename = "cancel_grace_ms", with = "durations::millis")]
    pub cancel_grace: Duration,
    /// Runs kept in memory between their workflow tasks (sticky execution): a kept run's next
    /// task carries only the events since its last one. Past this many, the least recently
    /// used run is dropped, and its next task asks the engine for the whole history. 0 keeps
    /// none: every task replays the run from its whole history (one more round trip per task).
    pub sticky_runs: usize,
    /// Publish a CloudEvent on `events:{Service}` when an attempt fails and will be retried,
    /// or a task is delegated (the engine publishes dispatch, completion and failure when
    /// `engine.events` is on). Best effort: an event that cannot be published is logged.
    pub events: bool,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 64,
            workflow_concurrency: 16,
            drain_timeout: Duration::from_secs(30),
            cancel_grace: Duration::from_secs(5),
            sticky_runs: 10_000,
            events: false,
        }
    }
}

impl WorkerConfig {
    /// Rejects settings that cannot work, naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.concurrency == 0 || self.workflow_concurrency == 0 {
            return Err("worker.concurrency and worker.workflow_concurrency must be at least 1".into());
        }
        Ok(())
    }
}

/// What an API token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiRole {
    /// Read instances, histories and dead letters.
    Reader,
    /// Everything a reader can, plus every change: start, signal, cancel, retry, redrive.
    Operator,
}

/// A bearer token the API accepts.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// The token, sent as `Authorization: Bearer <token>`.
    pub token: String,
    /// What it allows.
    pub role: ApiRole,
}

impl std::str::FromStr for ApiToken {
    type Err = String;

    /// `ROLE:TOKEN`, e.g. `operator:3f9c…`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (role, token) = s
            .split_once(':')
            .ok_or_else(|| "not ROLE:TOKEN (e.g. operator:3f9c…)".to_string())?;
        let role = match role.trim() {
            "reader" => ApiRole::Reader,
            "operator" => ApiRole::Operator,
            other => return Err(format!("unknown role `{other}`: use reader or operator")),
        };
        Ok(Self {
            token: token.trim().to_string(),
            role,
        })
    }
}

/// The tokens of a tokens file: one `ROLE:TOKEN` per line; blank lines and lines starting
/// with `#` are skipped. An error names the line (never its token).
pub fn parse_api_tokens(text: &str) -> Result<Vec<ApiToken>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|(index, line)| line.parse().map_err(|e| format!("line {}: {e}", index + 1)))
        .collect()
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken")
            .field("token", &"<redacted>")
            .field("role", &self.role)
            .finish()
    }
}

/// The HTTP API's and dashboard's settings (`[api]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Where the API, the dashboard and `/metrics` are served.
    pub listen: std::net::SocketAddr,
    /// Accepted bearer tokens. With none, the API asks for no credentials (local development
    /// only: anyone who reaches the address can change instances).
    pub tokens: Vec<ApiToken>,
    /// A file of more tokens, one `ROLE:TOKEN` per line (a mounted secret), read at start by
    /// the `baton-api` binary.
    pub tokens_file: String,
    /// Workflows the API knows besides those in `engine.workflows` and `tag_engine.workflows`
    /// (their dead-letter topics are collected; starting an unknown workflow is refused when
    /// any workflow is known).
    pub workflows: Vec<String>,
    /// Services whose dead-letter topics to collect besides those in `tag_engine.services`.
    pub services: Vec<String>,
    /// Whether this process consumes the dead-letter topics into the store.
    pub collect_dead_letters: bool,
    /// Longest wait of a request that waits for a result (`?timeout=` is capped by it).
    pub max_wait_secs: u64,
    /// Largest request body accepted (a start's input, a signal's value), in bytes; a larger
    /// one is refused with 413 before it is read whole.
    pub max_body_bytes: usize,
    /// Requests a second each caller (a configured token, or else an address) may send under
    /// `/api/` on average; more get 429 with `Retry-After`. 0 turns the limit off.
    pub rate_limit_per_sec: u32,
    /// Requests a caller may send at once above that rate.
    pub rate_limit_burst: u32,
    /// Longest time a client may take to send a request's headers, from its connection's
    /// first byte or the end of its previous request; then the connection is closed.
    pub header_read_timeout_ms: u64,
    /// Most connections open at once; past it, new ones wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8080)),
            tokens: Vec::new(),
            tokens_file: String::new(),
            workflows: Vec::new(),
            services: Vec::new(),
            collect_dead_letters: true,
            max_wait_secs: 300,
            max_body_bytes: 1024 * 1024,
            rate_limit_per_sec: 100,
            rate_limit_burst: 200,
            header_read_timeout_ms: 10_000,
            max_connections: 1024,
        }
    }
}

impl ApiConfig {
    /// Adds the tokens of `tokens_file`, if one is set.
    pub fn read_tokens_file(&mut self) -> Result<(), String> {
        let file = self.tokens_file.trim();
        if file.is_empty() {
            return Ok(());
        }
        let text = std::fs::read_to_string(file).map_err(|e| format!("api.tokens_file {file}: {e}"))?;
        let tokens = parse_api_tokens(&text).map_err(|e| format!("api.tokens_file {file}: {e}"))?;
        if tokens.is_empty() {
            return Err(format!("api.tokens_file {file} holds no token"));
        }
        self.tokens.extend(tokens);
        Ok(())
    }

    /// Rejects settings that cannot work, naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_wait_secs == 0 {
            return Err("api.max_wait_secs must be at least 1".into());
        }
        if self.header_read_timeout_ms == 0 {
            return Err("api.header_read_timeout_ms must be at least 1".into());
        }
        if self.max_connections == 0 {
            return Err("api.max_connections must be at least 1".into());
        }
        if self.max_body_bytes < 1024 {
            return Err(format!(
                "api.max_body_bytes {} is below 1024: even a small start request would be refused",
                self.max_body_bytes
            ));
        }
        if self.rate_limit_per_sec > 0 && self.rate_limit_burst < self.rate_limit_per_sec {
            return Err(format!(
                "api.rate_limit_burst {} is below api.rate_limit_per_sec {}: a caller could never send a second's worth at once",
                self.rate_limit_burst, self.rate_limit_per_sec
            ));
        }
        if let Some(short) = self.tokens.iter().find(|t| t.token.len() < 16) {
            return Err(format!(
                "api.tokens: a {:?} token is {} characters long; use at least 16 (e.g. `openssl rand -hex 24`)",
                short.role,
                short.token.len()
            ));
        }
        if self
            .tokens
            .iter()
            .any(|t| t.token.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err("api.tokens: a token must not contain spaces or control characters".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_read_their_file_keys_and_fill_the_rest_with_defaults() {
        let timers: TimerConfig = toml::from_str("lease_ms = 1500\n").expect("timers");
        assert_eq!(timers.lease, Duration::from_millis(1500));
        assert_eq!(timers.batch, TimerConfig::default().batch);
        let engine: EngineConfig = toml::from_str("retention_secs = 60\nworkflows = [\"Booking\"]\n").expect("engine");
        assert_eq!(engine.retention, Duration::from_secs(60));
        assert_eq!(engine.workflows, vec!["Booking".to_string()]);
        let back: EngineConfig = toml::from_str(&toml::to_string(&engine).expect("render")).expect("round trip");
        assert_eq!(back, engine);
        assert!(
            toml::from_str::<WorkerConfig>("concurrencyy = 3\n").is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn a_tokens_file_gives_one_token_per_line_and_names_a_bad_line() {
        let tokens =
            parse_api_tokens("# the dashboard's\noperator:0123456789abcdef0123\n\n reader:fedcba9876543210fedc \n")
                .expect("tokens");
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens[0].role, ApiRole::Operator);
        assert_eq!(tokens[1].token, "fedcba9876543210fedc");
        let bad = parse_api_tokens("operator:0123456789abcdef0123\nadmin:0123456789abcdef0123\n").expect_err("role");
        assert!(bad.contains("line 2") && bad.contains("admin"), "{bad}");
        assert!(!bad.contains("0123456789abcdef"), "the token is never shown: {bad}");
        let missing = parse_api_tokens("0123456789abcdef0123\n").expect_err("no role");
        assert!(
            missing.contains("line 1") && missing.contains("ROLE:TOKEN"),
            "{missing}"
        );
    }

    #[test]
    fn settings_that_cannot_work_are_named() {
        let zero_lease = TimerConfig {
            lease: Duration::ZERO,
            ..TimerConfig::default()
        };
        assert!(
            zero_lease
                .validate()
                .expect_err("zero lease")
                .contains("timers.lease_ms")
        );
        let zero_retention = EngineConfig {
            retention: Duration::ZERO,
            ..EngineConfig::default()
        };
        assert!(
            zero_retention
                .validate()
                .expect_err("zero")
                .contains("engine.retention_secs")
        );
        let idle = WorkerConfig {
            concurrency: 0,
            ..WorkerConfig::default()
        };
        assert!(idle.validate().is_err());
        assert!(EngineConfig::default().validate().is_ok() && TimerConfig::default().validate().is_ok());
    }
}
