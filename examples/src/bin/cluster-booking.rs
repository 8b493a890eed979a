//! Runs the booking saga on a local multi-process cluster and checks that a fault mid-run
//! loses nothing and duplicates nothing.
//!
//! It starts Redis and a broker (Apache Pulsar by default, Apache Kafka with `--transport kafka`)
//! unless their URLs are given. It then
//! starts two `workflow-engine` replicas, a `tag-engine`, a `timer-service` and two
//! `booking-worker` processes, and runs N bookings through a client. Mid-run it injects the
//! fault chosen with `--fault`:
//! - `kill` (the default): SIGKILL one engine and one worker, then restart them;
//! - `redis-outage`: SIGKILL Baton's Redis (kept durable with an append-only file), wait
//!   `--outage-secs`, start it again on the same port and data;
//! - `broker-outage`: the same with the broker.
//!
//! During an outage it checks that an engine's `/ready` turns 503; after it, it measures how
//! long a fresh booking takes to complete (the recovery time). Then it waits for every
//! workflow, checks the books (kept in a Redis of their own during a Redis outage), tears
//! everything down and prints one line:
//!
//! `cluster-booking: transport=pulsar fault=kill workflows=500 completed=… compensated=… failed=0 lost=0 duplicated_effects=0 killed=2 not_ready_seen=- ready_ms=- recovery_ms=- elapsed_ms=…`

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use baton::{Client, ClientError, WorkflowError};
use baton_examples::booking::{self, Booking, BookingOutcome, Bookkeeper, RedisBooks, audit_books};
use baton_server::config::TransportSection;
use baton_test_support::{KafkaBroker, PulsarBroker, RedisServer, free_port};
use clap::{Parser, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Run booking sagas on a local multi-process cluster, killing components mid-run.
#[derive(Parser, Debug, Clone)]
#[command(name = "cluster-booking", version, about)]
struct Args {
    /// Bookings to run.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    workflows: u64,
    /// Bookings in flight at once.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    concurrency: u64,
    /// Kill an engine and a worker once this share of the bookings has finished (0 disables).
    #[arg(long, default_value_t = 0.3)]
    kill_at: f64,
    /// Directory of the Baton binaries (default: this program's directory).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The broker the cluster runs on.
    #[arg(long, value_enum, default_value_t = Broker::Pulsar)]
    transport: Broker,
    /// An existing Redis (default: start one).
    #[arg(long)]
    redis_url: Option<String>,
    /// An existing broker: `pulsar://host:port` or `kafka://host:port` (default: start one).
    #[arg(long)]
    broker_url: Option<String>,
    /// The admin REST API of an existing Pulsar broker (default: derived from --broker-url).
    #[arg(long)]
    pulsar_admin_url: Option<String>,
    /// Give up on a booking after this many seconds (it counts as lost).
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// What to break once `--kill-at` of the bookings have finished.
    #[arg(long, value_enum, default_value_t = Fault::Kill)]
    fault: Fault,
    /// How long a Redis or broker outage lasts, in seconds (the broker's own start-up comes on
    /// top).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    outage_secs: u64,
}

/// The faults the run can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Fault {
    /// SIGKILL an engine and a worker, then restart them.
    Kill,
    /// Stop Baton's Redis for `--outage-secs`, then start it again.
    RedisOutage,
    /// Stop the broker for `--outage-secs`, then start it again.
    BrokerOutage,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::RedisOutage => "redis-outage",
            Self::BrokerOutage => "broker-outage",
        }
    }
}

