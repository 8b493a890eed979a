//! The Apache Pulsar standalone broker (`org.apache.pulsar.PulsarStandaloneStarter`): a broker
//! with one in-process bookie and its metadata in RocksDB, no ZooKeeper, no functions worker.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::maven::Jvm;
use crate::process::ServerProcess;
use crate::{free_port, http_status, maven, wait_until};

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
        Self::launch(false, Jvm::Test)
    }

    /// Starts a broker whose bookie fsyncs its journal before acknowledging a write
    /// (`journalSyncData=true`), as a durable deployment runs.
    pub fn start_durable() -> Self {
        Self::launch(true, Jvm::Test)
    }

    /// Starts a broker with the given journal fsync and JVM.
    pub fn start_with(journal_sync: bool, jvm: Jvm) -> Self {
        Self::launch(journal_sync, jvm)
    }

    fn launch(journal_sync: bool, jvm: Jvm) -> Self {
        maven::require_java();
        let classpath = maven::classpath("pulsar");
        let (broker_port, web_port, bookie_port) = (free_port(), free_port(), free_port());
        let dir = ServerProcess::folder("pulsar", broker_port);
        let conf = dir.join("standalone.conf");
        std::fs::write(&conf, standalone_conf(broker_port, web_port, journal_sync)).expect("write standalone.conf");
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
            http_status(web, "/admin/v2/brokers/health") == Some(200)
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
