//! The fault suite: the multi-process cluster (two `workflow-engine` replicas, a `tag-engine`,
//! a `timer-service`, two `booking-worker` processes and the HTTP API) on a durable Redis and a
//! real Apache Pulsar or Apache Kafka broker, driven by `cluster-booking`, which injects the
//! faults of each scenario mid-run and audits the side-effect books.
//!
//! Every scenario checks the same invariant: every booking ends exactly once (booked or
//! compensated), the books are exact (no double charge, no orphan booking), and nothing is left
//! pending (no instance under the run's tag, no work timer in the store, no dead letter).
//! `scripts/soak.sh` runs the same with random faults for as long as asked.
#![allow(missing_docs)]

use std::process::Command;

use baton_test_support::built_binaries;

/// The summary line of one run.
struct Summary(String);

impl Summary {
    /// A numeric `key=value` field.
    fn number(&self, key: &str) -> u64 {
        self.text(key)
            .parse()
            .unwrap_or_else(|_| panic!("{key} is not a number in `{}`", self.0))
    }

    /// A `key=value` field as written.
    fn text(&self, key: &str) -> &str {
        self.0
            .split_whitespace()
            .find_map(|part| part.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key} in `{}`", self.0))
    }
}

/// Runs `cluster-booking` on `transport` with `workflows` bookings and `extra` arguments
/// (over the suite's defaults), checks the invariant every scenario shares and returns the
/// summary line.
fn run(transport: &str, workflows: u64, extra: &[&str]) -> Summary {
    let dir = built_binaries();
    let defaults = [("--concurrency", "20"), ("--kill-at", "0.3"), ("--timeout-secs", "120")];
    let mut command = Command::new(dir.join("cluster-booking"));
    command
        .args(["--transport", transport])
        .args(["--workflows", &workflows.to_string()]);
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            command.args([flag, value]);
        }
    }
    // Its stderr (the faults as they are injected, the audit's findings, where the processes'
    // logs are) goes straight to the test's output, so a run stopped at the test timeout
    // still shows how far it got.
    let output = command
        .args(extra)
        .arg("--bin-dir")
        .arg(dir)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("running cluster-booking");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("cluster-booking:"))
        .unwrap_or_else(|| panic!("no summary line\nstdout:\n{stdout}"));
    println!("{line}");
    assert!(output.status.success(), "{line}");
    let summary = Summary(line.to_string());
    assert_eq!(summary.text("transport"), transport, "{line}");
    assert_eq!(summary.number("workflows"), workflows, "{line}");
    for zero in [
        "failed",
        "lost",
        "duplicated_effects",
        "tagged_left",
        "timers_left",
        "expiries_missing",
        "dead_letters",
    ] {
        assert_eq!(summary.number(zero), 0, "{zero} must be 0: {line}");
    }
    assert_eq!(
        summary.number("completed") + summary.number("compensated"),
        workflows,
        "every booking ends booked or compensated: {line}"
    );
    summary
}

/// The faults the run injected, as `kind:count,…`.
fn injected(summary: &Summary) -> &str {
    summary.text("fault_kinds")
}

#[test]
fn on_pulsar_killing_each_kind_of_component_in_turn_loses_nothing() {
    let summary = run(
        "pulsar",
        120,
        &[
            "--fault",
            "kill-engine,kill-worker,kill-timer,kill-tag,kill-api",
            "--hold-ms",
            "300",
        ],
    );
    assert_eq!(
        injected(&summary),
        "kill-api:1,kill-engine:1,kill-tag:1,kill-timer:1,kill-worker:1"
    );
    assert_eq!(summary.number("killed"), 5, "{}", summary.0);
}

#[test]
fn on_pulsar_killing_one_process_of_every_kind_at_once_loses_nothing() {
    let summary = run("pulsar", 120, &["--fault", "kill-all", "--hold-ms", "300"]);
    assert_eq!(summary.number("killed"), 5, "{}", summary.0);
}

#[test]
fn on_kafka_a_stop_longer_than_the_session_timeout_and_a_kill_of_each_kind_lose_nothing() {
    // The harness sets a 6 s session timeout on Kafka; the stop lasts 10 s, so the group
    // rebalances away from the stopped engine and worker, which then wake up as zombies.
    let summary = run(
        "kafka",
        120,
        &[
            "--fault",
            "stop,kill-engine,kill-worker,kill-timer,kill-tag,kill-api",
            "--stop-secs",
            "10",
            "--hold-ms",
            "300",
        ],
    );
    assert_eq!(summary.number("stopped"), 2, "{}", summary.0);
    assert_eq!(summary.number("killed"), 5, "{}", summary.0);
}