/// A booking's outcome, waiting through outages: a wait that times out asks the engine
/// afresh (its reply may have been lost with the broker), and a start the broker refused is
/// sent again under the same id.
async fn book(
    client: &Client,
    n: u64,
    budget: Duration,
) -> (Option<baton::WorkflowId>, Option<Result<BookingOutcome, String>>) {
    let deadline = Instant::now() + budget;
    let id = baton::WorkflowId::new();
    let options = baton::StartOptions {
        id: Some(id),
        ..baton::StartOptions::default()
    };
    let handle = loop {
        match client
            .start_with::<Booking>(&booking::request(n), options.clone())
            .await
        {
            Ok(handle) => break handle,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(500)).await,
            Err(e) => return (Some(id), Some(Err(format!("cannot start: {e}")))),
        }
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (Some(id), None);
        }
        match handle.result_within(left.min(Duration::from_secs(1))).await {
            Ok(outcome) => return (Some(id), Some(Ok(outcome))),
            Err(WorkflowError::Client(ClientError::Timeout(_) | ClientError::Transport(_))) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return (Some(id), Some(Err(e.to_string()))),
        }
    }
}

/// Polls `/ready` at `address` until it answers 503, for at most `within`; returns whether it did.
async fn sees_not_ready(address: SocketAddr, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !is_ready(address).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The brokers the cluster can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Broker {
    /// Apache Pulsar.
    Pulsar,
    /// Apache Kafka.
    Kafka,
}

/// The booking started after an outage to time the recovery (outside the run's numbers).
const PROBE_BOOKING: u64 = 1_000_000;

/// What the injected fault did.
#[derive(Default)]
struct FaultReport {
    /// Processes SIGKILLed.
    killed: u32,
    /// Whether an engine reported not ready during the outage (`None`: no outage).
    not_ready_seen: Option<bool>,
    /// From the dependency's return to every component reporting ready.
    ready_again: Option<Duration>,
    /// From the dependency's return to the probe booking's completion.
    recovery: Option<Duration>,
    /// The probe booking's outcome.
    probe: Option<Result<BookingOutcome, String>>,
}

/// A broker this program started.
enum StartedBroker {
    Pulsar(PulsarBroker),
    Kafka(KafkaBroker),
}

/// One process of the cluster, restartable.
struct Process {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    /// Where it serves `/health` and `/ready`.
    health: SocketAddr,
    child: Option<Child>,
}

impl Process {
    fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("BATON_PROCESS__HEALTH_LISTEN", self.health.to_string())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} ({})", self.name, self.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }

    fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether `GET /ready` at `address` answers 200.
async fn is_ready(address: SocketAddr) -> bool {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        stream
            .write_all(b"GET /ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        std::io::Result::Ok(response.starts_with(b"HTTP/1.1 200"))
    };
    matches!(tokio::time::timeout(Duration::from_secs(2), probe).await, Ok(Ok(true)))
}

/// Waits until every process reports ready: it consumes with its share of the partitions.
async fn wait_ready(cluster: &[Process], within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    for p in cluster {
        while !is_ready(p.health).await {
            if Instant::now() > deadline {
                bail!(
                    "{} is not ready after {}s (log: {})",
                    p.name,
                    within.as_secs(),
                    p.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

fn binary(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} not found; build it first (cargo build --release --workspace --bins --features baton-examples/cluster)",
            path.display()
        );
    }
    Ok(path)
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(Path::to_path_buf)
            .context("no binary directory")?,
    };
    let programs = ["workflow-engine", "tag-engine", "timer-service", "booking-worker"]
        .into_iter()
        .map(|name| binary(&bin_dir, name).map(|p| (name, p)))
        .collect::<anyhow::Result<HashMap<_, _>>>()?;

    // Servers, and a namespace of this run so earlier runs on the same servers do not interfere.
    if args.fault == Fault::RedisOutage && args.redis_url.is_some() {
        bail!("--fault redis-outage stops the Redis it started; do not pass --redis-url");
    }
    if args.fault == Fault::BrokerOutage && args.broker_url.is_some() {
        bail!("--fault broker-outage stops the broker it started; do not pass --broker-url");
    }
    let mut redis_server = args.redis_url.is_none().then(|| match args.fault {
        Fault::RedisOutage => RedisServer::start_durable(),
        _ => RedisServer::start(),
    });
    // The books must stay readable while Baton's Redis is away: their own server then.
    let books_server = (args.fault == Fault::RedisOutage).then(RedisServer::start);
    let redis_url = args
        .redis_url
        .clone()
        .or(redis_server.as_ref().map(|r| r.url.clone()))
        .context("redis")?;
    let mut started_broker = match (&args.broker_url, args.transport) {
        (Some(_), _) => None,
        (None, Broker::Pulsar) => Some(StartedBroker::Pulsar(PulsarBroker::start())),
        (None, Broker::Kafka) => Some(StartedBroker::Kafka(KafkaBroker::start())),
    };
    let (broker_url, admin_url) = match (&args.broker_url, &started_broker) {
        (Some(url), _) => (url.clone(), args.pulsar_admin_url.clone()),
        (None, Some(StartedBroker::Pulsar(b))) => (b.service_url.clone(), Some(b.admin_url.clone())),
        (None, Some(StartedBroker::Kafka(b))) => (format!("kafka://{}", b.bootstrap), None),
        (None, None) => bail!("no broker"),
    };
    let run = format!("run{}", baton::WorkflowId::new().as_uuid().simple());
    let logs = std::env::temp_dir().join(format!("baton-cluster-{run}"));
    std::fs::create_dir_all(&logs)?;
    let mut env = vec![
        ("BATON_TRANSPORT__URL".to_string(), broker_url.clone()),
        ("BATON_STORAGE__URL".to_string(), redis_url.clone()),
        ("BATON_STORAGE__PREFIX".to_string(), format!("{run}:")),
        (
            "BATON_PROCESS__LOG".to_string(),
            std::env::var("CLUSTER_BOOKING_LOG").unwrap_or_else(|_| "warn".to_string()),
        ),
        ("BATON_PROCESS__SHUTDOWN_DEADLINE_SECS".to_string(), "10".to_string()),
    ];
    let mut transport_section = TransportSection {
        url: broker_url.clone(),
        ..TransportSection::default()
    };
    match args.transport {
        Broker::Pulsar => {
            env.push(("BATON_TRANSPORT__PULSAR__NAMESPACE".to_string(), run.clone()));
            transport_section.pulsar.namespace = run.clone();
            if let Some(admin) = &admin_url {
                env.push(("BATON_TRANSPORT__PULSAR__ADMIN_URL".to_string(), admin.clone()));
                transport_section.pulsar.admin_url = admin.clone();
            }
        }
        Broker::Kafka => {
            env.push(("BATON_TRANSPORT__KAFKA__NAMESPACE".to_string(), format!("{run}.")));
            // A killed process's partitions wait this long for a new reader.
            env.push((
                "BATON_TRANSPORT__KAFKA__SESSION_TIMEOUT_MS".to_string(),
                "6000".to_string(),
            ));
            transport_section.kafka.namespace = format!("{run}.");
            transport_section.kafka.session_timeout_ms = 6000;
        }
    }
    let books_prefix = format!("{run}:books:");
    let process = |name: &str, program: &str, args: Vec<String>| Process {
        name: name.to_string(),
        program: programs[program].clone(),
        args,
        env: env.clone(),
        log: logs.join(format!("{name}.log")),
        health: SocketAddr::from(([127, 0, 0, 1], free_port())),
        child: None,
    };
    let books_url = books_server.as_ref().map_or(redis_url.clone(), |b| b.url.clone());
    let worker_args = vec![
        "--ledger-url".to_string(),
        books_url.clone(),
        "--ledger-prefix".to_string(),
        books_prefix.clone(),
    ];
    let mut tag_args = vec!["--workflow".to_string(), "Booking".to_string()];
    for service in booking::SERVICES {
        tag_args.extend(["--service".to_string(), service.to_string()]);
    }
    let mut cluster = vec![
        process(
            "engine-1",
            "workflow-engine",
            vec!["--workflow".into(), "Booking".into()],
        ),
        process(
            "engine-2",
            "workflow-engine",
            vec!["--workflow".into(), "Booking".into()],
        ),
        process("tag-engine", "tag-engine", tag_args),
        process("timer-service", "timer-service", vec![]),
        process("worker-1", "booking-worker", worker_args.clone()),
        process("worker-2", "booking-worker", worker_args),
    ];
    for p in &mut cluster {
        p.start()?;
    }
    wait_ready(&cluster, Duration::from_secs(120)).await?;

    let transport = baton_server::connect_transport(&transport_section)
        .await
        .context("connecting to the broker")?;
    let client = Client::connect(transport).await.context("connecting the client")?;
    let started = Instant::now();

    let finished = Arc::new(AtomicU64::new(0));
    let slots = Arc::new(Semaphore::new(usize::try_from(args.concurrency).unwrap_or(usize::MAX)));
    let mut running = JoinSet::new();
    let timeout = Duration::from_secs(args.timeout_secs);
    let submit = {
        let (client, finished) = (client.clone(), finished.clone());
        let workflows = args.workflows;
        async move {
            for n in 0..workflows {
                let permit = slots.clone().acquire_owned().await?;
                let (client, finished) = (client.clone(), finished.clone());
                running.spawn(async move {
                    let (id, outcome) = book(&client, n, timeout).await;
                    drop(permit);
                    finished.fetch_add(1, Ordering::SeqCst);
                    (n, id, outcome)
                });
            }
            let mut outcomes = Vec::new();
            while let Some(joined) = running.join_next().await {
                outcomes.push(joined?);
            }
            anyhow::Ok(outcomes)
        }
    };
    let fault = async {
        let mut report = FaultReport::default();
        if args.kill_at <= 0.0 {
            return anyhow::Ok(report);
        }
        let threshold = ((args.workflows as f64) * args.kill_at).ceil() as u64;
        while finished.load(Ordering::SeqCst) < threshold.min(args.workflows.saturating_sub(1)).max(1) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let outage = Duration::from_secs(args.outage_secs);
        match args.fault {
            Fault::Kill => {
                // SIGKILL: no shutdown, no commits, in-flight work abandoned.
                cluster[0].kill();
                cluster[4].kill();
                report.killed = 2;
                tokio::time::sleep(Duration::from_secs(1)).await;
                cluster[0].start()?;
                cluster[4].start()?;
                return Ok(report);
            }
            Fault::RedisOutage => {
                let redis = redis_server.as_mut().context("no Redis of this run")?;
                redis.stop();
                let seen = sees_not_ready(cluster[0].health, outage);
                let (seen, ()) = tokio::join!(seen, tokio::time::sleep(outage));
                report.not_ready_seen = Some(seen);
                redis.resume();
            }
            Fault::BrokerOutage => {
                let seen = sees_not_ready(cluster[0].health, outage.max(Duration::from_secs(5)));
                let stop_and_wait = async {
                    match started_broker.as_mut() {
                        Some(StartedBroker::Pulsar(b)) => b.stop(),
                        Some(StartedBroker::Kafka(b)) => b.stop(),
                        None => {}
                    }
                    tokio::time::sleep(outage).await;
                };
                let (seen, ()) = tokio::join!(seen, stop_and_wait);
                report.not_ready_seen = Some(seen);
                // The broker's own start-up (tens of seconds for Pulsar) blocks this thread.
                tokio::task::block_in_place(|| match started_broker.as_mut() {
                    Some(StartedBroker::Pulsar(b)) => b.resume(),
                    Some(StartedBroker::Kafka(b)) => b.resume(),
                    None => {}
                });
            }
        }
        // Recovery: from the dependency's return to every component ready again, and to a
        // fresh booking's completion.
        let back = Instant::now();
        wait_ready(&cluster, Duration::from_secs(120)).await?;
        report.ready_again = Some(back.elapsed());
        let (_, probe) = book(&client, PROBE_BOOKING, Duration::from_secs(120)).await;
        report.recovery = Some(back.elapsed());
        report.probe = probe;
        Ok(report)
    };
    let (outcomes, report) = tokio::join!(submit, fault);
    let (outcomes, report) = (outcomes?, report?);
    let elapsed = started.elapsed();

    let (mut completed, mut compensated, mut failed, mut lost) = (0u64, 0u64, 0u64, 0u64);
    let mut by_booking: HashMap<u64, Option<BookingOutcome>> = HashMap::new();
    let mut lost_ids = Vec::new();
    for (n, id, outcome) in outcomes {
        match outcome {
            Some(Ok(o)) => {
                match o {
                    BookingOutcome::Booked { .. } => completed += 1,
                    BookingOutcome::Compensated { .. } => compensated += 1,
                }
                by_booking.insert(n, Some(o));
            }
            Some(Err(e)) => {
                failed += 1;
                eprintln!("booking {n} failed: {e}");
                by_booking.insert(n, None);
            }
            None => {
                lost += 1;
                lost_ids.extend(id);
                by_booking.insert(n, None);
            }
        }
    }
    // The probe booking is audited with the others but not counted among the run's.
    match &report.probe {
        Some(Ok(o)) => {
            by_booking.insert(PROBE_BOOKING, Some(o.clone()));
        }
        Some(Err(e)) => {
            failed += 1;
            eprintln!("the booking started after the outage failed: {e}");
        }
        None => {}
    }
    for id in lost_ids.iter().take(5) {
        match client.status("Booking", *id).await {
            Ok(status) => eprintln!(
                "lost {id}: {:?}, {} workflow tasks, {} pending commands, failure {:?}",
                status.status, status.workflow_tasks, status.pending_commands, status.workflow_task_failure
            ),
            Err(e) => eprintln!("lost {id}: status unavailable: {e}"),
        }
    }
    let books = RedisBooks::connect(&books_url, &books_prefix)
        .await
        .map_err(anyhow::Error::msg)?;
    let audit = audit_books(&books.snapshot().await.map_err(anyhow::Error::msg)?, &by_booking);
    let wrong: Vec<&String> = audit
        .problems
        .iter()
        .filter(|p| !p.ends_with("did not finish"))
        .collect();
    for problem in wrong.iter().take(20) {
        eprintln!("books: {problem}");
    }

    client.close();
    for p in cluster.iter_mut().rev() {
        p.terminate();
    }
    drop(started_broker);
    drop(redis_server);
    drop(books_server);
    let transport_name = match args.transport {
        Broker::Pulsar => "pulsar",
        Broker::Kafka => "kafka",
    };
    let not_ready_seen = report.not_ready_seen.map_or("-".to_string(), |seen| seen.to_string());
    let recovery_ms = report.recovery.map_or("-".to_string(), |d| d.as_millis().to_string());
    let ready_ms = report
        .ready_again
        .map_or("-".to_string(), |d| d.as_millis().to_string());
    println!(
        "cluster-booking: transport={transport_name} fault={} workflows={} completed={completed} compensated={compensated} failed={failed} lost={lost} duplicated_effects={} killed={} not_ready_seen={not_ready_seen} ready_ms={ready_ms} recovery_ms={recovery_ms} elapsed_ms={}",
        args.fault.name(),
        args.workflows,
        audit.duplicated_effects,
        report.killed,
        elapsed.as_millis()
    );
    let ok = failed == 0
        && lost == 0
        && audit.duplicated_effects == 0
        && wrong.is_empty()
        && report.not_ready_seen != Some(false);
    if report.not_ready_seen == Some(false) {
        eprintln!("engine-1 kept reporting ready during the outage");
    }
    if !ok {
        eprintln!("logs of the cluster's processes: {}", logs.display());
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
