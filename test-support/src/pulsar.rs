//! The Apache Pulsar standalone broker (`org.apache.pulsar.PulsarStandaloneStarter`): a broker
//! with one in-process bookie and its metadata in RocksDB, no ZooKeeper, no functions worker.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::maven::Jvm;
use crate::process::ServerProcess;
use crate::{free_port, maven, wait_until};

/// How long a start may take before it is a failure (a cold JVM on two busy cores).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A running Pulsar standalone broker on loopback.
pub struct PulsarBroker {
    process: ServerProcess,
    command: Command,
    /// The binary protocol URL, `pulsar://127.0.0.1:{port}`.
    pub service_url: String,
    /// The admin REST API, `http://127.0.0.1:{port}`.
    pub admin_url: String,
    web_port: u16,
    /// With [`PulsarBroker::start_secured`]: the TLS binary protocol URL,
    /// `pulsar+ssl://127.0.0.1:{port}`.
    pub tls_service_url: Option<String>,
    /// With [`PulsarBroker::start_secured`]: the admin REST API over TLS.
    pub tls_admin_url: Option<String>,
    /// The token the health check presents when authentication is on.
    health_token: Option<String>,
}

/// Token authentication and TLS for a test broker: tokens are HS256 JWTs signed with a secret
/// key made for the broker, and its TLS ports serve the test authority's server certificate.
pub struct PulsarSecurity {
    /// The broker's server certificate, key and authority.
    pub certs: crate::TestCertificates,
    /// The HS256 secret key the broker checks tokens with.
    secret: Vec<u8>,
}

impl PulsarSecurity {
    /// A fresh secret key and fresh certificates.
    pub fn generate(label: &str) -> Self {
        let certs = crate::TestCertificates::generate(label);
        let secret = (0..4).flat_map(|_| crate::random_u64().to_le_bytes()).collect();
        Self { certs, secret }
    }

    /// A token for `role` signed with the broker's key (an HS256 JWT, signed by `openssl`).
    pub fn token(&self, role: &str) -> String {
        token_signed_with(&self.secret, role)
    }

    /// The configuration lines that turn authentication, authorization and TLS on; `admin`
    /// is the superuser role the broker's own clients use.
    fn conf(&self, tls_port: u16, web_tls_port: u16) -> String {
        use base64::Engine;
        let secret = base64::engine::general_purpose::STANDARD.encode(&self.secret);
        let c = &self.certs;
        format!(
            "authenticationEnabled=true
authenticationProviders=org.apache.pulsar.broker.authentication.AuthenticationProviderToken
tokenSecretKey=data:;base64,{secret}
authorizationEnabled=true
superUserRoles=admin
brokerClientAuthenticationPlugin=org.apache.pulsar.client.impl.auth.AuthenticationToken
brokerClientAuthenticationParameters=token:{token}
brokerServicePortTls={tls_port}
webServicePortTls={web_tls_port}
tlsCertificateFilePath={cert}
tlsKeyFilePath={key}
tlsTrustCertsFilePath={ca}
brokerClientTrustCertsFilePath={ca}
",
            token = self.token("admin"),
            cert = c.server_cert.display(),
            key = c.server_key.display(),
            ca = c.ca.display(),
        )
    }
}

