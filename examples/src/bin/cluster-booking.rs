//! Runs the booking saga on a local multi-process cluster, injects faults while it runs and
//! checks that nothing was lost, nothing was done twice and nothing is left pending.
//!
//! It starts Redis (durable: an append-only file written on every command) and a broker
//! (Apache Pulsar by default, Apache Kafka with `--transport kafka`) unless their URLs are
//! given. It then starts two `workflow-engine` replicas, a `tag-engine`, a `timer-service`, two
//! `booking-worker` processes and `baton-api`, and runs N bookings: most through a client, every
//! fourth through the HTTP API. Each is tagged with the run's tag.
//!
//! Faults (`--fault`, several comma-separated are injected one after another while the run
//! goes on; `--random-faults` picks them at random every `--fault-every-secs`):
//! - `kill`: SIGKILL an engine and a worker at once; `kill-engine`, `kill-worker`,
//!   `kill-timer`, `kill-tag`, `kill-api`: SIGKILL one process of that kind; `kill-all`:
//!   SIGKILL an engine, a worker, the timer service, the tag engine and the API at once. Each
//!   is started again after `--down-secs`;
//! - `stop`: SIGSTOP an engine and a worker for `--stop-secs` (longer than the broker's
//!   session timeout), then SIGCONT;
//! - `redis-outage`: SIGKILL Redis, wait `--outage-secs`, start it again on the same data;
//! - `broker-outage`: the same with the broker.
//!
//! `--chaos RATE` makes every Baton process duplicate published messages, duplicate
//! deliveries and reorder deliveries, each at that rate (`transport.chaos`). `--hold-ms` makes
//! each booking wait on a durable timer between charge and flight.
//!
//! Then it waits for every booking and checks the books (kept in a Redis of their own), that the
//! run's tag names no instance any more, that no timer is left and that nothing was
//! dead-lettered. It prints one line:
//!
//! `cluster-booking: transport=pulsar workflows=500 completed=… compensated=… failed=0 lost=0 duplicated_effects=0 faults=… killed=… stopped=… timers_pending_at_kill=… tagged_left=0 timers_left=0 expiries_missing=0 dead_letters=0 chaos=… chaos_injected=… timers_early=… not_ready_seen=- ready_ms=- recovery_ms=- elapsed_ms=…`

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use baton::components::timer_service;
use baton::{Client, ClientError, WorkflowError, WorkflowId};
use baton_examples::booking::{self, Booking, BookingOutcome, Bookkeeper, RedisBooks, audit_books};
use baton_examples::partition::Partition;
use baton_server::config::TransportSection;
use baton_storage::{RedisStore, TimerStore, WorkflowStore};
use baton_test_support::{KafkaBroker, PulsarBroker, RedisServer, free_port};
use clap::{Parser, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Run booking sagas on a local multi-process cluster, injecting faults mid-run.
#[derive(Parser, Debug, Clone)]
#[command(name = "cluster-booking", version, about)]
struct Args {
    /// Bookings to run.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    workflows: u64,
    /// Bookings in flight at once.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    concurrency: u64,
    /// Spread the bookings' starts over this many minutes (default: as fast as they finish).
    #[arg(long)]
    minutes: Option<f64>,
    /// The first planned fault comes once this share of the bookings has finished; the others
    /// follow evenly up to 80 % (0 disables planned faults).
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
    /// The faults to inject, in order (comma-separated); with --random-faults, the kinds to
    /// pick from (default: all).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "kill")]
    fault: Vec<Fault>,
    /// Inject faults picked at random every --fault-every-secs (± half) until every booking
    /// has started, instead of the planned ones.
    #[arg(long)]
    random_faults: bool,
    /// Mean time between random faults, in seconds.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    fault_every_secs: u64,
    /// Seeds the random faults and the chaos layer.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How long a Redis or broker outage lasts, in seconds (the broker's own start-up comes on
    /// top).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    outage_secs: u64,
    /// How long a killed process stays down, in seconds.
    #[arg(long, default_value_t = 1)]
    down_secs: u64,
    /// How long `stop` keeps its processes stopped, in seconds (default: the broker's session
    /// timeout, 6 s on Kafka, plus 4 s).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    stop_secs: u64,
    /// Rate of each chaos fault (duplicated publish, duplicated delivery, reordered delivery)
    /// in every Baton process, in [0, 1].
    #[arg(long, default_value_t = 0.0)]
    chaos: f64,
    /// Each booking holds its fare on a durable timer for this many milliseconds.
    #[arg(long, default_value_t = 0)]
    hold_ms: u64,
    /// Start every n-th booking through the HTTP API (0: none).
    #[arg(long, default_value_t = 4)]
    via_api_every: u64,
}

/// The faults the run can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Fault {
    /// SIGKILL an engine and a worker at once.
    Kill,
    /// SIGKILL an engine.
    KillEngine,
    /// SIGKILL a worker.
    KillWorker,
    /// SIGKILL the timer service.
    KillTimer,
    /// SIGKILL the tag engine.
    KillTag,
    /// SIGKILL the API.
    KillApi,
    /// SIGKILL one process of every kind at once.
    KillAll,
    /// SIGSTOP an engine and a worker for --stop-secs, then SIGCONT.
    Stop,
    /// Stop Redis for --outage-secs, then start it again on its append-only file.
    RedisOutage,
    /// Stop the broker for --outage-secs, then start it again.
    BrokerOutage,
    /// Make Baton's Redis refuse every write for --outage-secs (as when the disk of its
    /// append-only file is full), then take them again.
    RedisRefusesWrites,
    /// Cut engine-1 (only it) off from Redis for --outage-secs, as a network partition does:
    /// its requests get no answer, while every other process goes on.
    EngineRedisCut,
    /// Cut engine-1 (only it) off from the broker for --outage-secs (Kafka only: a Pulsar
    /// client reaches the broker at its one advertised address, which no relay can stand in
    /// front of for one process).
    EngineBrokerCut,
    /// Restart the timer service with its clock an hour ahead for the rest of the run: timers
    /// fire up to an hour early, and are held until due by the engines' and workers' clocks.
    /// (Its clock is not set right again: what it leased or what was held for it is keyed to
    /// its clock, so a step back would delay those by the step.)
    TimerAhead,
    /// Restart the timer service with its clock an hour behind for --outage-secs, then with
    /// the right time again: timers due meanwhile fire once it is back.
    TimerBehind,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::KillEngine => "kill-engine",
            Self::KillWorker => "kill-worker",
            Self::KillTimer => "kill-timer",
            Self::KillTag => "kill-tag",
            Self::KillApi => "kill-api",
            Self::KillAll => "kill-all",
            Self::Stop => "stop",
            Self::RedisOutage => "redis-outage",
            Self::BrokerOutage => "broker-outage",
            Self::RedisRefusesWrites => "redis-refuses-writes",
            Self::EngineRedisCut => "engine-redis-cut",
            Self::EngineBrokerCut => "engine-broker-cut",
            Self::TimerAhead => "timer-ahead",
            Self::TimerBehind => "timer-behind",
        }
    }

    /// The processes the fault kills or stops, as name prefixes; the `n`-th fault of a kind
    /// takes the replica `n` modulo the replicas.
    fn targets(self) -> &'static [&'static str] {
        match self {
            Self::Kill | Self::Stop => &["engine", "worker"],
            Self::KillEngine => &["engine"],
            Self::KillWorker => &["worker"],
            Self::KillTimer | Self::TimerAhead | Self::TimerBehind => &["timer-service"],
            Self::KillTag => &["tag-engine"],
            Self::KillApi => &["api"],
            Self::KillAll => &["engine", "worker", "timer-service", "tag-engine", "api"],
            Self::RedisOutage | Self::BrokerOutage | Self::RedisRefusesWrites => &[],
            Self::EngineRedisCut | Self::EngineBrokerCut => &["engine-1"],
        }
    }
}

