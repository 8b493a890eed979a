//! Settings of the Kafka transport, their validation, and how logical topic names map to
//! Kafka's.

use std::time::Duration;

use crate::TransportError;

/// Settings of the Kafka transport.
#[derive(Clone, Debug, PartialEq)]
pub struct KafkaConfig {
    /// Broker addresses, `host:port[,host:port]`.
    pub bootstrap_servers: String,
    /// Prefix of every topic and consumer group (e.g. `prod.`).
    pub namespace: String,
    /// Partitions of topics created by Baton (client reply and retry topics get one).
    pub partitions: i32,
    /// Replication factor of topics created by Baton.
    pub replication_factor: i32,
    /// Redeliveries after which a message goes to its dead-letter topic.
    pub max_redeliveries: u32,
    /// Delay before a nacked message is redelivered (multiplied by its redelivery count).
    pub nack_delay: Duration,
    /// Messages a consumer fetches ahead of the application.
    pub prefetch: usize,
    /// How long `subscribe` waits for the group to give the new consumer its partitions.
    pub assignment_timeout: Duration,
    /// Longest time the broker may hold a fetch that has no data (`fetch.wait.max.ms`); Kafka
    /// answers as soon as data arrives, so this only bounds idle polls.
    pub fetch_wait: Duration,
    /// How long the producer waits to batch messages (`linger.ms`); each hop of a workflow pays it.
    pub linger: Duration,
    /// How long the group coordinator waits for a silent consumer before it gives the consumer's
    /// partitions to the others (`session.timeout.ms`; the broker bounds it with
    /// `group.min.session.timeout.ms`, 6 s by default).
    pub session_timeout: Duration,
    /// Longest pause between two polls of a consumer before it leaves its group
    /// (`max.poll.interval.ms`); also bounds how long a rebalance waits for a member.
    pub max_poll_interval: Duration,
    /// Longest delay between two reconnection attempts to a broker (`reconnect.backoff.max.ms`).
    pub max_reconnect_delay: Duration,
    /// How the clients authenticate and encrypt their connections.
    pub security: KafkaSecurity,
}

/// How Kafka clients authenticate and encrypt (`security.protocol`, `sasl.*`, `ssl.*`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KafkaSecurity {
    /// `plaintext` (the default), `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub protocol: String,
    /// With SASL: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (empty: `PLAIN`).
    pub sasl_mechanism: String,
    /// With SASL: the user name.
    pub sasl_username: String,
    /// With SASL: the password.
    pub sasl_password: String,
    /// With TLS: a PEM file of authorities to trust (empty: the system's).
    pub tls_ca_file: String,
    /// With TLS: a client certificate (PEM) for brokers that ask for one, with `tls_key_file`.
    pub tls_cert_file: String,
    /// With TLS: the client certificate's PEM private key.
    pub tls_key_file: String,
}

impl KafkaSecurity {
    fn uses_tls(&self) -> bool {
        matches!(self.protocol(), "ssl" | "sasl_ssl")
    }

    fn uses_sasl(&self) -> bool {
        matches!(self.protocol(), "sasl_plaintext" | "sasl_ssl")
    }

    fn protocol(&self) -> &str {
        if self.protocol.is_empty() {
            "plaintext"
        } else {
            &self.protocol
        }
    }

