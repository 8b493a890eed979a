//! `baton dev`: a whole local deployment for a developer's own worker. It starts Redis and a
//! broker (Apache Pulsar, or Kafka with `--transport kafka`), then the stock
//! `workflow-engine`, `timer-service`, `tag-engine` and `baton-api` binaries as child processes.
//! It prints the dashboard's address and the settings a worker needs, and on Ctrl-C stops
//! everything.
//!
//! The servers are the ones the test suite runs: `redis-server` and the brokers' jars, which
//! Maven resolves once into `~/.m2`. What is missing from the machine is installed with
//! apt-get when running as root, or named with the command that installs it otherwise.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How `baton dev` was asked to run.
#[derive(clap::Args, Debug, Clone)]
pub struct DevArgs {
    /// A workflow your worker hosts (repeatable; at least one).
    #[arg(long = "workflow", required = true)]
    pub workflows: Vec<String>,
    /// A service your worker hosts (repeatable): its delegated tasks and dead letters are
    /// served too.
    #[arg(long = "service")]
    pub services: Vec<String>,
    /// The broker: `pulsar` or `kafka`.
    #[arg(long, default_value = "pulsar", value_parser = ["pulsar", "kafka"])]
    pub transport: String,
    /// Where the API and the dashboard listen.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where the component binaries are (default: beside this program).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Stop after this many seconds instead of waiting for Ctrl-C (for scripts).
    #[arg(long)]
    pub stop_after: Option<u64>,
}

/// The component binaries `baton dev` runs, with their packages.
const COMPONENTS: [(&str, &str); 4] = [
    ("workflow-engine", "baton-workflow-engine"),
    ("timer-service", "baton-timer-service"),
    ("tag-engine", "baton-tag-engine"),
    ("baton-api", "baton-api"),
];

/// Why the stack did not come up.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// A program it needs is missing and could not be installed.
    #[error("{0}")]
    Missing(String),
    /// A component binary is missing.
    #[error(
        "{binary} not found; build the components first: cargo build -p baton-workflow-engine -p baton-timer-service -p baton-tag-engine -p baton-api (or pass --bin-dir)"
    )]
    Binary {
        /// The path looked at.
        binary: String,
    },
    /// Something failed to start.
    #[error("{0}")]
    Start(String),
}

fn present(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs the Debian packages of missing programs, as the test command does.
fn ensure_installed(transport: &str) -> Result<(), DevError> {
    let mut missing = Vec::new();
    if !present("redis-server") {
        missing.push("redis-server");
    }
    if !present("java") {
        missing.push("openjdk-17-jre-headless");
    }
    if !present("mvn") {
        missing.push("maven");
    }
    if missing.is_empty() {
        return Ok(());
    }
    let command = format!("apt-get install -y {}", missing.join(" "));
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        return Err(DevError::Missing(format!(
            "baton dev needs Redis, Java and Maven (for the {transport} broker); install them: sudo {command}"
        )));
    }
    eprintln!("baton dev: installing {}", missing.join(", "));
    let installed = Command::new("sh")
        .args([
            "-c",
            &format!("apt-get update -qq && DEBIAN_FRONTEND=noninteractive {command} -qq"),
        ])
        .status()
        .is_ok_and(|s| s.success());
    if installed {
        Ok(())
    } else {
        Err(DevError::Missing(format!("installing failed; run: {command}")))
    }
}

/// The directory holding the component binaries. Under `cargo run` they are built first, in
/// the same profile, so they are current.
fn component_dir(bin_dir: Option<&Path>) -> Result<PathBuf, DevError> {
    let dir = match bin_dir {
        Some(dir) => dir.to_path_buf(),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf))
            .ok_or_else(|| DevError::Start("cannot locate this program".into()))?,
    };
    if bin_dir.is_none() {
        if let Ok(cargo) = std::env::var("CARGO") {
            let mut build = Command::new(cargo);
            build.args(["build", "--quiet"]);
            baton_test_support::without_package_env(&mut build);
            for (_, package) in COMPONENTS {
                build.args(["-p", package]);
            }
            build.arg("--bins");
            if dir.ends_with("release") {
                build.arg("--release");
            }
            let built = build.status().is_ok_and(|s| s.success());
            if !built {
                return Err(DevError::Start("building the component binaries failed".into()));
            }
        }
    }
    for (name, _) in COMPONENTS {
        if !dir.join(name).exists() {
            return Err(DevError::Binary {
                binary: dir.join(name).display().to_string(),
            });
        }
    }
    Ok(dir)
}

/// One component process; stopped (SIGTERM, then killed) when dropped.
struct Component {
    name: &'static str,
    health: SocketAddr,
    log: PathBuf,
    child: Child,
}

