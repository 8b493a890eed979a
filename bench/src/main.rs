//! `baton-bench`: runs the booking-4step benchmark and the history-length sweep, and prints
//! their figures.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use baton::{Client, Embedded, StartOptions};
use baton_bench::driver::{Plan, measure, warm_up};
use baton_bench::procstat::{machine_cpu, peak_rss_kib, process_cpu_seconds};
use baton_bench::report::{ProcessFigures, Report};
use baton_bench::workload::{
    BookingInput, BookingWorkflow, FlightService, HotelService, KEY, NotifyService, PaymentService, SequentialSteps,
    StepService, Steps,
};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(name = "baton-bench", about = "Baton's benchmark programs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Topology {
    /// Every component in this process, on the in-memory transport and store.
    Memory,
    /// Every component in this process, on Redis and a real broker.
    Embedded,
    /// Engine, timer service, tag engine and one worker as separate processes.
    Processes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Transport {
    Pulsar,
    Kafka,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Redis fsyncs every write; the broker syncs its journal.
    Durable,
    /// Redis fsyncs every second; the broker does not sync.
    Fast,
}

#[derive(Subcommand)]
enum Command {
    /// The booking-4step workload in a closed loop.
    Booking {
        /// Where the components run.
        #[arg(long, value_enum, default_value = "memory")]
        topology: Topology,
        /// The broker (not for `memory`).
        #[arg(long, value_enum, default_value = "pulsar")]
        transport: Transport,
        /// Durability (not for `memory`).
        #[arg(long, value_enum, default_value = "durable")]
        mode: Mode,
        /// Workflows measured.
        #[arg(short = 'n', long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
        n: u64,
        /// Concurrent clients.
        #[arg(short = 'c', long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
        c: u64,
        /// Workflows run first, not measured.
        #[arg(long, default_value_t = 200)]
        warmup: u64,
        /// Where to write the JSON report.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Prefix of the runs' keys (default: a fresh one per run).
        #[arg(long)]
        run_tag: Option<String>,
    },
    /// Serves the workload over HTTP: `POST /booking/{key}/run` answers with the result.
    Serve {
        /// Address to listen on (port 0 picks a free one; the address is printed).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Where the components run.
        #[arg(long, value_enum, default_value = "memory")]
        topology: Topology,
    },
    /// K strictly sequential trivial steps per workflow, for several K: the cost per step.
    Sweep {
        /// The values of K, comma separated.
        #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
        steps: Vec<u64>,
        /// Workflows each client runs per K, at least (more for small K, so that a round has
        /// 3,000 steps or more).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
        runs: u64,
        /// Workflows run at once in the parallel round per K.
        #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..))]
        parallel: u64,
    },
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg:>9} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

async fn memory_baton() -> anyhow::Result<Embedded> {
    Embedded::builder()
        .service(PaymentService::new(Steps))
        .service(FlightService::new(Steps))
        .service(HotelService::new(Steps))
        .service(NotifyService::new(Steps))
        .service(StepService::new(Steps))
        .workflow::<BookingWorkflow>()
        .workflow::<SequentialSteps>()
        .start()
        .await
        .context("starting the embedded components")
}

/// Submits one booking under `key` and checks its result.
async fn book(client: Client, key: String, i: u64) -> Result<(), String> {
    let options = StartOptions {
        custom_id: Some(key.clone()),
        meta: BTreeMap::from([(KEY.to_string(), key.clone())]),
        ..StartOptions::default()
    };
    let handle = client
        .start_with::<BookingWorkflow>(&BookingInput::for_run(i), options)
        .await
        .map_err(|e| format!("{key}: start failed: {e}"))?;
    let result = handle.result().await.map_err(|e| format!("{key}: {e}"))?;
    if result.is_expected_for(&key) {
        Ok(())
    } else {
        Err(format!("{key}: unexpected result {result:?}"))
    }
}

async fn booking(topology: Topology, plan: Plan, json: Option<PathBuf>) -> anyhow::Result<Report> {
    if topology != Topology::Memory {
        let name = topology
            .to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default();
        bail!(
            "topology {name} is not available in this build yet; run --topology memory, or the \
             multi-process cluster with scripts/local-cluster.sh"
        );
    }
    let baton = memory_baton().await?;
    let client = baton.client().clone();
    let pid = std::process::id();
    let progress = progress_bar();
    let deadline = Instant::now() + plan.hard_bound;
    let run = move |key, i| book(client.clone(), key, i);
    warm_up(&plan, deadline, &progress, run.clone()).await;
    // CPU and machine time of the measured phase only.
    let (cpu_start, machine_start) = (process_cpu_seconds(pid)?, machine_cpu()?);
    let measured = measure(&plan, deadline, &progress, run).await;
    let cpu = process_cpu_seconds(pid)? - cpu_start;
    let machine_busy = machine_cpu()?.busy_seconds - machine_start.busy_seconds;
    progress.finish_and_clear();
    baton.shutdown().await;
    let mut report = Report::new("baton-memory".into(), plan.c, plan.warmup, &measured);
    report.processes.insert(
        "baton (engine, timer service, tag engine, worker and driver in one process)".into(),
        ProcessFigures {
            cpu_seconds: cpu,
            peak_rss_kib: peak_rss_kib(pid)?,
        },
    );
    report.machine_busy_cpu_s = machine_busy;
    report.foreign_cpu_s = (machine_busy - cpu).max(0.0);
    report.settings.insert("topology".into(), "memory".into());
    report.settings.insert("transport".into(), "in-memory".into());
    report
        .settings
        .insert("storage".into(), "in-memory (no persistence)".into());
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report)
}

