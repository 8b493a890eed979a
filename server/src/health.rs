//! `/health` (the process is alive), `/ready` (it consumes and its dependencies answer) and
//! `/metrics` (Prometheus).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use baton_runtime::CancellationToken;
use tokio::net::TcpListener;

/// The readiness of a component, shared with its health server: ready, or not ready and why.
#[derive(Clone)]
pub struct Health {
    not_ready: Arc<Mutex<Option<String>>>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            not_ready: Arc::new(Mutex::new(Some("starting".into()))),
        }
    }
}

impl Health {
    /// Marks the component ready.
    pub fn set_ready(&self) {
        *self.lock() = None;
    }

    /// Marks the component not ready, saying why (shown in the body of `/ready`).
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        *self.lock() = Some(reason.into());
    }

    /// Whether it is ready.
    pub fn is_ready(&self) -> bool {
        self.lock().is_none()
    }

    /// Why it is not ready (`None` when it is).
    pub fn reason(&self) -> Option<String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.not_ready.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves the endpoints on `listen`; returns the bound address and the server task.
    pub async fn serve(
        &self,
        listen: SocketAddr,
        shutdown: CancellationToken,
    ) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let listener = TcpListener::bind(listen).await?;
        baton_telemetry::prometheus();
        let address = listener.local_addr()?;
        let app = Router::new()
            .route("/health", get(|| async { (StatusCode::OK, "ok\n".to_string()) }))
            .route(
                "/ready",
                get(|State(health): State<Health>| async move {
                    match health.reason() {
                        None => (StatusCode::OK, "ready\n".to_string()),
                        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")),
                    }
                }),
            )
            .route(
                "/metrics",
                get(|| async {
                    (
                        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        baton_telemetry::render(),
                    )
                }),
            )
            .with_state(self.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await;
        });
        Ok((address, task))
    }
}
