//! Settings of the Pulsar transport, their validation, and how logical topic names map to
//! Pulsar's.

use std::path::PathBuf;
use std::time::Duration;

use crate::TransportError;

/// Settings of the Pulsar transport.
#[derive(Clone, Debug, PartialEq)]
pub struct PulsarConfig {
    /// The broker's binary protocol URL: `pulsar://host:6650` or `pulsar+ssl://host:6651`.
    pub service_url: String,
    /// The admin REST API. `None` derives it from the service URL: `http://host:8080`, or
    /// `https://host:8443` for `pulsar+ssl://`.
    pub admin_url: Option<String>,
    /// Tenant of every topic (created on first use if missing).
    pub tenant: String,
    /// Namespace of every topic (created on first use if missing, with the policies below).
    pub namespace: String,
    /// Partitions of topics Baton creates (client reply topics get one).
    pub partitions: u32,
    /// Redeliveries after which a message goes to its dead-letter topic.
    pub max_redeliveries: u32,
    /// Delay before a nacked message is redelivered (multiplied by its redelivery count).
    pub nack_delay: Duration,
    /// Messages the broker sends a consumer ahead of the application (receiver queue).
    pub prefetch: u32,
    /// Most messages a producer puts in one batched entry; 1 (the default) sends each message
    /// as an entry of its own. A publish never lingers: a batch holds what was published while
    /// the previous one was being confirmed. The broker acknowledges a batched entry as a
    /// whole, so a consumer that stops with part of an entry settled gets the entry's settled
    /// messages again after its restart (duplicates, never losses).
    pub batch_messages: u32,
    /// Namespace policies Baton sets when it creates the namespace, or at every start when
    /// [`PulsarPolicies::enforce`] is on.
    pub policies: PulsarPolicies,
    /// A token for token authentication (`Authorization: Bearer`), on both the binary protocol
    /// and the admin API.
    pub token: Option<String>,
    /// PEM file of the certificate authorities to trust for TLS (besides the public roots).
    pub tls_trust_certs: Option<PathBuf>,
    /// Longest wait for one broker operation (lookup, subscribe, send receipt).
    pub operation_timeout: Duration,
    /// Longest wait to open a connection.
    pub connect_timeout: Duration,
    /// Longest delay between reconnection attempts (they start at 10 ms and double).
    pub max_reconnect_delay: Duration,
}

/// Namespace policies.
#[derive(Clone, Debug, PartialEq)]
pub struct PulsarPolicies {
    /// Keep acknowledged messages, and messages of topics without subscriptions, this long.
    /// A message published before any subscription of its topic exists is kept this long
    /// for the first subscriber.
    pub retention_minutes: i64,
    /// ... and up to this many megabytes per topic.
    pub retention_size_mb: i64,
    /// Broker-side deduplication of messages a producer resends after a reconnect.
    pub deduplication: bool,
    /// Topics without producers and consumers whose subscriptions are caught up are deleted
    /// after this many seconds (client reply topics of clients that went away); 0 keeps them.
    pub inactive_topic_delete_secs: u32,
    /// Set these policies at every start, not only when Baton creates the namespace.
    pub enforce: bool,
}

impl Default for PulsarPolicies {
    fn default() -> Self {
        Self {
            retention_minutes: 24 * 60,
            retention_size_mb: 1024,
            deduplication: true,
            inactive_topic_delete_secs: 3600,
            enforce: false,
        }
    }
}

impl Default for PulsarConfig {
    fn default() -> Self {
        Self {
            service_url: "pulsar://127.0.0.1:6650".into(),
            admin_url: None,
            tenant: "baton".into(),
            namespace: "default".into(),
            partitions: 4,
            max_redeliveries: 3,
            nack_delay: Duration::from_millis(200),
            prefetch: 256,
            batch_messages: 1,
            policies: PulsarPolicies::default(),
            token: None,
            tls_trust_certs: None,
            operation_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_reconnect_delay: Duration::from_secs(2),
        }
    }
}

fn invalid(reason: String) -> TransportError {
    TransportError::Config(reason)
}

/// Whether a tenant, namespace or subscription name is one Pulsar accepts.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=' | ':'))
}

/// `host:port` of a URL `scheme://host:port[/]`, if it has a host and a valid port.
fn host_port(rest: &str) -> Option<(&str, u16)> {
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest.rsplit_once(':')?;
    let port = port.parse::<u16>().ok().filter(|p| *p > 0)?;
    (!host.is_empty() && !host.contains('/')).then_some((host, port))
}

