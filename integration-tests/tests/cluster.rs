//! The multi-process cluster: two `workflow-engine` replicas, a `tag-engine`, a `timer-service`
//! and two `booking-worker` processes on a real Redis and a real Apache Pulsar or Apache Kafka
//! broker, driven by the
//! `cluster-booking` program, which SIGKILLs one engine and one worker mid-run, restarts them,
//! and audits the side-effect books. Every booking must finish exactly once.
#![allow(missing_docs)]

use std::path::PathBuf;
use std::process::Command;

/// The directory cargo puts the workspace's binaries in (this test runs from `deps/` below it).
fn binary_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let deps = exe.parent().expect("deps directory");
    deps.parent().expect("profile directory").to_path_buf()
}

/// Builds the workspace's binaries (nothing to do when they are current, as in
/// `scripts/test.sh`, which builds them first), so the test never runs stale ones.
fn build_binaries() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--workspace", "--bins", "--features", "baton-examples/cluster"]);
    if binary_dir().ends_with("release") {
        build.arg("--release");
    }
    let status = build.status().expect("running cargo build");
    assert!(status.success(), "building the cluster's binaries failed");
}

/// Reads `key=value` out of the summary line.
fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|part| part.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in `{line}`"))
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in `{line}`"))
}

/// Runs `cluster-booking` on `transport` and checks its summary line.
fn killing_an_engine_and_a_worker_mid_run(transport: &str) {
    build_binaries();
    let dir = binary_dir();
    let output = Command::new(dir.join("cluster-booking"))
        .args(["--transport", transport])
        .args(["--workflows", "120", "--concurrency", "20", "--kill-at", "0.3"])
        .args(["--timeout-secs", "120"])
        .arg("--bin-dir")
        .arg(&dir)
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
    assert_eq!(field(line, "killed"), 2, "{line}");
    assert_eq!(field(line, "lost"), 0, "{line}");
    assert_eq!(field(line, "failed"), 0, "{line}");
    assert_eq!(field(line, "duplicated_effects"), 0, "{line}");
    assert_eq!(
        field(line, "completed") + field(line, "compensated"),
        120,
        "every booking ends booked or compensated: {line}"
    );
}

#[test]
fn on_pulsar_killing_an_engine_and_a_worker_mid_run_loses_no_booking_and_duplicates_no_effect() {
    killing_an_engine_and_a_worker_mid_run("pulsar");
}

#[test]
fn on_kafka_killing_an_engine_and_a_worker_mid_run_loses_no_booking_and_duplicates_no_effect() {
    killing_an_engine_and_a_worker_mid_run("kafka");
}