#[test]
fn on_pulsar_a_timer_service_an_hour_behind_then_an_hour_ahead_loses_nothing() {
    // Bookings hold on a durable timer. The timer service runs an hour behind for 6 s (nothing
    // fires until its clock is right again), later an hour ahead until the end (every timer
    // fires at once and is held until due by its engine's or worker's clock). Every ended
    // booking keeps its expiry pending throughout (`expiries_missing=0`).
    let summary = run(
        "pulsar",
        120,
        &[
            "--fault",
            "timer-behind,timer-ahead",
            "--outage-secs",
            "6",
            "--hold-ms",
            "1500",
        ],
    );
    assert_eq!(injected(&summary), "timer-ahead:1,timer-behind:1");
    assert!(
        summary.number("timers_early") > 0,
        "timers fired early and were held: {}",
        summary.0
    );
}

#[test]
fn on_pulsar_a_stopped_engine_and_worker_lose_nothing() {
    let summary = run("pulsar", 120, &["--fault", "stop", "--stop-secs", "10"]);
    assert_eq!(summary.number("stopped"), 2, "{}", summary.0);
}

#[test]
fn duplicated_and_reordered_deliveries_with_a_kill_change_nothing() {
    // Every process publishes 5 % of its messages twice, receives 5 % twice and holds 5 % back
    // for the next delivery to overtake.
    let summary = run(
        "pulsar",
        160,
        &["--chaos", "0.05", "--fault", "kill,kill-tag", "--hold-ms", "300"],
    );
    assert!(summary.number("chaos_injected") > 50, "{}", summary.0);
}

#[test]
fn many_pending_durable_timers_survive_a_timer_service_down_for_8_seconds() {
    // Bookings hold for 8 s on a durable timer and start steadily over 18 s, so about a hundred
    // timers are pending when the timer service dies; they fire once it is back.
    let summary = run(
        "pulsar",
        300,
        &[
            "--concurrency",
            "300",
            "--minutes",
            "0.3",
            "--hold-ms",
            "8000",
            "--fault",
            "kill-timer",
            "--kill-at",
            "0.2",
            "--down-secs",
            "8",
        ],
    );
    let pending = summary.number("timers_pending_at_kill");
    assert!(
        pending >= 50,
        "only {pending} timers were pending at the kill: {}",
        summary.0
    );
}

#[test]
fn on_kafka_killing_an_engine_and_a_worker_at_once_loses_nothing() {
    let summary = run("kafka", 120, &["--fault", "kill"]);
    assert_eq!(summary.number("killed"), 2, "{}", summary.0);
}

/// An outage of Redis or the broker mid-run: an engine reports not ready while it lasts, and
/// work resumes within `bound_ms` of the dependency's return (a bound generous enough for a
/// loaded CI machine; the measured figure is in the line).
fn outage(transport: &str, fault: &str, seconds: &str, bound_ms: u64) {
    let summary = run(transport, 120, &["--fault", fault, "--outage-secs", seconds]);
    assert_eq!(
        summary.text("not_ready_seen"),
        "true",
        "/ready must turn 503 during the outage: {}",
        summary.0
    );
    let recovery = summary.number("recovery_ms");
    assert!(
        recovery < bound_ms,
        "a booking started after the outage took {recovery} ms (bound {bound_ms} ms): {}",
        summary.0
    );
}

#[test]
fn on_pulsar_a_3_second_redis_restart_with_aof_loses_nothing_and_work_resumes_within_seconds() {
    outage("pulsar", "redis-outage", "3", 10_000);
}

#[test]
fn on_pulsar_a_30_second_redis_restart_with_aof_loses_nothing_and_work_resumes_within_seconds() {
    outage("pulsar", "redis-outage", "30", 10_000);
}

#[test]
fn on_pulsar_a_redis_refusing_writes_for_20_seconds_loses_nothing_and_work_resumes_within_seconds() {
    outage("pulsar", "redis-refuses-writes", "20", 10_000);
}

#[test]
fn on_pulsar_an_engine_cut_off_from_redis_for_20_seconds_loses_nothing_and_work_resumes_within_seconds() {
    // Only engine-1 loses Redis (its requests get no answer, as in a network partition); the
    // other engine, the workers and Redis go on. Its partitions' messages wait for it.
    outage("pulsar", "engine-redis-cut", "20", 10_000);
}

#[test]
fn on_kafka_an_engine_cut_off_from_the_broker_for_20_seconds_loses_nothing_and_work_resumes() {
    // Only engine-1 loses the broker: it reaches Kafka through a relay (the broker advertises
    // the relay's address on the listener engine-1 uses), which forwards nothing for 20 s. The
    // group hands its partitions to the other engine after the 6 s session timeout; engine-1
    // comes back as a zombie and rejoins.
    outage("kafka", "engine-broker-cut", "20", 30_000);
}

#[test]
fn a_pulsar_broker_restart_loses_nothing_and_work_resumes_within_seconds() {
    outage("pulsar", "broker-outage", "3", 15_000);
}

#[test]
fn a_kafka_broker_restart_loses_nothing_and_work_resumes_after_the_group_rejoins() {
    outage("kafka", "broker-outage", "3", 30_000);
}