impl PulsarConfig {
    /// Checks values that parse but cannot work; the error says which setting and why.
    pub fn validate(&self) -> Result<(), TransportError> {
        let (scheme, rest) = self.service_url.split_once("://").unwrap_or(("", ""));
        if !matches!(scheme, "pulsar" | "pulsar+ssl") {
            return Err(invalid(format!(
                "Pulsar service URL `{}`: use pulsar://host:port or pulsar+ssl://host:port",
                self.service_url
            )));
        }
        if host_port(rest).is_none() {
            return Err(invalid(format!(
                "Pulsar service URL `{}` has no host:port (e.g. pulsar://broker:6650)",
                self.service_url
            )));
        }
        if let Some(admin) = &self.admin_url {
            let (scheme, rest) = admin.split_once("://").unwrap_or(("", ""));
            if !matches!(scheme, "http" | "https") || host_port(rest).is_none() {
                return Err(invalid(format!(
                    "Pulsar admin URL `{admin}`: use http://host:port or https://host:port"
                )));
            }
        }
        for (what, name) in [("tenant", &self.tenant), ("namespace", &self.namespace)] {
            if !valid_name(name) || name.contains(':') {
                return Err(invalid(format!(
                    "Pulsar {what} `{name}`: use letters, digits, `-`, `_`, `.` or `=`"
                )));
            }
        }
        if self.partitions == 0 || self.partitions > 1024 {
            return Err(invalid(format!(
                "Pulsar partitions = {}: must be between 1 and 1024",
                self.partitions
            )));
        }
        if self.batch_messages == 0 || self.batch_messages > 100_000 {
            return Err(invalid(format!(
                "Pulsar batch_messages = {}: must be between 1 and 100000",
                self.batch_messages
            )));
        }
        if self.prefetch == 0 {
            return Err(invalid("Pulsar prefetch must be at least 1".into()));
        }
        if self.policies.retention_minutes < -1 || self.policies.retention_size_mb < -1 {
            return Err(invalid(
                "Pulsar retention must be -1 (infinite), 0 or a positive number".into(),
            ));
        }
        if self.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(invalid("the Pulsar token is empty".into()));
        }
        if let Some(path) = &self.tls_trust_certs {
            if !path.is_file() {
                return Err(invalid(format!(
                    "Pulsar TLS trust certificates {} is not a readable file",
                    path.display()
                )));
            }
        }
        for (what, d) in [
            ("operation timeout", self.operation_timeout),
            ("connect timeout", self.connect_timeout),
            ("reconnect delay", self.max_reconnect_delay),
        ] {
            if d.is_zero() {
                return Err(invalid(format!("the Pulsar {what} must be more than 0")));
            }
        }
        Ok(())
    }

    /// Whether the binary protocol uses TLS.
    pub fn tls(&self) -> bool {
        self.service_url.starts_with("pulsar+ssl://")
    }

    /// The admin REST API's base URL, without a trailing `/`.
    pub fn admin_base(&self) -> String {
        if let Some(admin) = &self.admin_url {
            return admin.trim_end_matches('/').to_string();
        }
        let rest = self.service_url.split_once("://").map(|(_, r)| r).unwrap_or_default();
        let host = host_port(rest).map(|(h, _)| h).unwrap_or("127.0.0.1");
        if self.tls() {
            format!("https://{host}:8443")
        } else {
            format!("http://{host}:8080")
        }
    }

    /// The Pulsar topic of a logical topic: `persistent://{tenant}/{namespace}/{name}`, with
    /// characters Pulsar does not allow in a topic name replaced by `_`.
    pub fn topic(&self, logical: &str) -> String {
        format!(
            "persistent://{}/{}/{}",
            self.tenant,
            self.namespace,
            local_name(logical)
        )
    }

    /// The topic a subscription's redeliveries go to. It is read only by that subscription, so a
    /// message one subscription nacks is not delivered again to the topic's other subscriptions.
    pub fn retry_topic(&self, logical: &str, subscription: &str) -> String {
        self.topic(&format!("retry:{}:{logical}", local_name(subscription)))
    }
}

/// A name Pulsar accepts as a topic's or a subscription's local name.
pub(crate) fn local_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=' | ':') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_follow_the_design_names() {
        let config = PulsarConfig {
            tenant: "acme".into(),
            namespace: "prod".into(),
            ..PulsarConfig::default()
        };
        assert_eq!(
            config.topic("workflow-cmd:Booking"),
            "persistent://acme/prod/workflow-cmd:Booking"
        );
        assert_eq!(config.topic("dlq:timers"), "persistent://acme/prod/dlq:timers");
        assert_eq!(
            config.topic("odd name/with?chars"),
            "persistent://acme/prod/odd_name_with_chars"
        );
        assert_eq!(
            config.retry_topic("service-task:Payment", "workers"),
            "persistent://acme/prod/retry:workers:service-task:Payment"
        );
        assert_eq!(config.admin_base(), "http://127.0.0.1:8080");
        let tls = PulsarConfig {
            service_url: "pulsar+ssl://broker.internal:6651".into(),
            ..PulsarConfig::default()
        };
        assert_eq!(tls.admin_base(), "https://broker.internal:8443");
    }

    #[test]
    fn settings_that_cannot_work_are_precise_errors() {
        let rejects = |change: fn(&mut PulsarConfig), needle: &str| {
            let mut config = PulsarConfig::default();
            change(&mut config);
            let message = config.validate().expect_err(needle).to_string();
            assert!(message.contains(needle), "{message} should mention {needle}");
        };
        PulsarConfig::default().validate().expect("defaults are valid");
        rejects(
            |c| c.service_url = "http://broker:6650".into(),
            "use pulsar://host:port",
        );
        rejects(|c| c.service_url = "pulsar://".into(), "has no host:port");
        rejects(|c| c.service_url = "pulsar://broker".into(), "has no host:port");
        rejects(|c| c.service_url = "pulsar://broker:0".into(), "has no host:port");
        rejects(|c| c.admin_url = Some("ftp://x:1".into()), "admin URL");
        rejects(|c| c.tenant = "a/b".into(), "tenant `a/b`");
        rejects(|c| c.namespace = String::new(), "namespace ``");
        rejects(|c| c.partitions = 0, "partitions = 0");
        rejects(|c| c.batch_messages = 0, "batch_messages = 0");
        rejects(|c| c.token = Some(" ".into()), "token is empty");
        rejects(
            |c| c.tls_trust_certs = Some("/nonexistent/ca.pem".into()),
            "/nonexistent/ca.pem",
        );
        rejects(|c| c.operation_timeout = Duration::ZERO, "operation timeout");
        rejects(|c| c.policies.retention_minutes = -5, "retention");
    }
}
