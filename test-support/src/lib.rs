//! Real servers for Baton's tests: each starts on a free loopback port and is stopped when
//! dropped. A missing server binary is a test failure with instructions, never a skip.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`.
pub struct RedisServer {
    child: Child,
    /// Its URL.
    pub url: String,
}

impl RedisServer {
    /// Starts a server without persistence (tests need speed, not durability).
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}); ./scripts/test.sh installs it (apt-get install redis-server)")
            });
        let server = Self {
            child,
            url: format!("redis://127.0.0.1:{port}/"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running tansu broker (Kafka-compatible) with in-memory storage.
pub struct KafkaBroker {
    child: Child,
    /// `host:port` to bootstrap from.
    pub bootstrap: String,
    /// Directory of its SQLite storage, removed when the broker stops.
    data: std::path::PathBuf,
}

/// Where the `tansu` binary is: on the `PATH`, or where `cargo install` puts it.
fn tansu_binary() -> String {
    if Command::new("tansu")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
    {
        return "tansu".to_string();
    }
    let home = std::env::var("CARGO_HOME")
        .or_else(|_| std::env::var("HOME").map(|h| format!("{h}/.cargo")))
        .unwrap_or_else(|_| ".cargo".to_string());
    format!("{home}/bin/tansu")
}

impl KafkaBroker {
    /// Starts a broker on a free loopback port.
    pub fn start() -> Self {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        // SQLite storage: tansu's in-memory engine loses records when producers write to one
        // partition concurrently (a fetch then returns one record twice and another never).
        let data = std::env::temp_dir().join(format!("baton-tansu-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&data).expect("tansu data directory");
        // tansu reads the database path relative to its working directory.
        let storage = "sqlite://tansu.db";
        let child = Command::new(tansu_binary())
            .current_dir(&data)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                storage,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start the tansu broker ({e}); ./scripts/test.sh installs it \
                     (cargo install tansu --locked --features dynostore,libsql)"
                )
            });
        let broker = Self {
            child,
            bootstrap: format!("127.0.0.1:{port}"),
            data,
        };
        wait_for_port(port, "tansu");
        broker
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
