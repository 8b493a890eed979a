//! Running a component as a process: backends from configuration (retried until a start-up
//! deadline), health endpoints whose readiness follows the dependencies, and a phased
//! shutdown on SIGTERM or Ctrl-C (stop consuming and report not ready, let in-flight work
//! finish, then exit) under a deadline; a second signal exits at once, in any phase.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_runtime::{Backoff, CancellationToken, Clock, OffsetClock, SystemClock};
use baton_storage::{InMemoryStore, Stores};
use baton_transport::Transport;

use crate::backends::{BackendError, connect_stores, connect_transport};
use crate::config::BatonConfig;
use crate::health::Health;

/// The exit code after a second signal.
pub const EXIT_SECOND_SIGNAL: i32 = 130;

/// A process could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A backend could not be reached before the start-up deadline.
    #[error("{what} unreachable for {waited:?} (process.startup_deadline_secs): {source}")]
    Startup {
        /// `broker` or `store`.
        what: &'static str,
        /// How long it was tried.
        waited: Duration,
        /// The last failure.
        #[source]
        source: BackendError,
    },
    /// A backend is misconfigured (retrying cannot help).
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The health endpoint could not be served.
    #[error("cannot serve /health on {address}: {source}")]
    Health {
        /// The configured address.
        address: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The component failed.
    #[error("{component} failed: {reason}")]
    Component {
        /// Which.
        component: String,
        /// Why.
        reason: String,
    },
    /// The component did not stop within the deadline.
    #[error("{0} did not stop within the shutdown deadline")]
    Deadline(String),
    /// A signal asked the process to stop before it had started.
    #[error("stopped by a signal while starting")]
    StoppedWhileStarting,
}

/// Which backends a component uses; readiness checks exactly these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// The broker only (workers): `Context::stores` is an unused in-memory placeholder and
    /// `storage.url` is not contacted.
    Broker,
    /// The broker and the store (engine, timer service, tag engine).
    BrokerAndStore,
}

/// What a component gets to run with.
pub struct Context {
    /// The effective configuration.
    pub config: BatonConfig,
    /// The broker.
    pub transport: Arc<dyn Transport>,
    /// The stores (a placeholder when the component declared [`Needs::Broker`]).
    pub stores: Stores,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Cancelled when the process should stop.
    pub shutdown: CancellationToken,
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Watches for signals for the whole life of the process: the first cancels `shutdown`, the
/// second exits at once. Installed before anything can block, so no phase (connecting,
/// draining, a stuck dependency) can make the process deaf to signals.
fn watch_signals(name: &str, shutdown: CancellationToken) {
    let name = name.to_string();
    tokio::spawn(async move {
        signal().await;
        tracing::info!(component = %name, "signal received: stopping (a second signal exits at once)");
        shutdown.cancel();
        signal().await;
        tracing::warn!(component = %name, "second signal: exiting at once");
        eprintln!("{name}: second signal: exiting at once");
        std::process::exit(EXIT_SECOND_SIGNAL);
    });
}

/// Tries `connect` until it succeeds, `deadline` passes or `shutdown` is cancelled. A
/// misconfiguration fails at once; an unreachable backend is retried with a short backoff, and
/// readiness says what is awaited.
async fn connect_within<T, F, Fut>(
    what: &'static str,
    deadline: Duration,
    shutdown: &CancellationToken,
    health: &Health,
    mut connect: F,
) -> Result<T, ServeError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, BackendError>>,
{
    let started = Instant::now();
    let mut failures = 0;
    loop {
        let remaining = deadline.saturating_sub(started.elapsed());
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return Err(ServeError::StoppedWhileStarting),
            attempt = tokio::time::timeout(remaining.max(Duration::from_millis(1)), connect()) => attempt,
        };
        let error = match attempt {
            Ok(Ok(connected)) => return Ok(connected),
            Ok(Err(e)) if !e.is_transient() => return Err(e.into()),
            Ok(Err(e)) => e,
            Err(_) => BackendError::Timeout { what, after: deadline },
        };
        failures += 1;
        if started.elapsed() >= deadline {
            return Err(ServeError::Startup {
                what,
                waited: started.elapsed(),
                source: error,
            });
        }
        if failures == 1 {
            tracing::warn!(%error, "{what} unreachable; retrying until process.startup_deadline_secs");
        }
        health.set_not_ready(format!("{what} unreachable: {error}"));
        tokio::select! {
            _ = shutdown.cancelled() => return Err(ServeError::StoppedWhileStarting),
            _ = tokio::time::sleep(Backoff::DEPENDENCY.delay(failures).min(deadline.saturating_sub(started.elapsed()))) => {}
        }
    }
}