/// The brokers the cluster can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Broker {
    /// Apache Pulsar.
    Pulsar,
    /// Apache Kafka.
    Kafka,
}

/// A number in `[0, 1)` from a seed and a counter (SplitMix64).
fn roll(seed: u64, n: u64) -> f64 {
    let mut x = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Waits for a booking's outcome through outages: a wait that times out asks the engine afresh
/// (its reply may have been lost with the broker).
async fn outcome(client: &Client, id: WorkflowId, deadline: Instant) -> Option<Result<BookingOutcome, String>> {
    let handle = client.handle::<Booking>(id);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        match handle.result_within(left.min(Duration::from_secs(1))).await {
            Ok(outcome) => return Some(Ok(outcome)),
            Err(WorkflowError::Client(ClientError::Timeout(_) | ClientError::Transport(_))) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Some(Err(e.to_string())),
        }
    }
}

/// How the run starts its bookings.
struct Starter {
    client: Client,
    http: reqwest::Client,
    api: SocketAddr,
    tag: String,
    hold_ms: u64,
    via_api_every: u64,
}

impl Starter {
    fn request(&self, n: u64) -> booking::BookingRequest {
        booking::BookingRequest {
            hold_ms: self.hold_ms,
            ..booking::request(n)
        }
    }

    /// Starts booking `n` and waits for its outcome. A start the broker or the API refused is
    /// sent again under the same id, so it starts once.
    async fn book(&self, n: u64, budget: Duration) -> (WorkflowId, Option<Result<BookingOutcome, String>>) {
        let deadline = Instant::now() + budget;
        let through_api = self.via_api_every > 0 && n % self.via_api_every == self.via_api_every - 1;
        let id = if through_api {
            WorkflowId::from_custom_id("Booking", &self.custom_id(n))
        } else {
            WorkflowId::new()
        };
        let started = if through_api {
            self.start_through_api(n, id, deadline).await
        } else {
            self.start_through_client(n, id, deadline).await
        };
        match started {
            Ok(id) => (id, outcome(&self.client, id, deadline).await),
            Err((id, e)) => (id, Some(Err(e))),
        }
    }

    fn custom_id(&self, n: u64) -> String {
        format!("{}-{n}", self.tag)
    }

