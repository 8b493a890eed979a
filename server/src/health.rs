//! `/health` (the process is alive) and `/ready` (it consumes and can do work).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use baton_runtime::CancellationToken;
use tokio::net::TcpListener;

/// The readiness of a component, shared with its health server.
#[derive(Clone, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
}

impl Health {
    /// Marks the component ready (or not).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Whether it is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Serves the endpoints on `listen`; returns the bound address and the server task.
    pub async fn serve(
        &self,
        listen: SocketAddr,
        shutdown: CancellationToken,
    ) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let listener = TcpListener::bind(listen).await?;
        let address = listener.local_addr()?;
        let app = Router::new()
            .route("/health", get(|| async { (StatusCode::OK, "ok\n") }))
            .route(
                "/ready",
                get(|State(health): State<Health>| async move {
                    if health.is_ready() {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
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
