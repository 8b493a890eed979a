//! `redis-server`, from Debian's packages.

use std::process::Command;
use std::time::Duration;

use crate::process::ServerProcess;
use crate::{free_port, listening, wait_until};

const INSTALL_HINT: &str = "./scripts/test.sh installs it (apt-get install redis-server)";

/// A running `redis-server`, by default without persistence (most tests need speed, not
/// durability); [`start_durable`](Self::start_durable) keeps an append-only file so it can be
/// stopped and resumed with its data, as in an outage.
pub struct RedisServer {
    process: ServerProcess,
    port: u16,
    durable: bool,
    extra: Vec<String>,
    /// Its URL.
    pub url: String,
}

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it accepts connections.
    pub fn start() -> Self {
        Self::launch(false, &[])
    }

    /// Starts a server with more `redis-server` arguments, e.g. `--requirepass` or an ACL
    /// `--user name on >password ~* &* +@all`.
    pub fn start_with(args: &[&str]) -> Self {
        Self::launch(false, args)
    }

    /// Starts a server that writes every command to an append-only file (`appendfsync
    /// always`) in its folder, so [`stop`](Self::stop) and [`resume`](Self::resume) lose nothing.
    pub fn start_durable() -> Self {
        Self::launch(true, &[])
    }

    fn command(port: u16, durable: bool, extra: &[String]) -> Command {
        let mut command = Command::new("redis-server");
        command.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""]);
        if durable {
            command.args(["--appendonly", "yes", "--appendfsync", "always", "--dir", "."]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        command.args(extra);
        command
    }

    fn launch(durable: bool, extra: &[&str]) -> Self {
        let port = free_port();
        let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        let dir = ServerProcess::folder("redis", port);
        let process = ServerProcess::spawn("redis-server", dir, Self::command(port, durable, &extra), INSTALL_HINT);
        let mut server = Self {
            process,
            port,
            durable,
            extra,
            url: format!("redis://127.0.0.1:{port}/"),
        };
        server.wait_listening();
        server
    }

    fn wait_listening(&mut self) {
        let port = self.port;
        if !wait_until(Duration::from_secs(10), || listening(port)) {
            self.process.fail(&format!("did not listen on port {port}"));
        }
    }

    /// Kills the server (SIGKILL): its clients see connections refused until it resumes.
    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// Starts a stopped server again on the same port (and, if durable, the same data).
    pub fn resume(&mut self) {
        let mut command = Self::command(self.port, self.durable, &self.extra);
        self.process.start(&mut command, INSTALL_HINT);
        self.wait_listening();
    }

    /// Whether the server runs.
    pub fn is_running(&mut self) -> bool {
        self.process.running()
    }

    /// The server's PID.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }
}