    /// The stored timers other than expiries (which stay stored, by design, until an ended
    /// instance's retention ends): sleeps, retries and timeouts not yet fired.
    async fn work_timers(&self, store: &RedisStore) -> Option<u64> {
        let pending = store.pending(usize::MAX).await.ok()?;
        Some(pending.iter().filter(|t| timer_service::expiry_of(t).is_none()).count() as u64)
    }

    async fn start_through_client(
        &self,
        n: u64,
        id: WorkflowId,
        deadline: Instant,
    ) -> Result<WorkflowId, (WorkflowId, String)> {
        let options = baton::StartOptions {
            id: Some(id),
            tags: vec![self.tag.clone()],
            ..baton::StartOptions::default()
        };
        loop {
            match self
                .client
                .start_with::<Booking>(&self.request(n), options.clone())
                .await
            {
                Ok(handle) => return Ok(handle.id()),
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(500)).await,
                Err(e) => return Err((id, format!("cannot start: {e}"))),
            }
        }
    }

    /// `POST /api/v1/workflows/Booking/instances` with a custom id, so a retry after the API
    /// died mid-request attaches to the instance instead of starting another.
    async fn start_through_api(
        &self,
        n: u64,
        id: WorkflowId,
        deadline: Instant,
    ) -> Result<WorkflowId, (WorkflowId, String)> {
        let custom_id = self.custom_id(n);
        let url = format!("http://{}/api/v1/workflows/Booking/instances", self.api);
        let body = serde_json::json!({
            "input": self.request(n),
            "customId": custom_id,
            "tags": [self.tag],
        });
        loop {
            let sent = self
                .http
                .post(&url)
                .json(&body)
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            let status = sent.as_ref().map(reqwest::Response::status);
            match status {
                Ok(s) if s == reqwest::StatusCode::ACCEPTED => return Ok(id),
                Ok(s) if s.is_client_error() => {
                    let text = match sent {
                        Ok(response) => response.text().await.unwrap_or_default(),
                        Err(_) => String::new(),
                    };
                    return Err((id, format!("the API refused the start ({s}): {text}")));
                }
                // The API is down or could not reach the broker: the same start again.
                _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(300)).await,
                Ok(s) => return Err((id, format!("the API kept failing the start ({s})"))),
                Err(e) => return Err((id, format!("the API stayed unreachable: {e}"))),
            }
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

/// The booking started after an outage to time the recovery (outside the run's numbers).
const PROBE_BOOKING: u64 = 1_000_000;

/// What the injected faults did.
#[derive(Default)]
struct FaultReport {
    /// Faults injected, by kind.
    injected: BTreeMap<&'static str, u32>,
    /// Processes SIGKILLed.
    killed: u32,
    /// Processes SIGSTOPped.
    stopped: u32,
    /// Most timers waiting in the store when the timer service was killed.
    timers_pending_at_kill: Option<u64>,
    /// Whether an engine reported not ready during the last outage (`None`: no outage).
    not_ready_seen: Option<bool>,
    /// From the last outage's end to every component reporting ready.
    ready_again: Option<Duration>,
    /// From the last outage's end to the probe booking's completion.
    recovery: Option<Duration>,
    /// The probe bookings' outcomes.
    probes: Vec<(u64, Option<Result<BookingOutcome, String>>)>,
}

impl FaultReport {
    fn count(&self) -> u32 {
        self.injected.values().sum()
    }

    fn kinds(&self) -> String {
        let kinds: Vec<String> = self.injected.iter().map(|(k, n)| format!("{k}:{n}")).collect();
        if kinds.is_empty() { "-".into() } else { kinds.join(",") }
    }
}

/// A broker this program started.
enum StartedBroker {
    Pulsar(PulsarBroker),
    Kafka(KafkaBroker),
}

impl StartedBroker {
    /// Where a client reaches the broker through the relay a fault can cut, if it has one.
    fn relayed_bootstrap(&self) -> Option<&str> {
        match self {
            Self::Kafka(b) => b.relayed_bootstrap.as_deref(),
            Self::Pulsar(_) => None,
        }
    }
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

    /// Sends `signal` (`STOP`, `CONT`, `TERM`).
    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args([format!("-{signal}"), child.id().to_string()])
                .status();
        }
    }

    fn terminate(&mut self) {
        self.signal("TERM");
        if let Some(mut child) = self.child.take() {
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
        // A stopped process ignores SIGKILL until continued on some systems' tools: continue it.
        self.signal("CONT");
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

/// Everything a fault acts on.
struct Faults<'a> {
    cluster: &'a mut [Process],
    redis: Option<&'a mut RedisServer>,
    broker: Option<&'a mut StartedBroker>,
    /// Baton's Redis, to count pending timers.
    store: RedisStore,
    /// The relay between engine-1 and Redis, when a fault may cut it.
    redis_partition: Option<&'a Partition>,
    /// The relay between engine-1 and the broker, when a fault may cut it.
    broker_partition: Option<&'a Partition>,
    args: &'a Args,
    starter: &'a Starter,
    report: FaultReport,
    /// How many faults of each kind so far (to rotate the replicas they hit).
    rotation: HashMap<&'static str, usize>,
}

impl Faults<'_> {
    /// Indices of the processes `fault` hits this time.
    fn targets(&mut self, fault: Fault) -> Vec<usize> {
        let round = self.rotation.entry(fault.name()).or_default();
        let picked = fault
            .targets()
            .iter()
            .filter_map(|prefix| {
                let replicas: Vec<usize> = (0..self.cluster.len())
                    .filter(|&i| self.cluster[i].name.starts_with(prefix))
                    .collect();
                (!replicas.is_empty()).then(|| replicas[*round % replicas.len()])
            })
            .collect();
        *round += 1;
        picked
    }

    async fn inject(&mut self, fault: Fault) -> anyhow::Result<()> {
        *self.report.injected.entry(fault.name()).or_default() += 1;
        let targets = self.targets(fault);
        let names: Vec<&str> = targets.iter().map(|&i| self.cluster[i].name.as_str()).collect();
        eprintln!("fault: {} ({})", fault.name(), names.join(", "));
        let injected_at = Instant::now();
        let outage = Duration::from_secs(self.args.outage_secs);
        match fault {
            Fault::Stop => {
                for &i in &targets {
                    self.cluster[i].signal("STOP");
                }
                self.report.stopped += targets.len() as u32;
                tokio::time::sleep(Duration::from_secs(self.args.stop_secs)).await;
                for &i in &targets {
                    self.cluster[i].signal("CONT");
                }
            }
            Fault::TimerAhead | Fault::TimerBehind => {
                const CLOCK_OFFSET: &str = "BATON_PROCESS__CLOCK_OFFSET_MS";
                let offset: i64 = if fault == Fault::TimerAhead {
                    3_600_000
                } else {
                    -3_600_000
                };
                for &i in &targets {
                    let process = &mut self.cluster[i];
                    process.kill();
                    process.env.push((CLOCK_OFFSET.to_string(), offset.to_string()));
                    process.start()?;
                }
                self.report.killed += targets.len() as u32;
                if fault == Fault::TimerBehind {
                    tokio::time::sleep(outage).await;
                    for &i in &targets {
                        let process = &mut self.cluster[i];
                        process.kill();
                        process.env.retain(|(k, _)| k != CLOCK_OFFSET);
                        process.start()?;
                    }
                    self.report.killed += targets.len() as u32;
                }
            }
            Fault::EngineRedisCut | Fault::EngineBrokerCut => {
                let partition = if fault == Fault::EngineRedisCut {
                    self.redis_partition
                } else {
                    self.broker_partition
                };
                let partition = partition.context("engine-1 is not behind a partition relay")?;
                partition.set_cut(true);
                let seen = sees_not_ready(self.cluster[0].health, outage);
                let (seen, ()) = tokio::join!(seen, tokio::time::sleep(outage));
                self.report.not_ready_seen = Some(seen);
                partition.set_cut(false);
                return self.recovered().await;
            }
            Fault::RedisRefusesWrites => {
                // With one replica required and none attached, Redis answers every write with
                // an error (NOREPLICAS) and every read as before: what a full disk under its
                // append-only file does (MISCONF).
                let redis = self.redis.as_deref().context("no Redis of this run")?;
                let client = redis::Client::open(redis.url.as_str())?;
                let mut admin = client.get_multiplexed_async_connection().await?;
                let min_replicas = |n: u32| {
                    let mut set = redis::cmd("CONFIG");
                    set.arg("SET").arg("min-replicas-to-write").arg(n);
                    set
                };
                min_replicas(1).query_async::<()>(&mut admin).await?;
                let seen = sees_not_ready(self.cluster[0].health, outage);
                let (seen, ()) = tokio::join!(seen, tokio::time::sleep(outage));
                self.report.not_ready_seen = Some(seen);
                min_replicas(0).query_async::<()>(&mut admin).await?;
                return self.recovered().await;
            }
            Fault::RedisOutage => {
                let redis = self.redis.as_deref_mut().context("no Redis of this run")?;
                redis.stop();
                let seen = sees_not_ready(self.cluster[0].health, outage);
                let (seen, ()) = tokio::join!(seen, tokio::time::sleep(outage));
                self.report.not_ready_seen = Some(seen);
                redis.resume();
                return self.recovered().await;
            }
            Fault::BrokerOutage => {
                let seen = sees_not_ready(self.cluster[0].health, outage.max(Duration::from_secs(5)));
                let broker = self.broker.as_deref_mut();
                let stop_and_wait = async {
                    match broker {
                        Some(StartedBroker::Pulsar(b)) => b.stop(),
                        Some(StartedBroker::Kafka(b)) => b.stop(),
                        None => {}
                    }
                    tokio::time::sleep(outage).await;
                };
                let (seen, ()) = tokio::join!(seen, stop_and_wait);
                self.report.not_ready_seen = Some(seen);
                // The broker's own start-up (tens of seconds for Pulsar) blocks this thread.
                tokio::task::block_in_place(|| match self.broker.as_deref_mut() {
                    Some(StartedBroker::Pulsar(b)) => b.resume(),
                    Some(StartedBroker::Kafka(b)) => b.resume(),
                    None => {}
                });
                eprintln!(
                    "fault: the broker is healthy again, {:.1}s after it was stopped",
                    injected_at.elapsed().as_secs_f64()
                );
                return self.recovered().await;
            }
            _ => {
                if fault.targets().contains(&"timer-service") {
                    let pending = self.starter.work_timers(&self.store).await;
                    self.report.timers_pending_at_kill = self.report.timers_pending_at_kill.max(pending);
                }
                // SIGKILL: no shutdown, no commits, in-flight work abandoned.
                for &i in &targets {
                    self.cluster[i].kill();
                }
                self.report.killed += targets.len() as u32;
                tokio::time::sleep(Duration::from_secs(self.args.down_secs)).await;
                for &i in &targets {
                    self.cluster[i].start()?;
                }
            }
        }
        wait_ready(self.cluster, Duration::from_secs(120)).await?;
        eprintln!(
            "fault: {} over, every process ready {:.1}s after it began",
            fault.name(),
            injected_at.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// After an outage: the time until every component is ready again and until a fresh
    /// booking completes.
    async fn recovered(&mut self) -> anyhow::Result<()> {
        let back = Instant::now();
        wait_ready(self.cluster, Duration::from_secs(120)).await?;
        self.report.ready_again = Some(back.elapsed());
        let probe = PROBE_BOOKING + self.report.probes.len() as u64;
        let (_, outcome) = self.starter.book(probe, Duration::from_secs(120)).await;
        self.report.recovery = Some(back.elapsed());
        eprintln!(
            "fault: every process ready {:.1}s and a new booking ended {:.1}s after the outage",
            self.report.ready_again.unwrap_or_default().as_secs_f64(),
            back.elapsed().as_secs_f64()
        );
        self.report.probes.push((probe, outcome));
        Ok(())
    }
}

/// How many of `ids` (instances that ended) are stored without an expiry pending at the
/// timer service, which would keep their records for ever.
async fn ended_without_expiry(store: &RedisStore, ids: &[WorkflowId]) -> Option<u64> {
    use baton::components::workflow_engine::{Record, WorkflowState};
    let expiring: std::collections::HashSet<WorkflowId> = store
        .pending(usize::MAX)
        .await
        .ok()?
        .iter()
        .filter_map(timer_service::expiry_of)
        .collect();
    let mut missing = 0;
    for id in ids {
        let Some(stored) = store.load(*id).await.ok()? else {
            continue;
        };
        let state = WorkflowState::decode(*id, &stored).ok()?;
        if matches!(state.head.record, Record::Completed(_)) && !expiring.contains(id) {
            missing += 1;
        }
    }
    Some(missing)
}

/// Polls `count` until it gives 0 or `within` passes; returns the last count.
async fn settles_to_zero<F, Fut>(within: Duration, mut count: F) -> u64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<u64>>,
{
    let deadline = Instant::now() + within;
    loop {
        let n = count().await.unwrap_or(u64::MAX);
        if n == 0 || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // Interrupted, the run is dropped: that stops every process, server and broker it started.
    let interrupted = |signal: &str, code: u8| {
        eprintln!("cluster-booking: {signal}; stopping the cluster");
        Ok(ExitCode::from(code))
    };
    tokio::select! {
        result = run(args) => result,
        _ = tokio::signal::ctrl_c() => interrupted("interrupted", 130),
        _ = terminate.recv() => interrupted("terminated", 143),
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !(0.0..=1.0).contains(&args.chaos) {
        bail!("--chaos {} must be between 0 and 1", args.chaos);
    }
    if args.minutes.is_some_and(|m| !m.is_finite() || m <= 0.0) {
        bail!("--minutes must be positive");
    }
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(Path::to_path_buf)
            .context("no binary directory")?,
    };
    let programs = [
        "workflow-engine",
        "tag-engine",
        "timer-service",
        "booking-worker",
        "baton-api",
    ]
    .into_iter()
    .map(|name| binary(&bin_dir, name).map(|p| (name, p)))
    .collect::<anyhow::Result<HashMap<_, _>>>()?;

    let may_fault = |f: Fault| (args.random_faults || args.kill_at > 0.0) && args.fault.contains(&f);
    if may_fault(Fault::RedisOutage) && args.redis_url.is_some() {
        bail!("--fault redis-outage stops the Redis it started; do not pass --redis-url");
    }
    if may_fault(Fault::RedisRefusesWrites) && args.redis_url.is_some() {
        bail!("--fault redis-refuses-writes reconfigures the Redis it started; do not pass --redis-url");
    }
    if may_fault(Fault::EngineBrokerCut) && (args.broker_url.is_some() || args.transport != Broker::Kafka) {
        bail!(
            "--fault engine-broker-cut needs --transport kafka and the broker it starts: a Pulsar client reaches \
             the broker at its one advertised address, which no relay can stand in front of for one process"
        );
    }
    if may_fault(Fault::EngineRedisCut) && args.redis_url.is_some() {
        bail!("--fault engine-redis-cut relays to the Redis it started; do not pass --redis-url");
    }
    if may_fault(Fault::BrokerOutage) && args.broker_url.is_some() {
        bail!("--fault broker-outage stops the broker it started; do not pass --broker-url");
    }
    // Durable, so an outage (SIGKILL, then a start on the same files) loses nothing.
    let mut redis_server = args.redis_url.is_none().then(RedisServer::start_durable);
    // The books stay readable while Baton's Redis is away: a server of their own.
    let books_server = RedisServer::start();
    let redis_url = args
        .redis_url
        .clone()
        .or(redis_server.as_ref().map(|r| r.url.clone()))
        .context("redis")?;
    // With engine-broker-cut, engine-1 reaches the broker through a relay that a fault can
    // cut: the broker advertises the relay's address on a listener of its own.
    let broker_partition = match (may_fault(Fault::EngineBrokerCut), args.transport) {
        (true, Broker::Kafka) => {
            let listen = free_port();
            Some((
                listen,
                Partition::start(SocketAddr::from(([127, 0, 0, 1], listen))).await?,
            ))
        }
        _ => None,
    };
    let mut started_broker = match (&args.broker_url, args.transport) {
        (Some(_), _) => None,
        (None, Broker::Pulsar) => Some(StartedBroker::Pulsar(PulsarBroker::start())),
        (None, Broker::Kafka) => Some(StartedBroker::Kafka(match &broker_partition {
            Some((listen, relay)) => KafkaBroker::start_relayed(*listen, relay.address().port()),
            None => KafkaBroker::start(),
        })),
    };
    let broker_partition = broker_partition.map(|(_, relay)| relay);
    let (broker_url, admin_url) = match (&args.broker_url, &started_broker) {
        (Some(url), _) => (url.clone(), args.pulsar_admin_url.clone()),
        (None, Some(StartedBroker::Pulsar(b))) => (b.service_url.clone(), Some(b.admin_url.clone())),
        (None, Some(StartedBroker::Kafka(b))) => (format!("kafka://{}", b.bootstrap), None),
        (None, None) => bail!("no broker"),
    };
    // A namespace of this run, so earlier runs on the same servers do not interfere.
    let run = format!("run{}", WorkflowId::new().as_uuid().simple());
    let logs = std::env::temp_dir().join(format!("baton-cluster-{run}"));
    std::fs::create_dir_all(&logs)?;
    let prefix = format!("{run}:");
    let mut env = vec![
        ("BATON_TRANSPORT__URL".to_string(), broker_url.clone()),
        ("BATON_STORAGE__URL".to_string(), redis_url.clone()),
        ("BATON_STORAGE__PREFIX".to_string(), prefix.clone()),
        (
            "BATON_PROCESS__LOG".to_string(),
            std::env::var("CLUSTER_BOOKING_LOG").unwrap_or_else(|_| "warn".to_string()),
        ),
        ("BATON_PROCESS__SHUTDOWN_DEADLINE_SECS".to_string(), "10".to_string()),
    ];
    if args.chaos > 0.0 {
        for setting in ["DUPLICATE_PUBLISH", "DUPLICATE_DELIVERY", "REORDER"] {
            env.push((format!("BATON_TRANSPORT__CHAOS__{setting}"), args.chaos.to_string()));
        }
    }
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
            // A killed or stopped process's partitions wait this long for a new reader.
            env.push((
                "BATON_TRANSPORT__KAFKA__SESSION_TIMEOUT_MS".to_string(),
                "6000".to_string(),
            ));
            transport_section.kafka.namespace = format!("{run}.");
            transport_section.kafka.session_timeout_ms = 6000;
        }
    }
    let books_prefix = format!("{run}:books:");
    let seeds = AtomicU64::new(args.seed.wrapping_mul(1_000));
    let process = |name: &str, program: &str, args: Vec<String>| {
        let mut env = env.clone();
        // Each process rolls its own chaos dice.
        env.push((
            "BATON_TRANSPORT__CHAOS__SEED".to_string(),
            seeds.fetch_add(1, Ordering::Relaxed).to_string(),
        ));
        Process {
            name: name.to_string(),
            program: programs[program].clone(),
            args,
            env,
            log: logs.join(format!("{name}.log")),
            health: SocketAddr::from(([127, 0, 0, 1], free_port())),
            child: None,
        }
    };
    let worker_args = vec![
        "--ledger-url".to_string(),
        books_server.url.clone(),
        "--ledger-prefix".to_string(),
        books_prefix.clone(),
    ];
    let mut tag_args = vec!["--workflow".to_string(), "Booking".to_string()];
    for service in booking::SERVICES {
        tag_args.extend(["--service".to_string(), service.to_string()]);
    }
    let api_address = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let api_config = logs.join("api.toml");
    let services: Vec<String> = booking::SERVICES.iter().map(|s| format!("{s:?}")).collect();
    std::fs::write(
        &api_config,
        format!(
            "[api]\nlisten = \"{api_address}\"\nworkflows = [\"Booking\"]\nservices = [{}]\n",
            services.join(", ")
        ),
    )?;
    // engine-1 reaches Redis through a relay that a fault can cut.
    let redis_partition = match (&redis_server, may_fault(Fault::EngineRedisCut)) {
        (Some(redis), true) => Some(Partition::start(SocketAddr::from(([127, 0, 0, 1], redis.port()))).await?),
        _ => None,
    };
    let mut engine_1 = process(
        "engine-1",
        "workflow-engine",
        vec!["--workflow".into(), "Booking".into()],
    );
    if let Some(relayed) = started_broker.as_ref().and_then(StartedBroker::relayed_bootstrap) {
        engine_1.env.retain(|(k, _)| k != "BATON_TRANSPORT__URL");
        engine_1
            .env
            .push(("BATON_TRANSPORT__URL".to_string(), format!("kafka://{relayed}")));
    }
    if let Some(partition) = &redis_partition {
        engine_1.env.retain(|(k, _)| k != "BATON_STORAGE__URL");
        engine_1.env.push((
            "BATON_STORAGE__URL".to_string(),
            format!("redis://{}", partition.address()),
        ));
    }
    let mut cluster = vec![
        engine_1,
        process(
            "engine-2",
            "workflow-engine",
            vec!["--workflow".into(), "Booking".into()],
        ),
        process("tag-engine", "tag-engine", tag_args),
        process("timer-service", "timer-service", vec![]),
        process("worker-1", "booking-worker", worker_args.clone()),
        process("worker-2", "booking-worker", worker_args),
        process(
            "api",
            "baton-api",
            vec!["--config".into(), api_config.display().to_string()],
        ),
    ];
    for p in &mut cluster {
        p.start()?;
    }
    wait_ready(&cluster, Duration::from_secs(120)).await?;
    eprintln!(
        "cluster-booking: {} processes ready (their logs: {})",
        cluster.len(),
        logs.display()
    );

    let transport = baton_server::connect_transport(&transport_section)
        .await
        .context("connecting to the broker")?;
    let client = Client::connect(transport).await.context("connecting the client")?;
    let starter = Arc::new(Starter {
        client: client.clone(),
        http: {
            // reqwest is built without a TLS provider of its own; Baton's stack uses ring.
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::new()
        },
        api: api_address,
        tag: run.clone(),
        hold_ms: args.hold_ms,
        via_api_every: args.via_api_every,
    });
    let store = RedisStore::connect(&redis_url, &prefix)
        .await
        .context("connecting to Baton's Redis")?;
    let started = Instant::now();

    let finished = Arc::new(AtomicU64::new(0));
    let all_started = Arc::new(AtomicBool::new(false));
    let slots = Arc::new(Semaphore::new(usize::try_from(args.concurrency).unwrap_or(usize::MAX)));
    let mut running = JoinSet::new();
    let timeout = Duration::from_secs(args.timeout_secs);
    let pace = args
        .minutes
        .map(|m| Duration::from_secs_f64(m * 60.0 / args.workflows as f64));
    let submit = {
        let (starter, finished, all_started) = (starter.clone(), finished.clone(), all_started.clone());
        let workflows = args.workflows;
        async move {
            for n in 0..workflows {
                if let Some(pace) = pace {
                    tokio::time::sleep_until((started + pace * n as u32).into()).await;
                }
                let permit = slots.clone().acquire_owned().await?;
                let (starter, finished) = (starter.clone(), finished.clone());
                running.spawn(async move {
                    let (id, outcome) = starter.book(n, timeout).await;
                    drop(permit);
                    finished.fetch_add(1, Ordering::SeqCst);
                    (n, id, outcome)
                });
            }
            all_started.store(true, Ordering::SeqCst);
            let mut outcomes = Vec::new();
            while let Some(joined) = running.join_next().await {
                outcomes.push(joined?);
            }
            anyhow::Ok(outcomes)
        }
    };
    let mut faults = Faults {
        cluster: &mut cluster,
        redis: redis_server.as_mut(),
        broker: started_broker.as_mut(),
        store: store.clone(),
        redis_partition: redis_partition.as_ref(),
        broker_partition: broker_partition.as_ref(),
        args: &args,
        starter: &starter,
        report: FaultReport::default(),
        rotation: HashMap::new(),
    };
    let inject = async {
        if args.random_faults {
            let mut n = 0u64;
            let mean = args.fault_every_secs as f64;
            loop {
                let wait = Duration::from_secs_f64(mean * (0.5 + roll(args.seed, 2 * n)));
                let deadline = Instant::now() + wait;
                while Instant::now() < deadline {
                    if all_started.load(Ordering::SeqCst) {
                        return anyhow::Ok(());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let pick = (roll(args.seed, 2 * n + 1) * args.fault.len() as f64) as usize;
                faults.inject(args.fault[pick.min(args.fault.len() - 1)]).await?;
                n += 1;
            }
        }
        if args.kill_at <= 0.0 {
            return Ok(());
        }
        let planned = args.fault.len();
        for (i, &fault) in args.fault.iter().enumerate() {
            let share = if planned == 1 {
                args.kill_at
            } else {
                args.kill_at + (0.8 - args.kill_at).max(0.0) * i as f64 / (planned - 1) as f64
            };
            let threshold = ((args.workflows as f64) * share).ceil() as u64;
            while finished.load(Ordering::SeqCst) < threshold.min(args.workflows.saturating_sub(1)).max(1) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            faults.inject(fault).await?;
        }
        Ok(())
    };
    let (outcomes, injected) = tokio::join!(submit, inject);
    let outcomes = outcomes?;
    injected?;
    let report = std::mem::take(&mut faults.report);
    drop(faults);
    let elapsed = started.elapsed();
    eprintln!(
        "cluster-booking: every booking ended after {:.1}s; auditing",
        elapsed.as_secs_f64()
    );

    let ended_ids: Vec<WorkflowId> = outcomes
        .iter()
        .filter(|(_, _, outcome)| matches!(outcome, Some(Ok(_))))
        .map(|(_, id, _)| *id)
        .collect();
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
                lost_ids.push(id);
                by_booking.insert(n, None);
            }
        }
    }
    // The probe bookings are audited with the others but not counted among the run's.
    for (n, probe) in &report.probes {
        match probe {
            Some(Ok(o)) => {
                by_booking.insert(*n, Some(o.clone()));
            }
            Some(Err(e)) => {
                failed += 1;
                eprintln!("the booking started after an outage failed: {e}");
            }
            None => {
                lost += 1;
                eprintln!("the booking started after an outage did not finish");
            }
        }
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
    let books = RedisBooks::connect(&books_server.url, &books_prefix)
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

    // Nothing left pending: ended instances leave their tag, fired timers leave the store, and
    // nothing was dead-lettered (the API collects dead letters into the store).
    let settle = Duration::from_secs(30);
    let tagged_left = settles_to_zero(settle, || async {
        client
            .ids_by_tag("Booking", &run)
            .await
            .ok()
            .map(|ids| ids.len() as u64)
    })
    .await;
    let timers_left = settles_to_zero(settle, || {
        let (starter, store) = (&starter, &store);
        async move { starter.work_timers(store).await }
    })
    .await;
    let expiries_missing = settles_to_zero(settle, || ended_without_expiry(&store, &ended_ids)).await;
    let dead_letters = dead_letter_count(&starter.http, api_address).await;
    let chaos_injected = chaos_injected(&starter.http, &cluster).await;
    let timers_early = metric_total(&starter.http, &cluster, baton::telemetry::names::TIMERS_EARLY).await;

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
    let optional = |d: Option<Duration>| d.map_or("-".to_string(), |d| d.as_millis().to_string());
    let dead_letters_text = dead_letters.map_or("unknown".to_string(), |n| n.to_string());
    println!(
        "cluster-booking: transport={transport_name} workflows={} completed={completed} compensated={compensated} failed={failed} lost={lost} duplicated_effects={} faults={} fault_kinds={} killed={} stopped={} timers_pending_at_kill={} tagged_left={tagged_left} timers_left={timers_left} expiries_missing={expiries_missing} dead_letters={dead_letters_text} chaos={} chaos_injected={chaos_injected} timers_early={timers_early} not_ready_seen={} ready_ms={} recovery_ms={} elapsed_ms={}",
        args.workflows,
        audit.duplicated_effects,
        report.count(),
        report.kinds(),
        report.killed,
        report.stopped,
        report.timers_pending_at_kill.map_or("-".to_string(), |n| n.to_string()),
        args.chaos,
        report.not_ready_seen.map_or("-".to_string(), |seen| seen.to_string()),
        optional(report.ready_again),
        optional(report.recovery),
        elapsed.as_millis()
    );
    let mut problems = Vec::new();
    if report.not_ready_seen == Some(false) {
        problems.push("engine-1 kept reporting ready during the outage".to_string());
    }
    if tagged_left != 0 {
        problems.push(format!("the run's tag still names {tagged_left} instances"));
    }
    if timers_left != 0 {
        problems.push(format!("{timers_left} timers are left in the store"));
    }
    if expiries_missing != 0 {
        problems.push(format!(
            "{expiries_missing} ended bookings are stored without a pending expiry: they would be kept for ever"
        ));
    }
    if args.chaos > 0.0 && chaos_injected == 0 {
        problems.push("the chaos layer injected nothing".to_string());
    }
    if dead_letters != Some(0) {
        problems.push(format!("dead letters: {dead_letters_text}"));
    }
    for problem in &problems {
        eprintln!("{problem}");
    }
    let ok = failed == 0 && lost == 0 && audit.duplicated_effects == 0 && wrong.is_empty() && problems.is_empty();
    if !ok {
        eprintln!("logs of the cluster's processes: {}", logs.display());
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Letters held by the store, summed over topics, as the API lists them.
/// The faults the chaos layer injected, summed over the processes' `/metrics` (since each
/// one's last start).
async fn chaos_injected(http: &reqwest::Client, cluster: &[Process]) -> u64 {
    metric_total(http, cluster, baton::telemetry::names::CHAOS_INJECTED).await
}

/// A counter summed over the processes' `/metrics` (since each one's last start).
async fn metric_total(http: &reqwest::Client, cluster: &[Process], name: &str) -> u64 {
    let mut total = 0.0;
    for p in cluster {
        let Ok(response) = http
            .get(format!("http://{}/metrics", p.health))
            .timeout(Duration::from_secs(5))
            .send()
            .await
        else {
            continue;
        };
        let text = response.text().await.unwrap_or_default();
        total += text
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    total as u64
}

async fn dead_letter_count(http: &reqwest::Client, api: SocketAddr) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Topic {
        count: u64,
    }
    let response = http
        .get(format!("http://{api}/api/v1/dead-letters"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    let topics: Vec<Topic> = response.error_for_status().ok()?.json().await.ok()?;
    Some(topics.iter().map(|t| t.count).sum())
}
