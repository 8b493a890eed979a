//! Each server starts, serves, survives a restart on the same ports and is gone once dropped.

use std::time::Duration;

fn gone(pid: u32) -> bool {
    // A zombie has no command line left; a live process has one.
    std::fs::read(format!("/proc/{pid}/cmdline")).map_or(true, |c| c.is_empty())
}

#[test]
fn pulsar_starts_restarts_and_stops() {
    let mut broker = baton_test_support::PulsarBroker::start();
    assert!(broker.service_url.starts_with("pulsar://127.0.0.1:"));
    let first = broker.pid().expect("running");
    broker.restart();
    let second = broker.pid().expect("running again");
    assert_ne!(first, second);
    assert!(gone(first), "the first broker process was stopped");
    drop(broker);
    std::thread::sleep(Duration::from_millis(100));
    assert!(gone(second), "dropping the broker stops it");
}

#[test]
fn kafka_starts_restarts_and_stops() {
    let mut broker = baton_test_support::KafkaBroker::start();
    assert!(broker.bootstrap.starts_with("127.0.0.1:"));
    let first = broker.pid().expect("running");
    broker.restart();
    let second = broker.pid().expect("running again");
    assert_ne!(first, second);
    drop(broker);
    std::thread::sleep(Duration::from_millis(100));
    assert!(gone(first) && gone(second), "dropping the broker stops it");
}

#[test]
fn redis_starts_and_stops() {
    let redis = baton_test_support::RedisServer::start();
    let pid = redis.pid().expect("running");
    assert!(redis.url.starts_with("redis://127.0.0.1:"));
    drop(redis);
    std::thread::sleep(Duration::from_millis(100));
    assert!(gone(pid));
}
