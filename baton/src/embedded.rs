//! Embedded mode: the engine, the timer service, the tag engine and the user's workers in one process, on the
//! in-memory transport and store, talking through the same topics and bincode messages as a
//! distributed deployment.

use std::sync::Arc;
use std::time::Duration;

use baton_client::Client;
use baton_runtime::{CancellationToken, Clock, Supervisor, SystemClock};
use baton_service_worker::{ServiceHandler, ServiceOptions, Worker, WorkerConfig, WorkerError};
use baton_storage::{InMemoryStore, Stores};
use baton_timer_service::TimerConfig;
use baton_transport::{InMemoryTransport, MemoryConfig, Transport};
use baton_workflow::{CheckMode, Workflow, erase};
use baton_workflow_engine::EngineConfig;

/// Embedded mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// A service or workflow registration was invalid.
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// The client could not connect.
    #[error(transparent)]
    Client(#[from] baton_client::ClientError),
    /// Nothing to run.
    #[error("register at least one workflow before starting")]
    NoWorkflow,
    /// The API's address could not be bound.
    #[error("cannot serve on {address}: {source}")]
    Serve {
        /// The address.
        address: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Configures embedded mode.
pub struct EmbeddedBuilder {
    worker: Result<Worker, WorkerError>,
    engine: EngineConfig,
    timers: TimerConfig,
    tags: baton_tag_engine::TagEngineConfig,
    memory: MemoryConfig,
    clock: Arc<dyn Clock>,
    layer: Option<TransportLayer>,
    stores: Option<Stores>,
    external_transport: Option<Arc<dyn Transport>>,
}

/// Wraps the transport every component uses (fault injection, metrics, tracing).
pub type TransportLayer = Box<dyn FnOnce(Arc<dyn Transport>) -> Arc<dyn Transport> + Send>;

impl EmbeddedBuilder {
    /// Hosts a service with default options.
    pub fn service(self, handler: impl ServiceHandler) -> Self {
        self.service_with(handler, ServiceOptions::default())
    }

    /// Hosts a service with options (timeouts, retry policy).
    pub fn service_with(mut self, handler: impl ServiceHandler, options: ServiceOptions) -> Self {
        self.worker = self.worker.and_then(|w| w.service_with(handler, options));
        self
    }

    /// Hosts a workflow with the default (simple) check mode.
    pub fn workflow<W: Workflow>(self) -> Self {
        self.workflow_with::<W>(CheckMode::default())
    }

    /// Hosts a workflow with a check mode.
    pub fn workflow_with<W: Workflow>(mut self, check_mode: CheckMode) -> Self {
        self.worker = self.worker.and_then(|w| w.workflow(erase::<W>(), check_mode));
        self
    }

    /// Worker settings (concurrency, drain timeout).
    pub fn worker_config(mut self, config: WorkerConfig) -> Self {
        self.worker = self.worker.map(|w| w.with_config(config));
        self
    }

    /// Engine settings; its workflow list is filled in from the registered workflows.
    pub fn engine_config(mut self, config: EngineConfig) -> Self {
        self.engine = config;
        self
    }

    /// Timer service settings.
    pub fn timer_config(mut self, config: TimerConfig) -> Self {
        self.timers = config;
        self
    }

    /// Tag engine settings (its workflow and service lists are filled in from the registrations).
    pub fn tag_config(mut self, config: baton_tag_engine::TagEngineConfig) -> Self {
        self.tags = config;
        self
    }

    /// Uses this transport (e.g. a `KafkaTransport`) instead of the in-memory one.
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.external_transport = Some(transport);
        self
    }

    /// In-memory transport settings.
    pub fn transport_config(mut self, config: MemoryConfig) -> Self {
        self.memory = config;
        self
    }

    /// Wraps the transport that every component and the client use, e.g. to inject faults.
    pub fn transport_layer(
        mut self,
        layer: impl FnOnce(Arc<dyn Transport>) -> Arc<dyn Transport> + Send + 'static,
    ) -> Self {
        self.layer = Some(Box::new(layer));
        self
    }

    /// Uses these stores instead of the in-memory one, e.g. `Stores::all(RedisStore::connect(url, "baton:").await?)`.
    pub fn stores(mut self, stores: Stores) -> Self {
        self.stores = Some(stores);
        self
    }

    /// How long completed instances are kept.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.engine.retention = retention;
        self
    }

    /// Starts every component and connects a client.
    pub async fn start(self) -> Result<Embedded, EmbeddedError> {
        let worker = self.worker?;
        let mut engine = self.engine;
        engine.workflows = worker.workflow_names();
        let tags = baton_tag_engine::TagEngineConfig {
            workflows: worker.workflow_names(),
            services: worker.service_names(),
            ..self.tags
        };
        if engine.workflows.is_empty() {
            return Err(EmbeddedError::NoWorkflow);
        }
        let (workflows, services) = (tags.workflows.clone(), tags.services.clone());
        let memory = self
            .external_transport
            .is_none()
            .then(|| InMemoryTransport::new(self.memory));
        let stores = self.stores.unwrap_or_else(|| Stores::all(InMemoryStore::new()));
        let mut shared: Arc<dyn Transport> = match (&memory, self.external_transport) {
            (Some(memory), _) => Arc::new(memory.clone()),
            (None, Some(external)) => external,
            (None, None) => Arc::new(InMemoryTransport::default()),
        };
        let unwrapped = shared.clone();
        if let Some(layer) = self.layer {
            shared = layer(shared);
        }
        let shared = baton_transport::Metered::wrap(shared);
        let mut supervisor = Supervisor::new(CancellationToken::new());
        let token = supervisor.token().clone();
        supervisor.spawn(
            "workflow-engine",
            baton_workflow_engine::run(
                engine,
                shared.clone(),
                stores.workflows.clone(),
                self.clock.clone(),
                token.clone(),
            ),
        );
        supervisor.spawn(
            "timer-service",
            baton_timer_service::run(
                self.timers,
                shared.clone(),
                stores.timers.clone(),
                self.clock.clone(),
                token.clone(),
            ),
        );
        supervisor.spawn(
            "tag-engine",
            baton_tag_engine::run(
                tags,
                shared.clone(),
                stores.key_sets.clone(),
                self.clock.clone(),
                token.clone(),
            ),
        );
        supervisor.spawn(
            "service-worker",
            worker.run(shared.clone(), self.clock.clone(), token.clone()),
        );
        let client = Client::connect_with(shared.clone(), self.clock.clone(), Duration::from_secs(30)).await?;
        Ok(Embedded {
            transport: unwrapped,
            layered: shared,
            memory,
            stores,
            supervisor,
            client,
            clock: self.clock,
            workflows,
            services,
        })
    }
}

