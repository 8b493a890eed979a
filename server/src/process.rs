//! Running a component as a process: backends from configuration, health endpoints, and a
//! phased shutdown on SIGTERM or Ctrl-C (stop consuming and report not ready, let in-flight
//! work finish, then exit) under a deadline; a second signal exits at once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use baton_runtime::{CancellationToken, Clock, SystemClock};
use baton_storage::Stores;
use baton_transport::Transport;

use crate::backends::{BackendError, connect_stores, connect_transport};
use crate::config::BatonConfig;
use crate::health::Health;

/// A process could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A backend could not be reached.
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
}

/// What a component gets to run with.
pub struct Context {
    /// The effective configuration.
    pub config: BatonConfig,
    /// The broker.
    pub transport: Arc<dyn Transport>,
    /// The stores.
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

/// Runs `component` until a signal asks the process to stop.
pub async fn serve<F, Fut, E>(name: &str, config: BatonConfig, component: F) -> Result<(), ServeError>
where
    F: FnOnce(Context) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let transport = connect_transport(&config.transport).await?;
    let stores = connect_stores(&config.storage).await?;
    let shutdown = CancellationToken::new();
    let health = Health::default();
    let listen = config.process.health_listen;
    let (address, health_server) =
        health
            .serve(listen, shutdown.clone())
            .await
            .map_err(|source| ServeError::Health {
                address: listen,
                source,
            })?;
    tracing::info!(component = name, health = %format!("http://{address}"), "started");
    let deadline = Duration::from_secs(config.process.shutdown_deadline_secs);
    let context = Context {
        config,
        transport: transport.clone(),
        stores,
        clock: Arc::new(SystemClock),
        shutdown: shutdown.clone(),
    };
    let mut running = tokio::spawn(component(context));
    // Ready once the component consumes: it opened its subscriptions and each has its share of
    // partitions (joining a consumer group takes a moment).
    let readiness = {
        let (health, shutdown) = (health.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                let status = transport.subscription_status();
                health.set_ready(status.opened > 0 && status.waiting == 0);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        })
    };

    let finished_early = tokio::select! {
        _ = signal() => None,
        result = &mut running => Some(result),
    };
    readiness.abort();
    health.set_ready(false);
    shutdown.cancel();
    let outcome = match finished_early {
        Some(result) => result,
        None => {
            tracing::info!(component = name, "stopping: no new work; finishing in-flight work");
            tokio::select! {
                result = tokio::time::timeout(deadline, &mut running) => match result {
                    Ok(result) => result,
                    Err(_) => {
                        running.abort();
                        return Err(ServeError::Deadline(name.to_string()));
                    }
                },
                _ = signal() => {
                    tracing::warn!(component = name, "second signal: exiting at once");
                    std::process::exit(130);
                }
            }
        }
    };
    let _ = health_server.await;
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
