//! The Apache Kafka broker in KRaft mode (`kafka.Kafka`): one node that is both broker and
//! controller, its storage formatted before the first start.

use std::process::Command;
use std::time::Duration;

use crate::maven::Jvm;
use crate::process::ServerProcess;
use crate::pulsar::{JAVA_HINT, log_config, rebuild};
use crate::{free_port, listening, maven, wait_until};

/// How long a start may take before it is a failure.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// The line the broker logs once it serves clients.
const STARTED: &str = "Kafka Server started";

/// A running Apache Kafka broker on loopback.
pub struct KafkaBroker {
    process: ServerProcess,
    command: Command,
    /// `host:port` to bootstrap from.
    pub bootstrap: String,
    /// With [`KafkaBroker::start_secured`]: `host:port` of the SASL-over-TLS listener.
    pub secure_bootstrap: Option<String>,
    /// With [`KafkaBroker::start_relayed`]: `host:port` to bootstrap from through the relay;
    /// the broker sends clients that came this way back to the relay.
    pub relayed_bootstrap: Option<String>,
    port: u16,
}

/// The SASL PLAIN user of a secured test broker.
pub const SASL_USER: &str = "baton";
/// Its password.
pub const SASL_PASSWORD: &str = "baton-sasl-secret";

/// The extra listener of a secured broker: SASL PLAIN over TLS, with the test authority's
/// server certificate. (Later keys override the plain broker's.)
fn secured_properties(port: u16, controller_port: u16, secure_port: u16, certs: &crate::TestCertificates) -> String {
    format!(
        "listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port},SASL_SSL://127.0.0.1:{secure_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{secure_port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_ssl.sasl.enabled.mechanisms=PLAIN
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_{SASL_USER}=\"{SASL_PASSWORD}\";
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location={keystore}
listener.name.sasl_ssl.ssl.truststore.type=PEM
listener.name.sasl_ssl.ssl.truststore.location={ca}
",
        keystore = certs.dir.join("kafka-keystore.pem").display(),
        ca = certs.ca.display(),
    )
}

fn server_properties(port: u16, controller_port: u16, logs: &std::path::Path) -> String {
    format!(
        "# Written by baton-test-support for one test broker.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={logs}
num.partitions=1
# One node: every internal topic has one copy.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Tests join groups often; a new group starts at once, and tests may use short sessions.
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
auto.create.topics.enable=false
",
        logs = logs.display()
    )
}

impl KafkaBroker {
    /// Resolves the broker (once), formats its storage, starts it on free loopback ports and waits
    /// until it serves.
    pub fn start() -> Self {
        Self::start_with(Jvm::Test)
    }

    /// Starts a broker whose JVM runs as given.
    pub fn start_with(jvm: Jvm) -> Self {
        Self::launch(jvm, None, None)
    }

    /// Starts a broker that also serves SASL PLAIN over TLS ([`SASL_USER`], [`SASL_PASSWORD`])
    /// on [`secure_bootstrap`](Self::secure_bootstrap), with `certs`' server certificate.
    pub fn start_secured(certs: &crate::TestCertificates) -> Self {
        Self::launch(Jvm::Test, Some(certs), None)
    }

    /// Starts a broker that also listens on `listen_port` and advertises `relay_port` to the
    /// clients that connect there: a relay from `relay_port` to `listen_port` then carries all
    /// of those clients' traffic, so it can cut them (and only them) off from the broker.
    pub fn start_relayed(listen_port: u16, relay_port: u16) -> Self {
        Self::launch(Jvm::Test, None, Some((listen_port, relay_port)))
    }

