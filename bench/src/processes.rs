//! The `processes` topology: the stock `workflow-engine`, `timer-service` and `tag-engine`
//! binaries and one worker process (this program's `worker` subcommand, hosting the workload)
//! as separate processes on Redis and a real broker, each measured on its own.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use baton_test_support::free_port;

use baton::Workflow;
use baton_bench::workload::{BookingWorkflow, SequentialSteps};

/// The stock binaries the topology runs, with their packages (to build them).
const STOCK: [(&str, &str); 3] = [
    ("workflow-engine", "baton-workflow-engine"),
    ("timer-service", "baton-timer-service"),
    ("tag-engine", "baton-tag-engine"),
];

/// One component process, killed when dropped.
pub struct ComponentProcess {
    /// Its role in the report (`engine`, `timer`, `tag`, `worker`).
    pub role: &'static str,
    log: PathBuf,
    health: SocketAddr,
    child: Child,
}

impl ComponentProcess {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Stops it with SIGTERM, waiting up to `grace` before killing it.
    fn stop(&mut self, grace: Duration) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ComponentProcess {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// The running components.
pub struct Components {
    /// Each process.
    pub processes: Vec<ComponentProcess>,
    /// Where their logs are.
    pub logs: PathBuf,
}

impl Components {
    /// `(role, pid)` of each process.
    pub fn pids(&self) -> Vec<(&'static str, Option<u32>)> {
        self.processes.iter().map(|p| (p.role, Some(p.pid()))).collect()
    }
}

/// The directory holding the stock binaries: `--bin-dir`, or the one this program runs from.
/// Under `cargo run` they are built first (in this program's profile), so they are current.
pub fn stock_binaries(bin_dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this program")?;
    let dir = match bin_dir {
        Some(dir) => dir.to_path_buf(),
        None => exe.parent().context("no binary directory")?.to_path_buf(),
    };
    if bin_dir.is_none() {
        if let Ok(cargo) = std::env::var("CARGO") {
            let mut build = Command::new(cargo);
            build.arg("build").arg("--quiet");
            for (_, package) in STOCK {
                build.args(["-p", package]);
            }
            build.arg("--bins");
            if dir.ends_with("release") {
                build.arg("--release");
            }
            let status = build.status().context("running cargo build")?;
            if !status.success() {
                bail!("building the component binaries failed");
            }
        }
    }
    for (name, package) in STOCK {
        if !dir.join(name).exists() {
            bail!(
                "{} not found; build it (cargo build --release -p {package}) or pass --bin-dir",
                dir.join(name).display()
            );
        }
    }
    Ok(dir)
}

/// Starts the engine, timer service, tag engine and one worker with the `BATON_*` settings in
/// `env` (where the broker and Redis are), and waits until each is ready.
pub async fn start(bin_dir: &Path, env: &[(String, String)]) -> anyhow::Result<Components> {
    let logs = std::env::temp_dir().join(format!("baton-bench-{}", std::process::id()));
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let workflows = [BookingWorkflow::NAME, SequentialSteps::NAME];
    let mut workflow_args = Vec::new();
    for w in workflows {
        workflow_args.extend(["--workflow".to_string(), w.to_string()]);
    }
    let worker_program = std::env::current_exe().context("locating this program")?;
    let plan: Vec<(&'static str, PathBuf, Vec<String>)> = vec![
        ("engine", bin_dir.join("workflow-engine"), workflow_args.clone()),
        ("timer", bin_dir.join("timer-service"), Vec::new()),
        ("tag", bin_dir.join("tag-engine"), workflow_args),
        ("worker", worker_program, vec!["worker".to_string()]),
    ];
    let mut processes = Vec::new();
    for (role, program, args) in plan {
        let health = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = logs.join(format!("{role}.log"));
        let stderr = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(&program)
            .args(&args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("BATON_PROCESS__HEALTH_LISTEN", health.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        processes.push(ComponentProcess {
            role,
            log,
            health,
            child,
        });
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for p in &mut processes {
        while !is_ready(p.health).await {
            if let Some(status) = p.exited() {
                bail!("{} exited ({status}); its log: {}", p.role, p.log.display());
            }
            if Instant::now() > deadline {
                bail!("{} is not ready after 120 s; its log: {}", p.role, p.log.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(Components { processes, logs })
}

/// Whether `GET /ready` at `address` answers 200.
async fn is_ready(address: SocketAddr) -> bool {
    let answer = tokio::task::spawn_blocking(move || baton_test_support::http_get(&address, "/ready")).await;
    matches!(answer, Ok(Some((200, _))))
}

/// The settings that describe the topology in the report.
pub fn describe(settings: &mut BTreeMap<String, String>) {
    settings.insert(
        "baton".into(),
        "workflow-engine, timer-service, tag-engine and one worker as separate processes; the driver (client) in this process".into(),
    );
}
