//! `redis-server`, from Debian's packages.

use std::process::Command;
use std::time::Duration;

use crate::process::ServerProcess;
use crate::{free_port, listening, wait_until};

/// A running `redis-server` without persistence (tests need speed, not durability).
pub struct RedisServer {
    process: ServerProcess,
    /// Its URL.
    pub url: String,
}

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it accepts connections.
    pub fn start() -> Self {
        let port = free_port();
        let dir = ServerProcess::folder("redis", port);
        let mut command = Command::new("redis-server");
        command.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]);
        let mut process = ServerProcess::spawn(
            "redis-server",
            dir,
            command,
            "./scripts/test.sh installs it (apt-get install redis-server)",
        );
        if !wait_until(Duration::from_secs(10), || listening(port)) {
            process.fail(&format!("did not listen on port {port}"));
        }
        Self {
            process,
            url: format!("redis://127.0.0.1:{port}/"),
        }
    }

    /// The server's PID.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }
}
