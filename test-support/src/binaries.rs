//! The workspace's own binaries (`workflow-engine`, `baton`, …) for tests that run them as an
//! operator would: built once per test process, started with their output in a log file,
//! probed over `/ready`, signalled and awaited.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The directory cargo puts the workspace's binaries in, next to the running test executable
/// (which lives in `deps/` below it).
pub fn binary_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let deps = exe.parent().expect("deps directory");
    deps.parent().expect("profile directory").to_path_buf()
}

/// Removes from `build` (a `cargo build` started by a test or by `cargo run`) the variables
/// cargo set for the running program's own package. They describe that package, not the
/// build; some build scripts (ring's) rerun when `CARGO_MANIFEST_DIR` changes, so passing them
/// on rebuilt half the workspace (a minute) on every start and again on the next plain
/// `cargo build`.
pub fn without_package_env(build: &mut Command) {
    const PER_PACKAGE: [&str; 5] = [
        "CARGO_MANIFEST_",
        "CARGO_PKG_",
        "CARGO_CRATE_",
        "CARGO_BIN_",
        "CARGO_PRIMARY_",
    ];
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let per_package = PER_PACKAGE.iter().any(|prefix| name.starts_with(prefix));
        if per_package || name == "CARGO_TARGET_TMPDIR" || name == "OUT_DIR" {
            build.env_remove(name.as_ref());
        }
    }
}

/// Builds every binary of the workspace, the cluster programs included (nothing to do when
/// they are current, as in `scripts/test.sh`, which builds them first with the same selection),
/// once per process, so a test never runs stale ones. Returns their directory.
pub fn built_binaries() -> &'static Path {
    crate::refuse_in_quick_tier("the workspace's binaries");
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        // The selection of scripts/test.sh's build step: with any other, cargo would resolve
        // the dependencies' features differently (dev-dependencies count only when test targets
        // are selected) and compile the workspace again.
        build.args(["build", "--workspace", "--all-features", "--bins", "--tests"]);
        without_package_env(&mut build);
        let dir = binary_dir();
        if dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build.status().expect("running cargo build");
        assert!(status.success(), "building the workspace's binaries failed");
        dir
    })
}

/// A component binary running in the background, killed when dropped.
pub struct ComponentProcess {
    /// Its name in messages.
    pub name: String,
    /// Where it serves `/health` and `/ready`.
    pub health: SocketAddr,
    /// Its stderr.
    pub log: PathBuf,
    child: Child,
}

impl ComponentProcess {
    /// Starts binary `program` of the workspace with `args` and `env`, its health endpoints on
    /// a free port and its stderr in a log file.
    pub fn start(program: &str, args: &[&str], env: &[(&str, String)]) -> Self {
        let health = SocketAddr::from(([127, 0, 0, 1], crate::free_port()));
        let log = std::env::temp_dir().join(format!("baton-{program}-{}-{}.log", std::process::id(), health.port()));
        let stderr = std::fs::File::create(&log).expect("log file");
        let child = Command::new(built_binaries().join(program))
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("BATON_PROCESS__HEALTH_LISTEN", health.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        Self {
            name: program.to_string(),
            health,
            log,
            child,
        }
    }

    /// `GET /ready`: its status code and body, if it answered.
    pub fn ready(&self) -> Option<(u16, String)> {
        crate::http_get(&self.health, "/ready")
    }

    /// Waits until `/ready` answers `status`, for at most `within`; returns the body.
    pub fn wait_ready_status(&mut self, status: u16, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some((code, body)) = self.ready() {
                if code == status {
                    return body;
                }
            }
            if let Some(exit) = self.try_exit() {
                panic!("{} exited ({exit}) while awaited:\n{}", self.name, self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "{}: /ready did not answer {status} within {within:?} (last: {:?})\n{}",
                self.name,
                self.ready(),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "cannot signal {}", self.name);
    }

    /// Its exit status, if it has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits for it to exit for at most `within`; `None` if it still runs.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What it wrote to stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ComponentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
