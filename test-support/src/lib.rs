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

pub use binaries::{ComponentProcess, built_binaries, without_package_env};
pub use kafka::KafkaBroker;
/// The SASL credentials of a secured test Kafka broker.
pub use kafka::{SASL_PASSWORD as KAFKA_SASL_PASSWORD, SASL_USER as KAFKA_SASL_USER};
pub use maven::Jvm;
pub use process::sweep_orphans;
pub use pulsar::{PulsarBroker, PulsarSecurity, token_signed_with};
pub use redis::RedisServer;
pub use tls::TestCertificates;

/// The environment variable `scripts/test.sh --quick` sets to `quick`: the tier of tests that
/// run in one process, with no server, broker, browser or binary of the workspace.
pub const TIER_VARIABLE: &str = "TEST_TIER";

/// Refuses, with a panic saying what to do, to start `what` (a server or a binary) in the quick
/// tier, so that a test needing one cannot slip into that tier unnoticed: the `quick` profile of
/// `.config/nextest.toml` must exclude it.
pub fn refuse_in_quick_tier(what: &str) {
    if let Some(refusal) = quick_tier_refusal(std::env::var(TIER_VARIABLE).ok().as_deref(), what) {
        panic!("{refusal}");
    }
}

/// Why starting `what` is refused under tier `tier` ([`TIER_VARIABLE`]'s value), if it is.
fn quick_tier_refusal(tier: Option<&str>, what: &str) -> Option<String> {
    (tier == Some("quick")).then(|| {
        format!(
            "this test starts {what}, which the quick tier (scripts/test.sh --quick) runs without: \
             exclude it in the `quick` profile's default-filter in .config/nextest.toml"
        )
    })
}

/// The ports [`free_port`] picks from: below Linux's default ephemeral range (32768–60999).
/// A port the kernel hands out for `:0` is also the kind it hands any outgoing connection, so
/// a broker whose JVM takes seconds to bind one could find it taken by a client in between.
const TEST_PORTS: std::ops::Range<u16> = 15_000..32_000;

/// A loopback port nobody listens on now, picked at random from [`TEST_PORTS`] and never twice
/// by one process.
pub fn free_port() -> u16 {
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let span = u64::from(TEST_PORTS.end - TEST_PORTS.start);
    for attempt in 0u64.. {
        let offset = random_u64() % span;
        let port = TEST_PORTS.start + u16::try_from(offset).expect("offset below the span");
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
        assert!(attempt < 10_000, "no free loopback port in {TEST_PORTS:?}");
    }
    unreachable!("the loop returns or panics")
}

/// A random number, differing between calls and between processes (not for cryptography).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one((std::process::id(), Instant::now()))
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

/// `GET http://{address}{path}`: the status code and the body, if the server answered.
/// `GET path` over HTTP/1.0: the status code and body, if the server answered.
pub fn http_get(address: &std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    http_get_with(address, path, None)
}

/// [`http_get`] with an `Authorization` header.
pub fn http_get_with(address: &std::net::SocketAddr, path: &str, authorization: Option<&str>) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(address, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let authorization = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{authorization}\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.get(9..12)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.trim().to_string())?;
    Some((status, body))
}

#[cfg(test)]
mod tests {
    use super::quick_tier_refusal;

    #[test]
    fn servers_are_refused_only_in_the_quick_tier() {
        let refusal = quick_tier_refusal(Some("quick"), "a redis server").expect("refused");
        assert!(
            refusal.contains("a redis server") && refusal.contains(".config/nextest.toml"),
            "{refusal}"
        );
        assert_eq!(quick_tier_refusal(None, "a redis server"), None);
        assert_eq!(quick_tier_refusal(Some("full"), "a redis server"), None);
    }
}