    /// Checks the settings, naming the one that cannot work.
    fn validate(&self) -> Result<(), String> {
        if !matches!(self.protocol(), "plaintext" | "ssl" | "sasl_plaintext" | "sasl_ssl") {
            return Err(format!(
                "Kafka security protocol `{}`: use plaintext, ssl, sasl_plaintext or sasl_ssl",
                self.protocol
            ));
        }
        if self.uses_sasl() {
            if !matches!(
                self.sasl_mechanism.as_str(),
                "" | "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512"
            ) {
                return Err(format!(
                    "Kafka SASL mechanism `{}`: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                    self.sasl_mechanism
                ));
            }
            if self.sasl_username.is_empty() || self.sasl_password.is_empty() {
                return Err(format!(
                    "Kafka security protocol {} needs a SASL user name and password",
                    self.protocol()
                ));
            }
        } else if !(self.sasl_mechanism.is_empty() && self.sasl_username.is_empty() && self.sasl_password.is_empty()) {
            return Err(format!(
                "Kafka SASL settings need security protocol sasl_plaintext or sasl_ssl, not {}",
                self.protocol()
            ));
        }
        let files = [
            ("CA", &self.tls_ca_file),
            ("client certificate", &self.tls_cert_file),
            ("client key", &self.tls_key_file),
        ];
        if !self.uses_tls() {
            if files.iter().any(|(_, f)| !f.is_empty()) {
                return Err(format!(
                    "Kafka TLS files need security protocol ssl or sasl_ssl, not {}",
                    self.protocol()
                ));
            }
            return Ok(());
        }
        if self.tls_cert_file.is_empty() != self.tls_key_file.is_empty() {
            return Err("Kafka TLS client certificate and key go together".into());
        }
        for (what, file) in files {
            if !file.is_empty() {
                std::fs::metadata(file).map_err(|e| format!("Kafka TLS {what} file {file}: {e}"))?;
            }
        }
        Ok(())
    }

    /// The librdkafka settings for these choices.
    pub(crate) fn apply(&self, client: &mut rdkafka::ClientConfig) {
        client.set("security.protocol", self.protocol());
        if self.uses_sasl() {
            let mechanism = if self.sasl_mechanism.is_empty() {
                "PLAIN"
            } else {
                &self.sasl_mechanism
            };
            client
                .set("sasl.mechanisms", mechanism)
                .set("sasl.username", &self.sasl_username)
                .set("sasl.password", &self.sasl_password);
        }
        if self.uses_tls() {
            // Brokers are verified by name (or address) as well as by authority.
            client.set("ssl.endpoint.identification.algorithm", "https");
            for (key, file) in [
                ("ssl.ca.location", &self.tls_ca_file),
                ("ssl.certificate.location", &self.tls_cert_file),
                ("ssl.key.location", &self.tls_key_file),
            ] {
                if !file.is_empty() {
                    client.set(key, file);
                }
            }
        }
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            namespace: "baton.".into(),
            partitions: 4,
            replication_factor: 1,
            max_redeliveries: 3,
            nack_delay: Duration::from_millis(200),
            prefetch: 256,
            assignment_timeout: Duration::from_secs(30),
            fetch_wait: Duration::from_millis(100),
            linger: Duration::from_millis(1),
            session_timeout: Duration::from_secs(10),
            max_poll_interval: Duration::from_secs(60),
            max_reconnect_delay: Duration::from_secs(2),
            security: KafkaSecurity::default(),
        }
    }
}