    fn launch(jvm: Jvm, certs: Option<&crate::TestCertificates>, relayed: Option<(u16, u16)>) -> Self {
        maven::require_java();
        let classpath = maven::classpath("kafka");
        let (port, controller_port, secure_port) = (free_port(), free_port(), free_port());
        let dir = ServerProcess::folder("kafka", port);
        let properties = dir.join("server.properties");
        let mut text = server_properties(port, controller_port, &dir.join("data"));
        if let Some(certs) = certs {
            // Kafka reads a PEM keystore as the private key followed by its certificate.
            let key = std::fs::read_to_string(&certs.server_key).expect("server key");
            let cert = std::fs::read_to_string(&certs.server_cert).expect("server certificate");
            std::fs::write(certs.dir.join("kafka-keystore.pem"), format!("{key}{cert}")).expect("keystore");
            text.push_str(&secured_properties(port, controller_port, secure_port, certs));
        }
        if let Some((listen, relay)) = relayed {
            // Later keys override the plain broker's. A client is told the addresses of the
            // listener it came in on: the relay's, for this one.
            text.push_str(&format!(
                "listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port},RELAYED://127.0.0.1:{listen}
advertised.listeners=PLAINTEXT://127.0.0.1:{port},RELAYED://127.0.0.1:{relay}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,RELAYED:PLAINTEXT
"
            ));
        }
        std::fs::write(&properties, text).expect("write server.properties");
        let java = |main: &str| {
            let mut command = Command::new("java");
            command
                .args(jvm.options())
                .arg(log_config())
                .arg("-cp")
                .arg(&classpath)
                .arg(main);
            command
        };
        // The cluster id only has to be a base64 UUID; this one is fixed, each broker is alone.
        let mut format = java("kafka.tools.StorageTool");
        format
            .args(["format", "--ignore-formatted", "-t", "q1Sh-9_ISia_zwGINzRvyQ", "-c"])
            .arg(&properties);
        let formatted = format
            .output()
            .unwrap_or_else(|e| panic!("cannot run the Kafka storage tool ({e}); {JAVA_HINT}"));
        assert!(
            formatted.status.success(),
            "formatting the Kafka storage failed:\n{}{}",
            String::from_utf8_lossy(&formatted.stdout),
            String::from_utf8_lossy(&formatted.stderr)
        );
        let mut command = java("kafka.Kafka");
        command.arg(&properties);
        let process = ServerProcess::spawn("kafka", dir, rebuild(&command), JAVA_HINT);
        let mut broker = Self {
            process,
            command,
            bootstrap: format!("127.0.0.1:{port}"),
            secure_bootstrap: certs.map(|_| format!("127.0.0.1:{secure_port}")),
            relayed_bootstrap: relayed.map(|(_, relay)| format!("127.0.0.1:{relay}")),
            port,
        };
        broker.wait_ready(0);
        broker
    }

    /// Waits for the `STARTED` line number `starts` (counted from 0) and the listening port.
    fn wait_ready(&mut self, starts: usize) {
        let log = self.process.log_path();
        let port = self.port;
        let mut exited = false;
        let ready = wait_until(START_TIMEOUT, || {
            if !self.process.running() {
                exited = true;
                return true;
            }
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.matches(STARTED).count() > starts && listening(port)
        });
        if exited {
            self.process.fail("exited during start");
        }
        if !ready {
            self.process.fail(&format!("did not start within {START_TIMEOUT:?}"));
        }
    }

    /// Kills the broker (SIGKILL); it keeps its data and ports for [`resume`](Self::resume).
    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// Starts a stopped broker again on the same ports and data, and waits until it serves.
    pub fn resume(&mut self) {
        let starts = std::fs::read_to_string(self.process.log_path())
            .unwrap_or_default()
            .matches(STARTED)
            .count();
        let mut command = rebuild(&self.command);
        self.process.start(&mut command, JAVA_HINT);
        self.wait_ready(starts);
    }

    /// Kills the broker and starts it again (a crash and a restart).
    pub fn crash_restart(&mut self) {
        self.stop();
        self.resume();
    }

    /// Stops the broker gracefully (SIGTERM; SIGKILL after 60 s) and starts it again.
    pub fn restart(&mut self) {
        self.process.terminate(std::time::Duration::from_secs(60));
        self.resume();
    }

    /// The broker's PID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The broker's log file.
    pub fn log_path(&self) -> std::path::PathBuf {
        self.process.log_path()
    }
}
