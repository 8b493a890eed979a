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
    tls: bool,
    extra: Vec<String>,
    /// Its URL.
    pub url: String,
}

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it accepts connections.
    pub fn start() -> Self {
        Self::launch(false, &[], false)
    }

    /// Starts a server with more `redis-server` arguments, e.g. `--requirepass` or an ACL
    /// `--user name on >password ~* &* +@all`.
    pub fn start_with(args: &[&str]) -> Self {
        Self::launch(false, args, false)
    }

    /// Starts a server that speaks only TLS (`rediss://`), with `certs`' server certificate;
    /// with `mutual`, clients must show a certificate the same authority signed. `extra` as in
    /// [`start_with`](Self::start_with).
    pub fn start_tls(certs: &crate::TestCertificates, mutual: bool, extra: &[&str]) -> Self {
        let path = |p: &std::path::Path| p.display().to_string();
        let (cert, key, ca) = (path(&certs.server_cert), path(&certs.server_key), path(&certs.ca));
        let mut args = vec![
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            if mutual { "yes" } else { "no" },
        ];
        args.extend_from_slice(extra);
        let mut server = Self::launch(false, &args, true);
        server.url = format!("rediss://127.0.0.1:{}/", server.port);
        server
    }

    /// Starts a server that writes every command to an append-only file (`appendfsync
    /// always`) in its folder, so [`stop`](Self::stop) and [`resume`](Self::resume) lose nothing.
    pub fn start_durable() -> Self {
        Self::launch(true, &[], false)
    }

    fn command(port: u16, durable: bool, tls: bool, extra: &[String]) -> Command {
        let mut command = Command::new("redis-server");
        let port = port.to_string();
        if tls {
            command.args(["--port", "0", "--tls-port", &port]);
        } else {
            command.args(["--port", &port]);
        }
        command.args(["--bind", "127.0.0.1", "--save", ""]);
        if durable {
            command.args(["--appendonly", "yes", "--appendfsync", "always", "--dir", "."]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        command.args(extra);
        command
    }

    fn launch(durable: bool, extra: &[&str], tls: bool) -> Self {
        let port = free_port();
        let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        let dir = ServerProcess::folder("redis", port);
        let command = Self::command(port, durable, tls, &extra);
        let process = ServerProcess::spawn("redis-server", dir, command, INSTALL_HINT);
        let mut server = Self {
            process,
            port,
            durable,
            tls,
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
        let mut command = Self::command(self.port, self.durable, self.tls, &self.extra);
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

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}
