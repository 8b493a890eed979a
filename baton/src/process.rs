//! Running the application's services and workflows as a worker process of a cluster (the
//! `process` feature): the same configuration as Baton's own binaries (`--config`,
//! `BATON_*`, `--transport-url`), the broker chosen by URL, `/health` and `/ready`, signals and
//! the shutdown deadline.
//!
//! ```no_run
//! # use baton::{Worker, WorkerError};
//! # fn my_services(worker: Worker) -> Result<Worker, WorkerError> { Ok(worker) }
//! #[tokio::main]
//! async fn main() {
//!     baton::process::run_worker("orders-worker", |config| async move {
//!         my_services(Worker::new(config))
//!     })
//!     .await
//! }
//! ```

use std::future::Future;

pub use baton_server::{BatonConfig, CommonArgs, exit};

use crate::{Worker, WorkerConfig};

/// The flags of a worker process: those every Baton binary takes.
#[derive(clap::Parser, Debug)]
#[command(version, about = "A Baton worker process")]
pub struct WorkerArgs {
    /// The shared flags.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Parses the process's flags and runs the worker `make` builds (from the configured
/// `[worker]` concurrency) until a signal; see [`run_worker_with`].
pub async fn run_worker<F, Fut, E>(name: &str, make: F) -> !
where
    F: FnOnce(WorkerConfig) -> Fut,
    Fut: Future<Output = Result<Worker, E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let args = <WorkerArgs as clap::Parser>::parse();
    run_worker_with(name, &args.common, make).await
}

/// Runs the worker `make` builds, with flags the caller parsed (its own flags beside
/// [`CommonArgs`]). Exits the process: 0 after a clean stop, 1 if the worker failed or its
/// broker stayed unreachable past `process.startup_deadline_secs`, 2 for bad configuration,
/// 130 on a second signal.
pub async fn run_worker_with<F, Fut, E>(name: &str, common: &CommonArgs, make: F) -> !
where
    F: FnOnce(WorkerConfig) -> Fut,
    Fut: Future<Output = Result<Worker, E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    baton_server::run_binary(
        name,
        common,
        baton_server::Needs::Broker,
        |_| Ok(()),
        move |ctx| {
            let built = make(ctx.config.worker.clone());
            async move {
                let worker = built.await.map_err(|e| e.to_string())?;
                worker
                    .run(ctx.transport, ctx.clock, ctx.shutdown)
                    .await
                    .map_err(|e| e.to_string())
            }
        },
    )
    .await
}