fn refuse_unavailable(topology: Topology) -> anyhow::Result<()> {
    if topology != Topology::Memory {
        let name = topology
            .to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default();
        bail!(
            "topology {name} is not available in this build yet; run --topology memory, or the \
             multi-process cluster with scripts/local-cluster.sh"
        );
    }
    Ok(())
}

async fn serve(listen: std::net::SocketAddr, topology: Topology) -> anyhow::Result<()> {
    refuse_unavailable(topology)?;
    let baton = memory_baton().await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    println!("serve: listening on {}", listener.local_addr()?);
    let app = baton_bench::serve::router(baton.client().clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    baton.shutdown().await;
    Ok(())
}

/// Steps a sweep round runs at least.
const MIN_STEPS_PER_ROUND: u64 = 3_000;

async fn sweep(steps: Vec<u64>, runs: u64, parallel: u64) -> anyhow::Result<()> {
    if steps.is_empty() || steps.contains(&0) {
        bail!("--steps takes positive step counts, e.g. 10,100,1000");
    }
    let baton = memory_baton().await?;
    let client = baton.client().clone();
    let pid = std::process::id();
    for k in steps {
        for (label, at_once) in [("sequential", 1), ("parallel", parallel)] {
            // Enough steps per round that the CPU clock's 10 ms ticks do not dominate.
            let per_client = runs.max(MIN_STEPS_PER_ROUND.div_ceil(k * at_once));
            let workflows = per_client * at_once;
            let cpu_start = process_cpu_seconds(pid)?;
            let started = Instant::now();
            let mut round = tokio::task::JoinSet::new();
            for _ in 0..at_once {
                let client = client.clone();
                round.spawn(async move {
                    for _ in 0..per_client {
                        let handle = client.start::<SequentialSteps>(&k).await.map_err(|e| e.to_string())?;
                        let done = handle.result().await.map_err(|e| e.to_string())?;
                        if done != k {
                            return Err(format!("a run of {k} steps returned {done}"));
                        }
                    }
                    Ok::<(), String>(())
                });
            }
            while let Some(joined) = round.join_next().await {
                joined?.map_err(|e| anyhow::anyhow!(e))?;
            }
            let wall = started.elapsed();
            let cpu = process_cpu_seconds(pid)? - cpu_start;
            let total_steps = (k * workflows) as f64;
            println!(
                "sweep: K={k} {label} workflows={workflows} us_per_step_cpu={:.1} ms_per_step_wall={:.3}",
                cpu * 1e6 / total_steps,
                wall.as_secs_f64() * 1e3 / (k * per_client) as f64,
            );
        }
    }
    baton.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("baton-bench: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Runs a command; exit code 1 when a run had errors.
async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Booking {
            topology,
            transport,
            mode,
            n,
            c,
            warmup,
            json,
            run_tag,
        } => {
            let _ = (transport, mode);
            let run_tag = run_tag.unwrap_or_else(|| format!("b{}", baton::WorkflowId::new()));
            let plan = Plan {
                n: usize::try_from(n)?,
                c: usize::try_from(c)?,
                warmup: usize::try_from(warmup)?,
                run_tag,
                per_workflow: Duration::from_secs(60),
                hard_bound: Duration::from_secs(600),
            };
            let report = booking(topology, plan, json).await?;
            for e in &report.sample_errors {
                eprintln!("error: {e}");
            }
            println!(
                "cpu: {:.3} ms per workflow (every component and the driver); peak RSS {} KiB",
                report.cpu_ms_per_workflow(&[report.processes.keys().next().map(String::as_str).unwrap_or("")]),
                report.processes.values().map(|p| p.peak_rss_kib).max().unwrap_or(0),
            );
            println!("{}", report.line());
            Ok(if report.errors > 0 {
                std::process::ExitCode::FAILURE
            } else {
                std::process::ExitCode::SUCCESS
            })
        }
        Command::Serve { listen, topology } => {
            serve(listen, topology).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Sweep { steps, runs, parallel } => {
            sweep(steps, runs, parallel).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}
