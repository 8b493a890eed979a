//! CPU time and memory of processes and of the machine, from `/proc` (through `procfs`), as
//! the spec measures them: CPU-seconds per process from `/proc/<pid>/stat`, peak RSS from
//! `/proc/<pid>/status`, and the machine's busy CPU from `/proc/stat`.

use procfs::process::Process;
use procfs::{CurrentSI, KernelStats};

/// Reading `/proc` failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read /proc: {0}")]
pub struct ProcError(#[from] procfs::ProcError);

fn pid_of(pid: u32) -> Result<Process, ProcError> {
    Ok(Process::new(i32::try_from(pid).unwrap_or(i32::MAX))?)
}

/// CPU-seconds (user + system) a process has used so far.
pub fn process_cpu_seconds(pid: u32) -> Result<f64, ProcError> {
    let stat = pid_of(pid)?.stat()?;
    Ok((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
}

/// Peak resident memory of a process, in KiB (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> Result<u64, ProcError> {
    Ok(pid_of(pid)?.status()?.vmhwm.unwrap_or(0))
}

/// The machine's CPU counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MachineCpu {
    /// CPU-seconds spent not idle, summed over CPUs.
    pub busy_seconds: f64,
}

/// Reads the machine's CPU counters.
pub fn machine_cpu() -> Result<MachineCpu, ProcError> {
    let total = KernelStats::current()?.total;
    let busy = total.user
        + total.nice
        + total.system
        + total.irq.unwrap_or(0)
        + total.softirq.unwrap_or(0)
        + total.steal.unwrap_or(0);
    Ok(MachineCpu {
        busy_seconds: busy as f64 / procfs::ticks_per_second() as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_memory_and_a_missing_one_is_an_error() {
        let pid = std::process::id();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(i));
        }
        std::hint::black_box(x);
        assert!(process_cpu_seconds(pid).expect("stat") > 0.0);
        assert!(peak_rss_kib(pid).expect("status") > 0);
        assert!(machine_cpu().expect("/proc/stat").busy_seconds > 0.0);
        assert!(process_cpu_seconds(u32::MAX).is_err());
    }
}