/// An HS256 JWT for subject `role`, signed with `secret`.
pub fn token_signed_with(secret: &[u8], role: &str) -> String {
    use base64::Engine;
    use std::io::Write;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let signed = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64(format!(r#"{{"sub":"{role}"}}"#).as_bytes())
    );
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let mut child = Command::new("openssl")
        .args([
            "dgst",
            "-sha256",
            "-mac",
            "HMAC",
            "-macopt",
            &format!("hexkey:{hex}"),
            "-binary",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("cannot run openssl: ./scripts/test.sh installs it (apt-get install openssl)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(signed.as_bytes())
        .expect("openssl stdin");
    let output = child.wait_with_output().expect("openssl");
    assert!(output.status.success(), "openssl dgst failed");
    format!("{signed}.{}", b64(&output.stdout))
}

/// The broker's configuration; bookie keys are read from the same file.
fn standalone_conf(broker_port: u16, web_port: u16, journal_sync: bool) -> String {
    format!(
        "# Written by baton-test-support for one test broker.
clusterName=standalone
advertisedAddress=127.0.0.1
bindAddress=127.0.0.1
brokerServicePort={broker_port}
webServicePort={web_port}
# One bookie: every ledger has one copy.
managedLedgerDefaultEnsembleSize=1
managedLedgerDefaultWriteQuorum=1
managedLedgerDefaultAckQuorum=1
loadManagerClassName=org.apache.pulsar.broker.loadbalance.NoopLoadManager
loadBalancerEnabled=false
managedLedgerCacheSizeMB=32
webSocketServiceEnabled=false
functionsWorkerEnabled=false
allowAutoTopicCreation=true
allowAutoTopicCreationType=non-partitioned
brokerDeleteInactiveTopicsEnabled=false
delayedDeliveryTickTimeMillis=100
systemTopicEnabled=true
topicLevelPoliciesEnabled=true
authenticationEnabled=false
authorizationEnabled=false
exposeTopicLevelMetricsInPrometheus=false
# Test machines run with full disks; a test broker must not stop writing because of that.
diskUsageThreshold=0.999
diskUsageWarnThreshold=0.999
# Unless asked to, the journal is written but not fsynced before an add is acknowledged: a killed
# broker process loses nothing (the page cache survives it), a machine crash could.
journalSyncData={journal_sync}
# A caught-up subscription sees a new entry at once instead of at the next check, 10 ms later
# by default: every hop of a workflow would wait for it.
managedLedgerNewEntriesCheckDelayInMillis=0
# The bookie writes its journal as soon as nothing else is queued, instead of waiting up to
# 2 ms to group writes: at low load every add would wait for that.
journalFlushWhenQueueEmpty=true
dbStorage_writeCacheMaxSizeMb=16
dbStorage_readAheadCacheMaxSizeMb=16
dbStorage_rocksDB_blockCacheSize=16777216
"
    )
}

impl PulsarBroker {
    /// Resolves the broker (once), starts it on free loopback ports and waits until its health
    /// check passes.
    pub fn start() -> Self {
        Self::launch(false, Jvm::Test, None)
    }

    /// Starts a broker that asks every client for a token signed by `security`'s key (on its
    /// plain ports too) and also serves TLS ports ([`tls_service_url`](Self::tls_service_url),
    /// [`tls_admin_url`](Self::tls_admin_url)).
    pub fn start_secured(security: &PulsarSecurity) -> Self {
        Self::launch(false, Jvm::Test, Some(security))
    }

    /// Starts a broker whose bookie fsyncs its journal before acknowledging a write
    /// (`journalSyncData=true`), as a durable deployment runs.
    pub fn start_durable() -> Self {
        Self::launch(true, Jvm::Test, None)
    }

    /// Starts a broker with the given journal fsync and JVM.
    pub fn start_with(journal_sync: bool, jvm: Jvm) -> Self {
        Self::launch(journal_sync, jvm, None)
    }

    fn launch(journal_sync: bool, jvm: Jvm, security: Option<&PulsarSecurity>) -> Self {
        maven::require_java();
        let classpath = maven::classpath("pulsar");
        let (broker_port, web_port, bookie_port) = (free_port(), free_port(), free_port());
        let dir = ServerProcess::folder("pulsar", broker_port);
        let conf = dir.join("standalone.conf");
        let (tls_port, web_tls_port) = (free_port(), free_port());
        let mut text = standalone_conf(broker_port, web_port, journal_sync);
        // Later keys override earlier ones.
        if let Some(security) = security {
            text.push_str(&security.conf(tls_port, web_tls_port));
        }
        std::fs::write(&conf, text).expect("write standalone.conf");
        let mut command = Command::new("java");
        command
            .args(jvm.options())
            // Pulsar sizes its direct memory from the heap otherwise; the test heap is small.
            .args((jvm == Jvm::Test).then_some("-XX:MaxDirectMemorySize=256m"))
            .args(
                [
                    "java.base/java.io",
                    "java.base/java.nio",
                    "java.base/java.util.zip",
                    "java.base/jdk.internal.misc",
                    "java.base/sun.net",
                    "java.management/sun.management",
                ]
                .iter()
                .flat_map(|m| ["--add-opens".to_string(), format!("{m}=ALL-UNNAMED")]),
            )
            .arg(log_config())
            .args([
                "-Dbookkeeper.metadata.bookie.drivers=org.apache.pulsar.metadata.bookkeeper.PulsarMetadataBookieDriver",
                "-Dbookkeeper.metadata.client.drivers=org.apache.pulsar.metadata.bookkeeper.PulsarMetadataClientDriver",
                "-Dpulsar.allocator.exit_on_oom=true",
                "-Dio.netty.tryReflectionSetAccessible=true",
            ])
            .arg("-cp")
            .arg(classpath)
            .arg("org.apache.pulsar.PulsarStandaloneStarter")
            .arg("-c")
            .arg(&conf)
            .args(["-nfw", "-nss", "-a", "127.0.0.1", "--num-bookies", "1"])
            .arg("--metadata-dir")
            .arg(dir.join("data/metadata"))
            .arg("--bookkeeper-dir")
            .arg(dir.join("data/bookkeeper"))
            .args(["--bookkeeper-port", &bookie_port.to_string()]);
        let process = ServerProcess::spawn("pulsar", dir, rebuild(&command), JAVA_HINT);
        let mut broker = Self {
            process,
            command,
            service_url: format!("pulsar://127.0.0.1:{broker_port}"),
            admin_url: format!("http://127.0.0.1:{web_port}"),
            web_port,
            tls_service_url: security.map(|_| format!("pulsar+ssl://127.0.0.1:{tls_port}")),
            tls_admin_url: security.map(|_| format!("https://127.0.0.1:{web_tls_port}")),
            health_token: security.map(|s| s.token("admin")),
        };
        broker.wait_ready();
        broker
    }

    fn wait_ready(&mut self) {
        let web = self.web_port;
        let mut exited = false;
        let ready = wait_until(START_TIMEOUT, || {
            if !self.process.running() {
                exited = true;
                return true;
            }
            let authorization = self.health_token.as_ref().map(|t| format!("Bearer {t}"));
            crate::http_get_with(
                &([127, 0, 0, 1], web).into(),
                "/admin/v2/brokers/health",
                authorization.as_deref(),
            )
            .map(|(status, _)| status)
                == Some(200)
        });
        if exited {
            self.process.fail("exited during start");
        }
        if !ready {
            self.process.fail(&format!("was not healthy within {START_TIMEOUT:?}"));
        }
    }

    /// Kills the broker (SIGKILL); it keeps its data and ports for [`resume`](Self::resume).
    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// Starts a stopped broker again on the same ports and data, and waits until it is healthy.
    pub fn resume(&mut self) {
        let mut command = rebuild(&self.command);
        self.process.start(&mut command, JAVA_HINT);
        self.wait_ready();
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

pub(crate) const JAVA_HINT: &str = "the test brokers need Java 17 or newer (apt-get install openjdk-17-jre-headless)";

/// `-Dlog4j…` pointing at the brokers' shared logging configuration.
pub(crate) fn log_config() -> String {
    let file = maven::brokers_dir().join("log4j2.properties");
    format!("-Dlog4j2.configurationFile={}", file.display())
}

/// A copy of a command (a `Command` is consumed by a start, and a broker can be started again).
pub(crate) fn rebuild(command: &Command) -> Command {
    let mut copy = Command::new(command.get_program());
    copy.args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(v) => copy.env(key, v),
            None => copy.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        copy.current_dir(Path::new(dir));
    }
    copy
}
