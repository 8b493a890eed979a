//! A server child process with its own data folder, stopped by PID when dropped.
//!
//! Every server lives in `{temp}/baton-test-servers/{kind}-{owner pid}-{port}/` with a `pid`
//! file. A test process killed before it could drop its servers leaves such a folder behind;
//! [`sweep_orphans`] (run before every start) stops the servers whose owner is gone.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Where every server's folder lives.
pub(crate) fn servers_root() -> PathBuf {
    std::env::temp_dir().join("baton-test-servers")
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Stops servers whose owning process no longer exists and removes their folders. A PID is only
/// signalled if its command line names the server's folder, so a reused PID is never hit.
pub fn sweep_orphans() {
    let Ok(entries) = fs::read_dir(servers_root()) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(owner) = name.split('-').nth(1).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if alive(owner) {
            continue;
        }
        if let Some(pid) = fs::read_to_string(dir.join("pid"))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
        {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy()) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

/// A running server process.
pub(crate) struct ServerProcess {
    kind: &'static str,
    child: Option<Child>,
    /// Its folder: data, configuration and log.
    pub dir: PathBuf,
}

impl ServerProcess {
    /// A fresh folder for a server of `kind` on `port` (its first port).
    pub fn folder(kind: &'static str, port: u16) -> PathBuf {
        sweep_orphans();
        let dir = servers_root().join(format!("{kind}-{}-{port}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        dir
    }

    /// Starts `command` with its output in `{dir}/server.log`.
    pub fn spawn(kind: &'static str, dir: PathBuf, mut command: Command, install_hint: &str) -> Self {
        let mut server = Self { kind, child: None, dir };
        server.start(&mut command, install_hint);
        server
    }

    /// (Re)starts the process; the log is appended to.
    pub fn start(&mut self, command: &mut Command, install_hint: &str) {
        crate::refuse_in_quick_tier(&format!("a {} server", self.kind));
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap_or_else(|e| panic!("cannot open the {} log: {e}", self.kind));
        let err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot open the {} log: {e}", self.kind));
        let child = command
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({e}); {install_hint}", self.kind));
        let _ = fs::write(self.dir.join("pid"), child.id().to_string());
        self.child = Some(child);
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// The process's PID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the process with SIGTERM, waiting up to `grace` for it to exit, then SIGKILL.
    pub fn terminate(&mut self, grace: std::time::Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Stops the process with SIGKILL and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Path of the server's log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Panics with the server's log tail.
    pub fn fail(&mut self, what: &str) -> ! {
        let tail = self.log_tail(40);
        let log = self.log_path();
        self.kill();
        panic!("{} {what}; its log ({}) ends with:\n{tail}", self.kind, log.display());
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
