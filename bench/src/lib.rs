//! Benchmark programs for Baton: the booking-4step workload of the benchmark spec, driven in a
//! closed loop with the spec's report, and the history-length sweep. Figures are printed, never
//! asserted: see `docs/performance.md`.

pub mod broker;
pub mod counting;
pub mod driver;
pub mod hop;
pub mod procstat;
pub mod report;
pub mod serve;
pub mod tags;
pub mod timers;
pub mod workload;