/// Readiness from the dependencies, checked every `period`: not ready while the broker or
/// (when used) the store does not answer, or while a consumer waits for its partitions.
async fn follow_readiness(
    health: Health,
    transport: Arc<dyn Transport>,
    stores: Option<Stores>,
    period: Duration,
    shutdown: CancellationToken,
) {
    loop {
        let status = transport.subscription_status();
        let store = match &stores {
            Some(stores) => match tokio::time::timeout(period, stores.health.check()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("store unusable: {e}")),
                Err(_) => Err(format!("store unreachable: no answer within {period:?}")),
            },
            None => Ok(()),
        };
        let verdict = match (transport.check(period).await, store) {
            (Err(e), _) => Err(format!("broker unreachable: {e}")),
            (_, Err(e)) => Err(e),
            _ if status.opened == 0 => Err("no consumer open yet".to_string()),
            _ if status.waiting > 0 => Err(format!(
                "{} of {} consumers wait for their partitions",
                status.waiting, status.opened
            )),
            _ => Ok(()),
        };
        match verdict {
            Ok(()) => {
                if !health.is_ready() {
                    tracing::info!("ready");
                }
                health.set_ready();
            }
            Err(reason) => {
                if health.is_ready() {
                    tracing::warn!(%reason, "not ready");
                }
                health.set_not_ready(reason);
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
    }
}

/// Runs `component` until a signal asks the process to stop.
pub async fn serve<F, Fut, E>(name: &str, config: BatonConfig, needs: Needs, component: F) -> Result<(), ServeError>
where
    F: FnOnce(Context) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let shutdown = CancellationToken::new();
    watch_signals(name, shutdown.clone());
    // The health server outlives the drain, so a liveness probe keeps passing while in-flight
    // work finishes; /ready turns 503 as soon as the shutdown starts.
    let health_stop = CancellationToken::new();
    let _stop_health = health_stop.clone().drop_guard();
    let health = Health::default();
    let listen = config.process.health_listen;
    let (address, _health_server) =
        health
            .serve(listen, health_stop.clone())
            .await
            .map_err(|source| ServeError::Health {
                address: listen,
                source,
            })?;
    tracing::info!(component = name, health = %format!("http://{address}"), "serving /health and /ready");

    let startup = Duration::from_secs(config.process.startup_deadline_secs);
    health.set_not_ready("connecting to the broker");
    let period = Duration::from_millis(config.process.readiness_period_ms);
    // A Kafka client connects lazily: the check makes both brokers fail the same way here.
    let transport = connect_within("broker", startup, &shutdown, &health, || async {
        let transport = connect_transport(&config.transport).await?;
        transport
            .check(period.max(Duration::from_secs(2)))
            .await
            .map_err(|source| BackendError::Transport {
                url: config.transport.url.clone(),
                source,
            })?;
        Ok(transport)
    })
    .await?;
    let transport = baton_transport::Metered::wrap(transport);
    let stores = match needs {
        Needs::BrokerAndStore => {
            health.set_not_ready("connecting to the store");
            Some(connect_within("store", startup, &shutdown, &health, || connect_stores(&config.storage)).await?)
        }
        Needs::Broker => None,
    };
    tracing::info!(component = name, "started");
    health.set_not_ready("opening consumers");
    let deadline = Duration::from_secs(config.process.shutdown_deadline_secs);
    let clock = clock_of(&config.process);
    let context = Context {
        config,
        transport: transport.clone(),
        stores: stores.clone().unwrap_or_else(|| Stores::all(InMemoryStore::new())),
        clock,
        shutdown: shutdown.clone(),
    };
    let mut running = tokio::spawn(component(context));
    let readiness = tokio::spawn(follow_readiness(
        health.clone(),
        transport,
        stores,
        period,
        shutdown.clone(),
    ));

    let finished_early = tokio::select! {
        _ = shutdown.cancelled() => None,
        result = &mut running => Some(result),
    };
    readiness.abort();
    health.set_not_ready("shutting down");
    shutdown.cancel();
    let outcome = match finished_early {
        Some(result) => result,
        None => {
            tracing::info!(
                component = name,
                ?deadline,
                "stopping: no new work; finishing in-flight work"
            );
            match tokio::time::timeout(deadline, &mut running).await {
                Ok(result) => result,
                Err(_) => {
                    running.abort();
                    return Err(ServeError::Deadline(name.to_string()));
                }
            }
        }
    };
    match outcome {
        Ok(Ok(())) => {
            tracing::info!(component = name, "stopped");
            Ok(())
        }
        Ok(Err(e)) => Err(ServeError::Component {
            component: name.to_string(),
            reason: e.to_string(),
        }),
        Err(e) => Err(ServeError::Component {
            component: name.to_string(),
            reason: e.to_string(),
        }),
    }
}

/// The process's clock: the system clock, or one `process.clock_offset_ms` off it (fault runs).
fn clock_of(process: &crate::config::ProcessSection) -> Arc<dyn Clock> {
    if process.clock_offset_ms == 0 {
        return Arc::new(SystemClock);
    }
    tracing::warn!(
        offset_ms = process.clock_offset_ms,
        "process.clock_offset_ms is set: this process reads its clock off the system clock (for fault runs only)"
    );
    Arc::new(OffsetClock::new(process.clock_offset_ms))
}
