//! Baton's telemetry, shared by every component:
//!
//! - Prometheus metrics through the `metrics` facade: components record with
//!   `metrics::counter!` and friends under the [`names`] here; this crate installs the one
//!   recorder of the process and renders it for `/metrics` (feature `prometheus`);
//! - OpenTelemetry spans linked through the envelopes' trace context ([`trace`]), exported
//!   over OTLP when a process installs an exporter ([`otlp`], feature `otlp`).

#[cfg(feature = "otlp")]
pub mod otlp;
pub mod trace;

#[cfg(feature = "prometheus")]
use std::sync::OnceLock;

#[cfg(feature = "prometheus")]
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

#[cfg(feature = "prometheus")]
static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

#[cfg(feature = "prometheus")]
/// Installs the process's Prometheus recorder (once; later calls reuse it) and returns a
/// handle that renders it. `None` if another recorder was installed first by someone else.
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .ok()?
                .install_recorder()
                .ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

#[cfg(feature = "prometheus")]
/// The metrics in the Prometheus text format (empty if no recorder could be installed).
pub fn render() -> String {
    prometheus().map(PrometheusHandle::render).unwrap_or_default()
}

#[cfg(feature = "prometheus")]
/// Histogram buckets for latencies in seconds: 100 µs to 30 s.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

/// Names of every metric Baton records, so they are used the same way everywhere.
pub mod names {
    /// Messages taken from a topic (label `topic`).
    pub const CONSUMED: &str = "baton_messages_consumed_total";
    /// Messages published to a topic (label `topic`).
    pub const PUBLISHED: &str = "baton_messages_published_total";
    /// Deliveries that were redeliveries (label `topic`).
    pub const REDELIVERED: &str = "baton_messages_redelivered_total";
    /// Messages moved to a dead-letter topic (labels `topic`, `why`: `undecodable`, `poison`).
    pub const DEAD_LETTERED: &str = "baton_messages_dead_lettered_total";
    /// Messages handed back for redelivery (label `topic`).
    pub const NACKED: &str = "baton_messages_nacked_total";
    /// Seconds a handler took per batch (label `topic`).
    pub const HANDLER_SECONDS: &str = "baton_handler_duration_seconds";
    /// Messages of a batch (label `topic`).
    pub const BATCH_SIZE: &str = "baton_handler_batch_size";
    /// Workflow instances started (label `workflow`).
    pub const WORKFLOWS_STARTED: &str = "baton_workflows_started_total";
    /// Workflow instances ended (labels `workflow`, `status`: completed, failed, cancelled).
    pub const WORKFLOWS_ENDED: &str = "baton_workflows_ended_total";
    /// Workflow tasks that failed (label `workflow`).
    pub const WORKFLOW_TASK_FAILURES: &str = "baton_workflow_task_failures_total";
    /// Service task attempts started (labels `service`).
    pub const TASK_ATTEMPTS: &str = "baton_task_attempts_total";
    /// Service task attempts that failed and will be retried (label `service`).
    pub const TASK_RETRIES: &str = "baton_task_retries_total";
    /// Service tasks that failed for good (labels `service`, `kind`).
    pub const TASK_FAILURES: &str = "baton_task_failures_total";
    /// Service task attempts that completed (label `service`).
    pub const TASK_COMPLETIONS: &str = "baton_task_completions_total";
    /// Seconds a service task attempt took (label `service`).
    pub const TASK_SECONDS: &str = "baton_task_duration_seconds";
    /// Saves that lost their compare-and-set (another writer moved the instance on).
    pub const CAS_CONFLICTS: &str = "baton_engine_cas_conflicts_total";
    /// Instance states found in the engine's cache.
    pub const CACHE_HITS: &str = "baton_engine_cache_hits_total";
    /// Instance states loaded from the store.
    pub const CACHE_MISSES: &str = "baton_engine_cache_misses_total";
    /// Service and workflow task attempts a worker is running now (label `kind`).
    pub const IN_FLIGHT: &str = "baton_worker_in_flight";
    /// Timers fired.
    pub const TIMERS_FIRED: &str = "baton_timers_fired_total";
    /// Messages a timer held that arrived before the time they take effect by the receiver's
    /// clock, and were held again until then (label `consumer`: `engine`, `worker`).
    pub const TIMERS_EARLY: &str = "baton_timers_early_total";
    /// How far ahead of this process's clock the messages it consumed in the last minute were
    /// emitted, at most (0 when none was): a sender's clock, or a timer service's, runs ahead.
    pub const CLOCK_LEAD: &str = "baton_clock_lead_seconds";
    /// Faults injected by the chaos transport layer (label `kind`: `duplicate_publish`,
    /// `duplicate_delivery`, `reorder`); only present when `transport.chaos` is on.
    pub const CHAOS_INJECTED: &str = "baton_chaos_injected_total";
}

#[cfg(feature = "prometheus")]
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(names::CONSUMED, "Messages taken from a topic");
    describe_counter!(names::PUBLISHED, "Messages published to a topic");
    describe_counter!(names::REDELIVERED, "Deliveries that were redeliveries");
    describe_counter!(names::DEAD_LETTERED, "Messages moved to a dead-letter topic");
    describe_counter!(names::NACKED, "Messages handed back for redelivery");
    describe_histogram!(names::HANDLER_SECONDS, Unit::Seconds, "Time a handler took per batch");
    describe_histogram!(names::BATCH_SIZE, Unit::Count, "Messages handled per batch");
    describe_counter!(names::WORKFLOWS_STARTED, "Workflow instances started");
    describe_counter!(names::WORKFLOWS_ENDED, "Workflow instances ended, by status");
    describe_counter!(names::WORKFLOW_TASK_FAILURES, "Workflow tasks that failed");
    describe_counter!(names::TASK_ATTEMPTS, "Service task attempts started");
    describe_counter!(
        names::TASK_RETRIES,
        "Service task attempts that failed and will be retried"
    );
    describe_counter!(names::TASK_FAILURES, "Service tasks that failed for good");
    describe_counter!(names::TASK_COMPLETIONS, "Service task attempts that completed");
    describe_histogram!(names::TASK_SECONDS, Unit::Seconds, "Time a service task attempt took");
    describe_counter!(names::CAS_CONFLICTS, "Saves that lost their compare-and-set");
    describe_counter!(names::CACHE_HITS, "Instance states found in the engine's cache");
    describe_counter!(names::CACHE_MISSES, "Instance states loaded from the store");
    describe_gauge!(names::IN_FLIGHT, "Task attempts a worker is running now");
    describe_counter!(names::TIMERS_FIRED, "Timers fired");
    describe_counter!(
        names::TIMERS_EARLY,
        "Timer-held messages that arrived before their due time and were held again"
    );
    describe_gauge!(
        names::CLOCK_LEAD,
        Unit::Seconds,
        "Largest lead of a consumed message's emission time over this process's clock in the last minute"
    );
    describe_counter!(names::CHAOS_INJECTED, "Faults injected by the chaos transport layer");
}
