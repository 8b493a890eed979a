//! Real servers for Baton's tests and local scripts: Redis, the Apache Pulsar standalone broker
//! and the Apache Kafka broker (KRaft mode). Each starts on free loopback ports with a fresh data
//! folder, is waited for until it serves, and is stopped (by PID) when dropped, also when a test
//! panics. A server left behind by a test process that was killed is stopped by the next start.
//!
//! The brokers run as JVM processes whose classpaths Maven resolves once, from Maven Central, into
//! the local Maven repository (see [`maven`]). A missing `java`, `mvn` or `redis-server`, or an
//! unreachable Maven repository, is a panic with a precise message, never a skipped test.

pub mod binaries;
mod kafka;
pub mod maven;
mod process;
mod pulsar;
mod redis;
pub mod tls;

use std::net::TcpListener;
use std::time::{Duration, Instant};

pub use binaries::{ComponentProcess, built_binaries};
pub use kafka::KafkaBroker;
pub use maven::Jvm;
pub use process::sweep_orphans;
pub use pulsar::PulsarBroker;
pub use redis::RedisServer;
pub use tls::TestCertificates;

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Whether something accepts connections on a loopback port.
fn listening(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).is_ok()
}

/// Polls `ready` every 50 ms until it holds or `within` has passed.
fn wait_until(within: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The status code of `GET http://127.0.0.1:{port}{path}`, if the server answered.
fn http_status(port: u16, path: &str) -> Option<u16> {
    http_get(&([127, 0, 0, 1], port).into(), path).map(|(status, _)| status)
}

/// `GET http://{address}{path}`: the status code and the body, if the server answered.
/// `GET path` over HTTP/1.0: the status code and body, if the server answered.
pub fn http_get(address: &std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(address, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.get(9..12)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.trim().to_string())?;
    Some((status, body))
}
