//! Baton's HTTP API and web dashboard, for operators and for programs.
//!
//! - `/api/v1/…`: list and search instances (from the instance index the engine keeps in the
//!   store), read one and its history, start instances (and wait for their result), signal,
//!   call, cancel, retry, complete timers and delegated tasks, and read, redrive or discard
//!   dead letters. Errors are `application/problem+json`. With `api.tokens` set, every
//!   request needs a bearer token: a reader's to read, an operator's to change anything.
//! - `/openapi.json`: the OpenAPI 3.1 document, generated from the handlers and types here.
//! - `/`: the dashboard, a single page whose assets are compiled into the binary.
//! - `/metrics`: the process's Prometheus metrics.
//!
//! The API owns no state: reads go to the store, changes to the engine through the client, so
//! any number of replicas can serve behind a load balancer. One of them (or each, harmlessly)
//! collects dead letters into the store.

mod auth;
mod dashboard;
pub mod dead_letters;
mod extract;
mod http;
mod instances;
mod openapi;
pub mod problem;
mod rate_limit;
pub mod views;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use baton_client::Client;
use baton_runtime::{CancellationToken, Clock};
use baton_storage::Stores;
use baton_transport::Transport;

pub use auth::Auth;
pub use baton_config::{ApiConfig, ApiRole, ApiToken};
pub use openapi::openapi;
pub use problem::Problem;
pub use rate_limit::RateLimit;

/// What a handler answers: its value, or a problem.
pub type ApiResult<T> = Result<T, Problem>;