/// Every Baton component running in this process.
pub struct Embedded {
    transport: Arc<dyn Transport>,
    /// The transport after any layer: what the components use.
    #[cfg_attr(not(feature = "api"), allow(dead_code))]
    layered: Arc<dyn Transport>,
    memory: Option<InMemoryTransport>,
    stores: Stores,
    supervisor: Supervisor,
    client: Client,
    #[cfg_attr(not(feature = "api"), allow(dead_code))]
    clock: Arc<dyn Clock>,
    #[cfg_attr(not(feature = "api"), allow(dead_code))]
    workflows: Vec<String>,
    #[cfg_attr(not(feature = "api"), allow(dead_code))]
    services: Vec<String>,
}

impl Embedded {
    /// Starts configuring embedded mode.
    pub fn builder() -> EmbeddedBuilder {
        EmbeddedBuilder {
            worker: Ok(Worker::new(WorkerConfig::default())),
            engine: EngineConfig::default(),
            timers: TimerConfig::default(),
            tags: baton_tag_engine::TagEngineConfig::default(),
            memory: MemoryConfig::default(),
            clock: Arc::new(SystemClock),
            layer: None,
            stores: None,
            external_transport: None,
        }
    }

    /// A client connected to the embedded components.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The transport the components use, before any layer (to publish or inspect messages
    /// directly).
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// The stores the components use.
    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// Serves the HTTP API (`/api/v1`), the dashboard (`/`), the OpenAPI document and
    /// `/metrics` of this instance on `address` (port 0 picks a free one), and collects its
    /// dead letters, until [`shutdown`](Self::shutdown). Returns the bound address.
    ///
    /// `config` sets tokens and limits; its `listen` is ignored in favour of `address`.
    #[cfg(feature = "api")]
    pub async fn serve(
        &mut self,
        address: std::net::SocketAddr,
        config: baton_api::ApiConfig,
    ) -> Result<std::net::SocketAddr, EmbeddedError> {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| EmbeddedError::Serve { address, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| EmbeddedError::Serve { address, source })?;
        let api = baton_api::Api::new(
            self.client.clone(),
            self.layered.clone(),
            self.stores.clone(),
            config,
            self.workflows.iter().cloned().collect(),
            self.services.iter().cloned().collect(),
        );
        let token = self.supervisor.token().clone();
        let collector = api.collect_dead_letters(
            self.clock.clone(),
            self.services.iter().cloned().collect(),
            token.clone(),
        );
        self.supervisor.spawn("api", async move {
            let served = api.serve(listener, token).await;
            let _ = collector.await;
            served
        });
        Ok(bound)
    }

    /// Stops every component: consumers stop, in-flight work drains, then tasks end.
    pub async fn shutdown(self) {
        self.client.close();
        for failure in self.supervisor.shutdown(Duration::from_secs(30)).await {
            tracing::error!(%failure, "component failed during shutdown");
        }
        if let Some(memory) = self.memory {
            memory.close();
        }
    }
}
