//! The spec's report: the final line and a JSON file with the same fields.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::driver::{Measured, percentile};

/// One process's share of the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProcessFigures {
    /// CPU-seconds it used during the measured phase.
    pub cpu_seconds: f64,
    /// Its peak resident memory, in KiB.
    pub peak_rss_kib: u64,
}

/// Everything one benchmark run reports.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `baton-memory`, `baton-<topology>-<transport>-<mode>`.
    pub label: String,
    /// Workflows measured.
    #[serde(rename = "N")]
    pub n: usize,
    /// Concurrent clients.
    #[serde(rename = "C")]
    pub c: usize,
    /// Warm-up workflows.
    #[serde(rename = "W")]
    pub warmup: usize,
    /// Ended as expected.
    pub ok: usize,
    /// Did not.
    pub errors: usize,
    /// First submit to last result, in seconds.
    pub wall_s: f64,
    /// `ok / wall`.
    pub throughput_wf_s: f64,
    /// Latency percentiles, in milliseconds.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// The slowest.
    pub max_ms: f64,
    /// CPU and memory by process role (`driver`, `engine`, `broker`, `redis`, `worker`, …).
    pub processes: BTreeMap<String, ProcessFigures>,
    /// CPU-seconds the whole machine was busy during the measured phase.
    pub machine_busy_cpu_s: f64,
    /// Busy CPU-seconds not used by the processes above.
    pub foreign_cpu_s: f64,
    /// Messages the components published per workflow during the measured phase, by topic
    /// kind and in `total` (each is one broker write, and at least one delivery).
    pub messages_per_workflow: BTreeMap<String, f64>,
    /// How the run was set up (topology, transport, mode, durability settings).
    pub settings: BTreeMap<String, String>,
    /// The first errors seen, if any.
    pub sample_errors: Vec<String>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

impl Report {
    /// The report of a measured phase.
    pub fn new(label: String, c: usize, warmup: usize, measured: &Measured) -> Self {
        let wall_s = measured.wall.as_secs_f64();
        let lat = &measured.latencies;
        Self {
            label,
            n: measured.ok + measured.errors,
            c,
            warmup,
            ok: measured.ok,
            errors: measured.errors,
            wall_s,
            throughput_wf_s: if wall_s > 0.0 { measured.ok as f64 / wall_s } else { 0.0 },
            p50_ms: ms(percentile(lat, 50.0)),
            p90_ms: ms(percentile(lat, 90.0)),
            p99_ms: ms(percentile(lat, 99.0)),
            max_ms: ms(lat.last().copied().unwrap_or_default()),
            processes: BTreeMap::new(),
            machine_busy_cpu_s: 0.0,
            foreign_cpu_s: 0.0,
            messages_per_workflow: BTreeMap::new(),
            settings: BTreeMap::new(),
            sample_errors: measured.sample_errors.clone(),
        }
    }

    /// The spec's final line.
    pub fn line(&self) -> String {
        format!(
            "{}: N={} C={} ok={} errors={} wall={:.2}s throughput={:.1} wf/s p50={:.2}ms p99={:.2}ms",
            self.label,
            self.n,
            self.c,
            self.ok,
            self.errors,
            self.wall_s,
            self.throughput_wf_s,
            self.p50_ms,
            self.p99_ms
        )
    }

    /// CPU-seconds per workflow of the named processes, in milliseconds.
    pub fn cpu_ms_per_workflow(&self, roles: &[&str]) -> f64 {
        let cpu: f64 = roles
            .iter()
            .filter_map(|r| self.processes.get(*r))
            .map(|p| p.cpu_seconds)
            .sum();
        if self.ok == 0 {
            0.0
        } else {
            cpu * 1_000.0 / self.ok as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_has_the_spec_fields() {
        let measured = Measured {
            latencies: vec![Duration::from_millis(2), Duration::from_millis(4)],
            ok: 2,
            errors: 0,
            wall: Duration::from_millis(500),
            sample_errors: Vec::new(),
        };
        let report = Report::new("baton-memory".into(), 1, 0, &measured);
        assert_eq!(
            report.line(),
            "baton-memory: N=2 C=1 ok=2 errors=0 wall=0.50s throughput=4.0 wf/s p50=2.00ms p99=4.00ms"
        );
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["N"], 2);
        assert_eq!(json["throughput_wf_s"], 4.0);
    }
}