impl Component {
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The broker `baton dev` started.
enum Broker {
    Pulsar(baton_test_support::PulsarBroker),
    Kafka(baton_test_support::KafkaBroker),
}

fn start_servers(transport: &str) -> Result<(baton_test_support::RedisServer, Broker), DevError> {
    // The test servers report a failure to start by panicking with the reason.
    std::panic::catch_unwind(|| {
        eprintln!(
            "baton dev: starting Redis and Apache {}…",
            if transport == "kafka" { "Kafka" } else { "Pulsar" }
        );
        let redis = baton_test_support::RedisServer::start_durable();
        let broker = if transport == "kafka" {
            Broker::Kafka(baton_test_support::KafkaBroker::start())
        } else {
            Broker::Pulsar(baton_test_support::PulsarBroker::start())
        };
        (redis, broker)
    })
    .map_err(|panic| {
        let reason = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown reason".into());
        DevError::Start(format!("a server did not start: {reason}"))
    })
}

/// Runs the stack until Ctrl-C (or `--stop-after`); returns the process's exit code.
pub async fn run(args: DevArgs) -> Result<(), DevError> {
    ensure_installed(&args.transport)?;
    let bin_dir = component_dir(args.bin_dir.as_deref())?;
    let transport = args.transport.clone();
    let (redis, broker) = tokio::task::spawn_blocking(move || start_servers(&transport))
        .await
        .map_err(|e| DevError::Start(e.to_string()))??;
    let mut env: Vec<(String, String)> = vec![("BATON_STORAGE__URL".into(), redis.url.clone())];
    match &broker {
        Broker::Pulsar(p) => {
            env.push(("BATON_TRANSPORT__URL".into(), p.service_url.clone()));
            env.push(("BATON_TRANSPORT__PULSAR__ADMIN_URL".into(), p.admin_url.clone()));
        }
        Broker::Kafka(k) => env.push(("BATON_TRANSPORT__URL".into(), format!("kafka://{}", k.bootstrap))),
    }
    let list = |names: &[String]| {
        format!(
            "[{}]",
            names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(",")
        )
    };
    let stack_env: Vec<(String, String)> = env
        .iter()
        .cloned()
        .chain([
            ("BATON_ENGINE__WORKFLOWS".to_string(), list(&args.workflows)),
            ("BATON_TAG_ENGINE__WORKFLOWS".to_string(), list(&args.workflows)),
            ("BATON_TAG_ENGINE__SERVICES".to_string(), list(&args.services)),
            ("BATON_API__LISTEN".to_string(), args.listen.to_string()),
        ])
        .collect();
    let logs = std::env::temp_dir().join(format!("baton-dev-{}", std::process::id()));
    std::fs::create_dir_all(&logs).map_err(|e| DevError::Start(format!("creating {}: {e}", logs.display())))?;
    let mut components = Vec::new();
    for (name, _) in COMPONENTS {
        let health = SocketAddr::from(([127, 0, 0, 1], baton_test_support::free_port()));
        let log = logs.join(format!("{name}.log"));
        let stderr =
            std::fs::File::create(&log).map_err(|e| DevError::Start(format!("creating {}: {e}", log.display())))?;
        let child = Command::new(bin_dir.join(name))
            .envs(stack_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("BATON_PROCESS__HEALTH_LISTEN", health.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| DevError::Start(format!("starting {name}: {e}")))?;
        components.push(Component {
            name,
            health,
            log,
            child,
        });
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for c in &mut components {
        loop {
            let address = c.health;
            let ready = tokio::task::spawn_blocking(move || baton_test_support::http_get(&address, "/ready"))
                .await
                .ok()
                .flatten();
            if matches!(ready, Some((200, _))) {
                break;
            }
            if let Some(status) = c.child.try_wait().ok().flatten() {
                return Err(DevError::Start(format!(
                    "{} exited ({status}); its log: {}",
                    c.name,
                    c.log.display()
                )));
            }
            if Instant::now() > deadline {
                return Err(DevError::Start(format!(
                    "{} is not ready after 120 s; its log: {}",
                    c.name,
                    c.log.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    println!("dashboard: http://{}/", args.listen);
    println!(
        "api: http://{}/api/v1  (OpenAPI: http://{}/openapi.json)",
        args.listen, args.listen
    );
    println!("run your worker with:");
    for (key, value) in &env {
        println!("  export {key}={value}");
    }
    println!("logs: {}", logs.display());
    println!("press Ctrl-C to stop everything");
    let stop = async {
        match args.stop_after {
            Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    let crashed = async {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            for c in &mut components {
                if let Some(status) = c.child.try_wait().ok().flatten() {
                    return format!("{} exited ({status}); its log: {}", c.name, c.log.display());
                }
            }
        }
    };
    let outcome = tokio::select! {
        _ = stop => Ok(()),
        reason = crashed => Err(DevError::Start(reason)),
    };
    eprintln!("baton dev: stopping");
    // Components first (they drain), then the servers.
    tokio::task::spawn_blocking(move || {
        drop(components);
        drop(broker);
        drop(redis);
    })
    .await
    .map_err(|e| DevError::Start(e.to_string()))?;
    outcome
}