impl KafkaConfig {
    /// Checks values that parse but cannot work; the error says which setting and why.
    pub fn validate(&self) -> Result<(), TransportError> {
        let invalid = |m: String| Err(TransportError::Config(m));
        let servers: Vec<&str> = self.bootstrap_servers.split(',').map(str::trim).collect();
        for server in &servers {
            let valid = server
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
            if !valid {
                return invalid(format!(
                    "Kafka bootstrap server `{server}` in `{}` is not host:port (e.g. kafka://broker:9092)",
                    self.bootstrap_servers
                ));
            }
        }
        if !self
            .namespace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return invalid(format!(
                "Kafka namespace `{}`: use letters, digits, `.`, `_` or `-`",
                self.namespace
            ));
        }
        if !(1..=10_000).contains(&self.partitions) {
            return invalid(format!(
                "Kafka partitions = {}: must be between 1 and 10000",
                self.partitions
            ));
        }
        if !(1..=100).contains(&self.replication_factor) {
            return invalid(format!(
                "Kafka replication factor = {}: must be between 1 and 100",
                self.replication_factor
            ));
        }
        if self.prefetch == 0 {
            return invalid("Kafka prefetch must be at least 1".into());
        }
        if self.fetch_wait.is_zero() || self.fetch_wait > Duration::from_secs(300) {
            return invalid("Kafka fetch wait must be between 1 ms and 300 s".into());
        }
        if self.linger > Duration::from_secs(300) {
            return invalid("Kafka linger must be at most 300 s".into());
        }
        if self.max_reconnect_delay.is_zero() || self.max_reconnect_delay > Duration::from_secs(3600) {
            return invalid("Kafka reconnect delay must be between 1 ms and 1 h".into());
        }
        if self.session_timeout < Duration::from_secs(1) {
            return invalid("Kafka session timeout must be at least 1 s".into());
        }
        self.security.validate().map_err(TransportError::Config)?;
        if self.max_poll_interval < self.session_timeout {
            return invalid(format!(
                "Kafka max poll interval ({:?}) must be at least the session timeout ({:?})",
                self.max_poll_interval, self.session_timeout
            ));
        }
        Ok(())
    }

    /// The Kafka name of a logical topic: `{namespace}{name}` with `:` replaced by `.` and other
    /// characters Kafka does not allow by `_` (`workflow-cmd:Booking` → `baton.workflow-cmd.Booking`).
    pub fn topic(&self, logical: &str) -> String {
        format!("{}{}", self.namespace, kafka_name(logical))
    }

    /// The topic a subscription's redeliveries go to; only that subscription's group reads it,
    /// so a nack does not deliver the message again to the topic's other subscriptions.
    pub fn retry_topic(&self, logical: &str, subscription: &str) -> String {
        format!(
            "{}retry.{}.{}",
            self.namespace,
            kafka_name(subscription),
            kafka_name(logical)
        )
    }

    /// The consumer group of a subscription.
    pub fn group(&self, logical: &str, subscription: &str) -> String {
        format!("{}{}.{}", self.namespace, kafka_name(subscription), self.topic(logical))
    }
}

fn kafka_name(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            ':' => '.',
            c if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') => c,
            _ => '_',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_kafka() {
        let config = KafkaConfig::default();
        assert_eq!(config.topic("workflow-cmd:Booking"), "baton.workflow-cmd.Booking");
        assert_eq!(
            config.topic("dlq:service-task:Payment"),
            "baton.dlq.service-task.Payment"
        );
        assert_eq!(config.topic("a b/c"), "baton.a_b_c");
        assert_eq!(
            config.retry_topic("timers", "timer-service"),
            "baton.retry.timer-service.timers"
        );
        assert_eq!(
            config.group("timers", "timer-service"),
            "baton.timer-service.baton.timers"
        );
    }

    #[test]
    fn settings_that_cannot_work_are_precise_errors() {
        KafkaConfig::default().validate().expect("defaults are valid");
        let rejects = |change: fn(&mut KafkaConfig), needle: &str| {
            let mut config = KafkaConfig::default();
            change(&mut config);
            let message = config.validate().expect_err(needle).to_string();
            assert!(message.contains(needle), "{message} should mention {needle}");
        };
        rejects(|c| c.bootstrap_servers = String::new(), "bootstrap server ``");
        rejects(|c| c.bootstrap_servers = "broker".into(), "bootstrap server `broker`");
        rejects(
            |c| c.bootstrap_servers = "a:9092,:9092".into(),
            "bootstrap server `:9092`",
        );
        rejects(|c| c.namespace = "prod/".into(), "namespace `prod/`");
        rejects(|c| c.partitions = 0, "partitions = 0");
        rejects(|c| c.session_timeout = Duration::from_millis(10), "session timeout");
        rejects(|c| c.max_poll_interval = Duration::from_secs(2), "max poll interval");
    }
}
