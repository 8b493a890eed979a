//! The multi-process cluster: two `workflow-engine` replicas, a `tag-engine`, a `timer-service`
//! and two `booking-worker` processes on a real Redis and a real Apache Pulsar or Apache Kafka
//! broker, driven by the `cluster-booking` program, which injects a fault mid-run (SIGKILL of an
//! engine and a worker, or an outage of Redis or of the broker), and audits the side-effect
//! books. Every booking must finish exactly once, and after an outage work must resume within
//! seconds.
#![allow(missing_docs)]

use std::process::Command;

use baton_test_support::built_binaries;

/// Reads `key=value` out of the summary line.
fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|part| part.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in `{line}`"))
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in `{line}`"))
}

/// Runs `cluster-booking` on `transport` with `extra` arguments, checks the books in its
/// summary line and returns the line.
fn run_cluster(transport: &str, extra: &[&str]) -> String {
    let dir = built_binaries();
    let output = Command::new(dir.join("cluster-booking"))
        .args(["--transport", transport])
        .args(["--workflows", "120", "--concurrency", "20", "--kill-at", "0.3"])
        .args(["--timeout-secs", "120"])
        .args(extra)
        .arg("--bin-dir")
        .arg(dir)
        .output()
        .expect("running cluster-booking");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("cluster-booking:"))
        .unwrap_or_else(|| panic!("no summary line\nstdout:\n{stdout}\nstderr:\n{stderr}"));
    assert!(output.status.success(), "{line}\nstderr:\n{stderr}");
    assert!(line.contains(&format!("transport={transport} ")), "{line}");
    assert_eq!(field(line, "workflows"), 120, "{line}");
    assert_eq!(field(line, "lost"), 0, "{line}");
    assert_eq!(field(line, "failed"), 0, "{line}");
    assert_eq!(field(line, "duplicated_effects"), 0, "{line}");
    assert_eq!(
        field(line, "completed") + field(line, "compensated"),
        120,
        "every booking ends booked or compensated: {line}"
    );
    line.to_string()
}

fn killing_an_engine_and_a_worker_mid_run(transport: &str) {
    let line = run_cluster(transport, &["--fault", "kill"]);
    assert_eq!(field(&line, "killed"), 2, "{line}");
}

/// An outage of Redis or the broker mid-run: the books stay exact, an engine reports not
/// ready while it lasts, and work resumes within `bound_ms` of the dependency's return (a
/// bound generous enough for a loaded CI machine; the measured figure is in the line).
fn outage_mid_run(transport: &str, fault: &str, seconds: &str, bound_ms: u64) {
    let line = run_cluster(transport, &["--fault", fault, "--outage-secs", seconds]);
    println!("{line}");
    assert!(
        line.contains("not_ready_seen=true"),
        "/ready must turn 503 during the outage: {line}"
    );
    let recovery = field(&line, "recovery_ms");
    assert!(
        recovery < bound_ms,
        "a booking started after the outage took {recovery} ms (bound {bound_ms} ms): {line}"
    );
}

#[test]
fn on_pulsar_a_3_second_redis_outage_loses_nothing_and_work_resumes_within_seconds() {
    outage_mid_run("pulsar", "redis-outage", "3", 10_000);
}

#[test]
fn on_pulsar_a_30_second_redis_outage_loses_nothing_and_work_resumes_within_seconds() {
    outage_mid_run("pulsar", "redis-outage", "30", 10_000);
}

#[test]
fn a_pulsar_broker_outage_loses_nothing_and_work_resumes_within_seconds() {
    outage_mid_run("pulsar", "broker-outage", "3", 15_000);
}

#[test]
fn a_kafka_broker_outage_loses_nothing_and_work_resumes_after_the_group_rejoins() {
    outage_mid_run("kafka", "broker-outage", "3", 30_000);
}

#[test]
fn on_pulsar_killing_an_engine_and_a_worker_mid_run_loses_no_booking_and_duplicates_no_effect() {
    killing_an_engine_and_a_worker_mid_run("pulsar");
}

#[test]
fn on_kafka_killing_an_engine_and_a_worker_mid_run_loses_no_booking_and_duplicates_no_effect() {
    killing_an_engine_and_a_worker_mid_run("kafka");
}
