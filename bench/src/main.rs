//! `baton-bench`: runs the booking-4step benchmark and the history-length sweep, and prints
//! their figures.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

mod processes;
use baton::{Client, Embedded, StartOptions};
use baton_bench::counting::{CountingTransport, MessageCounts};
use baton_bench::driver::{Plan, measure, warm_up};
use baton_bench::procstat::{machine_cpu, peak_rss_kib, process_cpu_seconds};
use baton_bench::report::{ProcessFigures, Report};
use baton_bench::workload::{
    BookingInput, BookingWorkflow, FlightService, HotelService, KEY, NotifyService, PaymentService, SequentialSteps,
    StepService, Steps,
};
use baton_test_support::{Jvm, KafkaBroker, PulsarBroker, RedisServer};

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

/// How the brokers' JVMs run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BrokerJvm {
    /// The client compiler only, a serial collector and a small heap: ready at full speed
    /// within the spec's warm-up.
    Quick,
    /// As the brokers' own start scripts run them (both compilers, G1, 1 GiB heap): faster
    /// once the optimizing compiler has caught up, which takes tens of thousands of workflows.
    Server,
}

impl BrokerJvm {
    fn jvm(self) -> Jvm {
        match self {
            BrokerJvm::Quick => Jvm::Test,
            BrokerJvm::Server => Jvm::Server,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            BrokerJvm::Quick => "JVM -Xmx384m, serial GC, client compiler only",
            BrokerJvm::Server => "JVM -Xmx1g, G1, both compilers",
        }
    }
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
        /// Where the `workflow-engine`, `timer-service` and `tag-engine` binaries are (for
        /// `processes`; default: beside this program, built first under `cargo run`).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// How the broker's JVM runs (not for `memory`).
        #[arg(long, value_enum, default_value = "quick")]
        broker_jvm: BrokerJvm,
    },
    /// Serves the workload over HTTP: `POST /booking/{key}/run` answers with the result.
    Serve {
        /// Address to listen on (port 0 picks a free one; the address is printed).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Where the components run.
        #[arg(long, value_enum, default_value = "memory")]
        topology: Topology,
        /// The broker (not for `memory`).
        #[arg(long, value_enum, default_value = "pulsar")]
        transport: Transport,
        /// Durability (not for `memory`).
        #[arg(long, value_enum, default_value = "durable")]
        mode: Mode,
        /// Where the component binaries are (for `processes`).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// How the broker's JVM runs (not for `memory`).
        #[arg(long, value_enum, default_value = "quick")]
        broker_jvm: BrokerJvm,
    },
    /// The worker process of the `processes` topology: hosts the workload's services and
    /// workflows from the shared configuration (`BATON_*` settings).
    #[command(hide = true)]
    Worker {
        #[command(flatten)]
        common: baton::process::CommonArgs,
    },
    /// The broker's floor: one message at a time from publish to a consumer and back, through
    /// Baton's transport on Redis' and the broker's own processes.
    Hop {
        /// The broker.
        #[arg(long, value_enum, default_value = "pulsar")]
        transport: Transport,
        /// Durability.
        #[arg(long, value_enum, default_value = "durable")]
        mode: Mode,
        /// Round trips measured.
        #[arg(short = 'n', long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
        n: u64,
        /// Round trips first, not measured.
        #[arg(long, default_value_t = 100)]
        warmup: u64,
        /// How the broker's JVM runs.
        #[arg(long, value_enum, default_value = "quick")]
        broker_jvm: BrokerJvm,
    },
    /// What a message costs the broker through Baton's transport: on durable Pulsar by
    /// messages per batched entry and partitions per topic (with the entries written), on Kafka
    /// by `linger.ms` and partitions; messages/s and broker and client CPU per message, as a
    /// table.
    Broker {
        /// The broker.
        #[arg(long, value_enum, default_value = "pulsar")]
        transport: Transport,
        /// Kafka: the producer's `linger.ms` values, comma separated.
        #[arg(long, value_delimiter = ',', default_value = "0,1,5")]
        lingers: Vec<u64>,
        /// Messages per setting.
        #[arg(short = 'n', long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(64..))]
        n: u64,
        /// Pulsar: the producer's most messages per batched entry, comma separated.
        #[arg(long, value_delimiter = ',', default_value = "1,2,5,10,20")]
        batches: Vec<u32>,
        /// Partitions per topic, comma separated.
        #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
        partitions: Vec<u32>,
        /// How the broker's JVM runs.
        #[arg(long, value_enum, default_value = "quick")]
        broker_jvm: BrokerJvm,
    },
    /// Save time, on Redis, of an instance with the most tags it may have (100 tags of 163
    /// bytes): the heaviest save one request can cause.
    Tags {
        /// Instances measured (each is saved twice).
        #[arg(short = 'n', long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
        n: u64,
        /// Durability.
        #[arg(long, value_enum, default_value = "durable")]
        mode: Mode,
    },
    /// How fast the timer service stores and fires timers, on Pulsar and Redis: a burst of
    /// N timers stored, then a burst of N all due at one instant fired.
    Timers {
        /// Timers per burst.
        #[arg(short = 'n', long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
        n: u64,
        /// Durability.
        #[arg(long, value_enum, default_value = "durable")]
        mode: Mode,
        /// How the broker's JVM runs.
        #[arg(long, value_enum, default_value = "quick")]
        broker_jvm: BrokerJvm,
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

/// The workload's services and workflows on a builder.
async fn start_with(builder: baton::EmbeddedBuilder) -> anyhow::Result<Embedded> {
    builder
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

async fn memory_baton(counts: MessageCounts) -> anyhow::Result<Embedded> {
    start_with(Embedded::builder().transport_layer(move |t| CountingTransport::wrap(t, counts))).await
}

/// The servers an embedded run started, kept running (and measured) for the run.
struct Servers {
    redis: RedisServer,
    pulsar: Option<PulsarBroker>,
    kafka: Option<KafkaBroker>,
}

impl Servers {
    fn pids(&self) -> Vec<(&'static str, Option<u32>)> {
        vec![
            ("redis", self.redis.pid()),
            (
                "broker",
                self.pulsar
                    .as_ref()
                    .and_then(PulsarBroker::pid)
                    .or(self.kafka.as_ref().and_then(KafkaBroker::pid)),
            ),
        ]
    }
}

/// Starts Redis and the broker with fresh data directories, durable or fast, and connects a
/// transport to the broker. Also gives the `BATON_*` settings that point component processes
/// at the same servers.
async fn start_servers(
    transport: Transport,
    mode: Mode,
    broker_jvm: BrokerJvm,
    settings: &mut BTreeMap<String, String>,
) -> anyhow::Result<(
    Servers,
    Arc<dyn baton::components::transport::Transport>,
    Vec<(String, String)>,
)> {
    use baton::components::transport::{KafkaConfig, KafkaTransport, PulsarConfig, PulsarTransport};
    let durable = mode == Mode::Durable;
    let redis = if durable {
        RedisServer::start_durable()
    } else {
        RedisServer::start()
    };
    settings.insert(
        "redis".into(),
        if durable {
            "appendonly yes, appendfsync always"
        } else {
            "no persistence"
        }
        .into(),
    );
    let mut env = vec![
        ("BATON_STORAGE__URL".to_string(), redis.url.clone()),
        ("BATON_STORAGE__PREFIX".to_string(), STORAGE_PREFIX.to_string()),
        ("BATON_PROCESS__LOG".to_string(), "warn".to_string()),
    ];
    let (pulsar, kafka, transport): (_, _, Arc<dyn baton::components::transport::Transport>) = match transport {
        Transport::Pulsar => {
            let broker = PulsarBroker::start_with(durable, broker_jvm.jvm());
            settings.insert(
                "broker".into(),
                format!(
                    "Apache Pulsar standalone, one bookie, journalSyncData={durable}, {}",
                    broker_jvm.describe()
                ),
            );
            let config = PulsarConfig {
                service_url: broker.service_url.clone(),
                admin_url: Some(broker.admin_url.clone()),
                namespace: "bench".into(),
                ..PulsarConfig::default()
            };
            env.extend([
                ("BATON_TRANSPORT__URL".to_string(), broker.service_url.clone()),
                (
                    "BATON_TRANSPORT__PULSAR__ADMIN_URL".to_string(),
                    broker.admin_url.clone(),
                ),
                ("BATON_TRANSPORT__PULSAR__NAMESPACE".to_string(), "bench".to_string()),
            ]);
            let connected = PulsarTransport::connect(config).await.context("connecting to Pulsar")?;
            (Some(broker), None, Arc::new(connected))
        }
        Transport::Kafka => {
            let broker = KafkaBroker::start_with(broker_jvm.jvm());
            settings.insert(
                "broker".into(),
                format!(
                    "Apache Kafka (KRaft, one node); it relies on the page cache, as Kafka does by default, {}",
                    broker_jvm.describe()
                ),
            );
            let config = KafkaConfig {
                bootstrap_servers: broker.bootstrap.clone(),
                namespace: "bench.".into(),
                ..KafkaConfig::default()
            };
            env.extend([
                (
                    "BATON_TRANSPORT__URL".to_string(),
                    format!("kafka://{}", broker.bootstrap),
                ),
                ("BATON_TRANSPORT__KAFKA__NAMESPACE".to_string(), "bench.".to_string()),
            ]);
            let connected = KafkaTransport::connect(config).context("connecting to Kafka")?;
            (None, Some(broker), Arc::new(connected))
        }
    };
    Ok((Servers { redis, pulsar, kafka }, transport, env))
}

/// The prefix of every key Baton writes to Redis in a run.
const STORAGE_PREFIX: &str = "bench:";

/// Every component in this process, on the servers `start_servers` started.
async fn embedded_baton(
    servers: &Servers,
    transport: Arc<dyn baton::components::transport::Transport>,
    counts: MessageCounts,
) -> anyhow::Result<Embedded> {
    use baton::Stores;
    use baton::components::storage::RedisStore;
    let store = RedisStore::connect(&servers.redis.url, STORAGE_PREFIX)
        .await
        .context("connecting to Redis")?;
    start_with(
        Embedded::builder()
            .transport(transport)
            .stores(Stores::all(store))
            .transport_layer(move |t| CountingTransport::wrap(t, counts)),
    )
    .await
}

/// Where a run's components are.
enum Deployment {
    /// In this process.
    Embedded(Box<Embedded>),
    /// In their own processes; this process runs the client only.
    Processes {
        client: Client,
        components: processes::Components,
    },
}

impl Deployment {
    fn client(&self) -> Client {
        match self {
            Self::Embedded(baton) => baton.client().clone(),
            Self::Processes { client, .. } => client.clone(),
        }
    }

    fn pids(&self) -> Vec<(&'static str, Option<u32>)> {
        match self {
            Self::Embedded(_) => vec![("baton", Some(std::process::id()))],
            Self::Processes { components, .. } => {
                let mut pids = vec![("driver", Some(std::process::id()))];
                pids.extend(components.pids());
                pids
            }
        }
    }

    async fn shutdown(self) {
        match self {
            Self::Embedded(baton) => (*baton).shutdown().await,
            Self::Processes { components, .. } => drop(components),
        }
    }
}

/// Starts a deployment of `topology`, with the servers it needs.
async fn deploy(
    topology: Topology,
    transport: Transport,
    mode: Mode,
    bin_dir: Option<&std::path::Path>,
    broker_jvm: BrokerJvm,
    settings: &mut BTreeMap<String, String>,
    counts: MessageCounts,
) -> anyhow::Result<(Deployment, Option<Servers>, String)> {
    settings.insert("topology".to_string(), value_name(topology));
    if topology == Topology::Memory {
        settings.insert("transport".into(), "in-memory".into());
        settings.insert("storage".into(), "in-memory (no persistence)".into());
        settings.insert(
            "baton".into(),
            "engine, timer service, tag engine, worker and driver in this process".into(),
        );
        let baton = memory_baton(counts).await?;
        return Ok((Deployment::Embedded(Box::new(baton)), None, "baton-memory".to_string()));
    }
    // The binaries first: a missing one fails before any server starts.
    let bin_dir = match topology {
        Topology::Processes => Some(processes::stock_binaries(bin_dir)?),
        _ => None,
    };
    let (servers, connected, env) = start_servers(transport, mode, broker_jvm, settings).await?;
    settings.insert("transport".into(), value_name(transport));
    settings.insert("mode".into(), value_name(mode));
    let label = format!(
        "baton-{}-{}-{}",
        value_name(topology),
        value_name(transport),
        value_name(mode)
    );
    let deployment = match bin_dir {
        None => {
            settings.insert(
                "baton".into(),
                "engine, timer service, tag engine, worker and driver in this process".into(),
            );
            Deployment::Embedded(Box::new(embedded_baton(&servers, connected, counts).await?))
        }
        Some(dir) => {
            processes::describe(settings);
            let components = processes::start(&dir, &env).await?;
            eprintln!("processes: their logs are in {}", components.logs.display());
            let client = Client::connect(CountingTransport::wrap(connected, counts))
                .await
                .context("connecting the client")?;
            Deployment::Processes { client, components }
        }
    };
    Ok((deployment, Some(servers), label))
}

fn value_name<T: ValueEnum>(value: T) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
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

async fn booking(target: Target, plan: Plan, json: Option<PathBuf>) -> anyhow::Result<Report> {
    let mut settings = BTreeMap::new();
    let counts = MessageCounts::default();
    let (deployment, servers, label) = deploy(
        target.topology,
        target.transport,
        target.mode,
        target.bin_dir.as_deref(),
        target.broker_jvm,
        &mut settings,
        counts.clone(),
    )
    .await?;
    let client = deployment.client();
    let mut pids = deployment.pids();
    if let Some(servers) = &servers {
        pids.extend(servers.pids());
    }
    let cpu_of = |pids: &[(&'static str, Option<u32>)]| -> BTreeMap<&'static str, f64> {
        pids.iter()
            .filter_map(|(role, pid)| Some((*role, process_cpu_seconds((*pid)?).ok()?)))
            .collect()
    };
    let progress = progress_bar();
    let deadline = Instant::now() + plan.hard_bound;
    let run = move |key, i| book(client.clone(), key, i);
    warm_up(&plan, deadline, &progress, run.clone()).await;
    // CPU and machine time of the measured phase only.
    let (cpu_start, machine_start, sent_start) = (cpu_of(&pids), machine_cpu()?, counts.snapshot());
    let measured = measure(&plan, deadline, &progress, run).await;
    let (cpu_end, machine_end, sent_end) = (cpu_of(&pids), machine_cpu()?, counts.snapshot());
    progress.finish_and_clear();
    let mut processes = BTreeMap::new();
    for (role, pid) in &pids {
        let (Some(start), Some(end), Some(pid)) = (cpu_start.get(role), cpu_end.get(role), pid) else {
            continue;
        };
        processes.insert(
            role.to_string(),
            ProcessFigures {
                cpu_seconds: end - start,
                peak_rss_kib: peak_rss_kib(*pid).unwrap_or(0),
            },
        );
    }
    let separate = matches!(deployment, Deployment::Processes { .. });
    deployment.shutdown().await;
    drop(servers);
    let machine_busy = machine_end.busy_seconds - machine_start.busy_seconds;
    let mut report = Report::new(label, plan.c, plan.warmup, &measured);
    let measured_cpu: f64 = processes.values().map(|p| p.cpu_seconds).sum();
    report.processes = processes;
    report.machine_busy_cpu_s = machine_busy;
    report.foreign_cpu_s = (machine_busy - measured_cpu).max(0.0);
    // With separate processes only the client's own messages pass through this process.
    if !separate {
        report.messages_per_workflow = MessageCounts::per_workflow(&sent_start, &sent_end, measured.ok);
    }
    report.settings = settings;
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report)
}

/// Where a booking run's components run.
struct Target {
    topology: Topology,
    transport: Transport,
    mode: Mode,
    bin_dir: Option<PathBuf>,
    broker_jvm: BrokerJvm,
}

async fn serve(listen: std::net::SocketAddr, target: Target) -> anyhow::Result<()> {
    let mut settings = BTreeMap::new();
    let (deployment, servers, label) = deploy(
        target.topology,
        target.transport,
        target.mode,
        target.bin_dir.as_deref(),
        target.broker_jvm,
        &mut settings,
        MessageCounts::default(),
    )
    .await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    println!("serve: {label} listening on {}", listener.local_addr()?);
    let app = baton_bench::serve::router(deployment.client());
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    deployment.shutdown().await;
    drop(servers);
    Ok(())
}

/// Runs the worker process of the `processes` topology until it is signalled.
async fn worker(common: baton::process::CommonArgs) -> ! {
    baton::process::run_worker_with("baton-bench worker", &common, |config| async move {
        baton::Worker::new(config)
            .service(PaymentService::new(Steps))?
            .service(FlightService::new(Steps))?
            .service(HotelService::new(Steps))?
            .service(NotifyService::new(Steps))?
            .service(StepService::new(Steps))?
            .with_workflow::<BookingWorkflow>()?
            .with_workflow::<SequentialSteps>()
    })
    .await
}

/// Steps a sweep round runs at least.
const MIN_STEPS_PER_ROUND: u64 = 3_000;

async fn sweep(steps: Vec<u64>, runs: u64, parallel: u64) -> anyhow::Result<()> {
    if steps.is_empty() || steps.contains(&0) {
        bail!("--steps takes positive step counts, e.g. 10,100,1000");
    }
    let baton = memory_baton(MessageCounts::default()).await?;
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

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("baton-bench: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("baton-bench: {e:#}");
            std::process::ExitCode::from(2)
        }
    };
    // A broker client's blocking calls (librdkafka's, once its broker is stopped) may outlive
    // the run by their own timeouts; the figures are out, so they are not waited for.
    runtime.shutdown_timeout(Duration::from_secs(2));
    code
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
            bin_dir,
            broker_jvm,
        } => {
            let run_tag = run_tag.unwrap_or_else(|| format!("b{}", baton::WorkflowId::new()));
            let plan = Plan {
                n: usize::try_from(n)?,
                c: usize::try_from(c)?,
                warmup: usize::try_from(warmup)?,
                run_tag,
                per_workflow: Duration::from_secs(60),
                hard_bound: Duration::from_secs(600),
            };
            let target = Target {
                topology,
                transport,
                mode,
                bin_dir,
                broker_jvm,
            };
            let report = booking(target, plan, json).await?;
            for e in &report.sample_errors {
                eprintln!("error: {e}");
            }
            for (role, p) in &report.processes {
                println!(
                    "cpu: {role} {:.3} ms per workflow, peak RSS {} KiB",
                    report.cpu_ms_per_workflow(&[role.as_str()]),
                    p.peak_rss_kib
                );
            }
            println!(
                "cpu: foreign {:.2} s of {:.2} s busy",
                report.foreign_cpu_s, report.machine_busy_cpu_s
            );
            if !report.messages_per_workflow.is_empty() {
                let by_kind: Vec<String> = report
                    .messages_per_workflow
                    .iter()
                    .filter(|(kind, _)| kind.as_str() != "total")
                    .map(|(kind, n)| format!("{kind} {n:.1}"))
                    .collect();
                println!(
                    "messages: {:.1} per workflow ({})",
                    report.messages_per_workflow.get("total").copied().unwrap_or_default(),
                    by_kind.join(", ")
                );
            }
            println!("{}", report.line());
            Ok(if report.errors > 0 {
                std::process::ExitCode::FAILURE
            } else {
                std::process::ExitCode::SUCCESS
            })
        }
        Command::Serve {
            listen,
            topology,
            transport,
            mode,
            bin_dir,
            broker_jvm,
        } => {
            let target = Target {
                topology,
                transport,
                mode,
                bin_dir,
                broker_jvm,
            };
            serve(listen, target).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Worker { common } => worker(common).await,
        Command::Hop {
            transport,
            mode,
            n,
            warmup,
            broker_jvm,
        } => {
            let mut settings = BTreeMap::new();
            let (_servers, connected, _) = start_servers(transport, mode, broker_jvm, &mut settings).await?;
            let figures = baton_bench::hop::measure(connected, usize::try_from(n)?, usize::try_from(warmup)?).await?;
            println!(
                "hop-{}-{}: n={} publish_p50={:.3}ms hop_p50={:.3}ms hop_p99={:.3}ms",
                value_name(transport),
                value_name(mode),
                figures.n,
                figures.publish_p50_ms,
                figures.hop_p50_ms,
                figures.hop_p99_ms
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Broker {
            transport: Transport::Kafka,
            lingers,
            n,
            partitions,
            broker_jvm,
            ..
        } => {
            let broker = KafkaBroker::start_with(broker_jvm.jvm());
            let pid = broker.pid().context("the broker has no process")?;
            let n = usize::try_from(n)?;
            baton_bench::broker::measure_kafka(&broker.bootstrap, pid, Duration::ZERO, 1, n).await?;
            println!(
                "broker-kafka ({}; offsets committed as the transport does today)",
                broker_jvm.describe()
            );
            println!(
                "| linger.ms | partitions | messages | messages/s | broker CPU ms/message | client CPU ms/message |"
            );
            println!("|---|---|---|---|---|---|");
            for &linger in &lingers {
                for &partitions in &partitions {
                    let partitions = i32::try_from(partitions.max(1))?;
                    let row = baton_bench::broker::measure_kafka(
                        &broker.bootstrap,
                        pid,
                        Duration::from_millis(linger),
                        partitions,
                        n,
                    )
                    .await?;
                    println!(
                        "| {} | {} | {} | {:.0} | {:.3} | {:.3} |",
                        row.linger_ms,
                        row.partitions,
                        row.messages,
                        row.burst.per_second,
                        row.burst.broker_cpu_ms,
                        row.burst.client_cpu_ms
                    );
                }
            }
            drop(broker);
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Broker {
            n,
            batches,
            partitions,
            broker_jvm,
            ..
        } => {
            let broker = PulsarBroker::start_with(true, broker_jvm.jvm());
            let target = baton_bench::broker::Broker {
                service_url: broker.service_url.clone(),
                admin_url: broker.admin_url.clone(),
                pid: broker.pid().context("the broker has no process")?,
            };
            println!(
                "broker-pulsar-durable ({}; acknowledgements: one per message, the transport's only mode)",
                broker_jvm.describe()
            );
            // The broker's JIT warms up on a first run, not counted: otherwise the first setting
            // measures a cold broker.
            baton_bench::broker::measure(&target, 1, 1, usize::try_from(n)?).await?;
            println!(
                "| messages/entry allowed | partitions | messages | entries | messages/entry | messages/s | broker CPU ms/message | client CPU ms/message |"
            );
            println!("|---|---|---|---|---|---|---|---|");
            for &batch in &batches {
                for &partitions in &partitions {
                    let row =
                        baton_bench::broker::measure(&target, batch.max(1), partitions.max(1), usize::try_from(n)?)
                            .await?;
                    println!(
                        "| {} | {} | {} | {} | {:.1} | {:.0} | {:.3} | {:.3} |",
                        row.batch_messages,
                        row.partitions,
                        row.messages,
                        row.entries,
                        row.messages as f64 / row.entries.max(1) as f64,
                        row.burst.per_second,
                        row.burst.broker_cpu_ms,
                        row.burst.client_cpu_ms
                    );
                }
            }
            drop(broker);
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Tags { n, mode } => {
            use baton::components::storage::RedisStore;
            let redis = if mode == Mode::Durable {
                RedisServer::start_durable()
            } else {
                RedisServer::start()
            };
            let store = RedisStore::connect(&redis.url, STORAGE_PREFIX).await?;
            let figures = baton_bench::tags::measure(&store, usize::try_from(n)?).await?;
            println!(
                "tags-redis-{}: tags={} tag_bytes={} instances={} saves={} save_p50={:.3}ms save_p99={:.3}ms save_max={:.3}ms",
                value_name(mode),
                baton::components::schemas::tags::MAX_TAGS_PER_INSTANCE,
                baton_bench::tags::TAG_BYTES,
                figures.instances,
                figures.instances * 2,
                figures.p50_ms,
                figures.p99_ms,
                figures.max_ms
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Timers { n, mode, broker_jvm } => {
            use baton::components::storage::RedisStore;
            let mut settings = BTreeMap::new();
            let (servers, transport, _) = start_servers(Transport::Pulsar, mode, broker_jvm, &mut settings).await?;
            let store = RedisStore::connect(&servers.redis.url, STORAGE_PREFIX).await?;
            let figures = baton_bench::timers::measure(transport, Arc::new(store), usize::try_from(n)?).await?;
            println!(
                "timers-pulsar-redis-{}: timers={} stored_per_s={:.0} fired_per_s={:.0} last_fired_after_due={:.2}s",
                value_name(mode),
                figures.timers,
                figures.stored_per_s,
                figures.fired_per_s,
                figures.last_after_due_s
            );
            drop(servers);
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Sweep { steps, runs, parallel } => {
            sweep(steps, runs, parallel).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}