/// The API could not run.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The listen address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The client could not connect to the broker.
    #[error(transparent)]
    Client(#[from] baton_client::ClientError),
    /// Serving failed.
    #[error("the API server stopped: {0}")]
    Serve(#[source] std::io::Error),
}

struct Inner {
    client: Client,
    transport: Arc<dyn Transport>,
    stores: Stores,
    config: ApiConfig,
    known_workflows: BTreeSet<String>,
    known_services: BTreeSet<String>,
}

/// The API over one deployment: a client on its broker and its stores.
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

impl Api {
    /// An API sending through `client` on `transport` and reading `stores`. `known_workflows`
    /// are the deployed workflows (starting another is refused; empty accepts any name).
    /// `known_services` are the services whose delegated tasks a tag engine completes:
    /// completing or failing a task of another is refused, since nothing would consume it.
    pub fn new(
        client: Client,
        transport: Arc<dyn Transport>,
        stores: Stores,
        config: ApiConfig,
        known_workflows: BTreeSet<String>,
        known_services: BTreeSet<String>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                transport,
                stores,
                config,
                known_workflows,
                known_services,
            }),
        }
    }

    /// Every route: the API, the OpenAPI document, the dashboard and `/metrics`.
    pub fn router(&self) -> Router {
        let config = &self.inner.config;
        let auth = Auth::new(config.tokens.clone());
        let rate_limit = RateLimit::new(
            config.rate_limit_per_sec,
            config.rate_limit_burst,
            config.tokens.clone(),
        );
        let api = Router::new()
            .route("/workflows", get(instances::workflows))
            .route("/workflows/{workflow}/instances", post(instances::start))
            .route("/workflows/{workflow}/run", post(instances::run))
            .route("/instances", get(instances::search))
            .route("/instances/{id}", get(instances::instance))
            .route("/instances/{id}/history", get(instances::history))
            .route("/instances/{id}/result", get(instances::result))
            .route("/instances/{id}/signals/{channel}", post(instances::signal))
            .route("/instances/{id}/methods/{method}", post(instances::call))
            .route("/instances/{id}/cancel", post(instances::cancel))
            .route(
                "/instances/{id}/retry-workflow-task",
                post(instances::retry_workflow_task),
            )
            .route("/instances/{id}/retry-tasks", post(instances::retry_tasks))
            .route("/instances/{id}/complete-timers", post(instances::complete_timers))
            .route(
                "/services/{service}/tasks/{task_id}/complete",
                post(instances::complete_task),
            )
            .route("/services/{service}/tasks/{task_id}/fail", post(instances::fail_task))
            .route("/dead-letters", get(dead_letters::topics))
            .route("/dead-letters/{topic}", get(dead_letters::letters))
            .route(
                "/dead-letters/{topic}/{id}",
                get(dead_letters::letter).delete(dead_letters::discard),
            )
            .route("/dead-letters/{topic}/redrive", post(dead_letters::redrive_all))
            .route("/dead-letters/{topic}/{id}/redrive", post(dead_letters::redrive_one))
            .fallback(|| async { Problem::not_found("no such route under /api/v1; see /openapi.json") })
            .layer(axum::middleware::from_fn_with_state(auth, auth::require))
            // Outside the token check, so guessing tokens is limited too.
            .layer(axum::middleware::from_fn_with_state(rate_limit, rate_limit::limit))
            .layer(axum::extract::DefaultBodyLimit::max(config.max_body_bytes))
            .with_state(self.clone());
        // The process's one recorder: every component in it records there.
        baton_telemetry::prometheus();
        Router::new()
            .nest("/api/v1", api)
            .route("/openapi.json", get(|| async { axum::Json(openapi()) }))
            .route("/metrics", get(metrics))
            .merge(dashboard::routes())
            .fallback(|| async { Problem::not_found("no such page") })
    }

    /// Serves the routes on `listener` until `shutdown`.
    pub async fn serve(&self, listener: tokio::net::TcpListener, shutdown: CancellationToken) -> Result<(), ApiError> {
        let config = &self.inner.config;
        let limits = http::Limits {
            header_read_timeout: Duration::from_millis(config.header_read_timeout_ms),
            max_connections: config.max_connections,
        };
        // Each request sees its peer's address, which rate limits count against.
        http::serve(listener, self.router(), limits, shutdown)
            .await
            .map_err(ApiError::Serve)
    }

    /// Starts collecting dead letters of the known workflows and these services in the
    /// background, until `shutdown`.
    pub fn collect_dead_letters(
        &self,
        clock: Arc<dyn Clock>,
        services: BTreeSet<String>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let collector = dead_letters::Collector {
            transport: self.inner.transport.clone(),
            store: self.inner.stores.dead_letters.clone(),
            index: self.inner.stores.index.clone(),
            clock,
            workflows: self.inner.known_workflows.clone(),
            services,
            refresh: Duration::from_secs(10),
        };
        tokio::spawn(dead_letters::collect(collector, shutdown))
    }
}

/// The process's metrics, in the Prometheus text format.
pub async fn metrics() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        baton_telemetry::render(),
    )
}

/// Runs the API as its own process: connects a client, collects dead letters when configured,
/// and serves on `config.listen` until `shutdown`.
pub async fn run(
    config: ApiConfig,
    known_workflows: BTreeSet<String>,
    services: BTreeSet<String>,
    transport: Arc<dyn Transport>,
    stores: Stores,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> Result<(), ApiError> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ApiError::Listen {
            address: config.listen,
            source,
        })?;
    let address = listener.local_addr().map_err(ApiError::Serve)?;
    let client = Client::connect(transport.clone()).await?;
    if config.tokens.is_empty() {
        tracing::warn!("api.tokens is empty: the API asks for no credentials; set tokens outside local development");
    }
    let collect = config.collect_dead_letters;
    let api = Api::new(
        client.clone(),
        transport,
        stores,
        config,
        known_workflows,
        services.clone(),
    );
    let collector = collect.then(|| api.collect_dead_letters(clock, services, shutdown.clone()));
    tracing::info!(dashboard = %format!("http://{address}/"), api = %format!("http://{address}/api/v1"), "serving the API and dashboard");
    let served = api.serve(listener, shutdown).await;
    if let Some(collector) = collector {
        let _ = collector.await;
    }
    client.close();
    served
}
