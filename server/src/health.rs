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

/// What `/ready` warns of without turning not ready: one line each.
fn warnings() -> String {
    let lead = baton_runtime::CLOCK_LEAD.recent();
    if lead > baton_runtime::CLOCK_LEAD_WARNING {
        format!(
            "warning: clock skew: messages consumed in the last minute were emitted up to {:.1} s ahead of this \
             process's clock; another component's clock (or the timer service's) runs ahead of this one. Timers are \
             held until due by this clock; synchronise the clocks (NTP)\n",
            lead.as_secs_f64()
        )
    } else {
        String::new()
    }
}

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
                        None => (StatusCode::OK, format!("ready\n{}", warnings())),
                        Some(reason) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {reason}\n{}", warnings()),
                        ),
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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn get(address: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: health\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        response
    }

    #[tokio::test]
    async fn readiness_warns_of_clock_skew_without_turning_not_ready() {
        use baton_shared_schemas::Timestamp;

        let health = Health::default();
        health.set_ready();
        let shutdown = CancellationToken::new();
        let (address, task) = health
            .serve("127.0.0.1:0".parse().expect("address"), shutdown.clone())
            .await
            .expect("serve");
        let quiet = get(address, "/ready").await;
        assert!(
            quiet.starts_with("HTTP/1.1 200") && !quiet.contains("warning"),
            "{quiet}"
        );
        // A message emitted an hour ahead of this process's clock.
        let now = Timestamp::now_system();
        baton_runtime::CLOCK_LEAD.observe(Timestamp(now.0 + 3_600_000), now);
        let warned = get(address, "/ready").await;
        assert!(warned.starts_with("HTTP/1.1 200"), "still ready: {warned}");
        assert!(
            warned.contains("warning: clock skew") && warned.contains("3600.0 s ahead"),
            "{warned}"
        );
        shutdown.cancel();
        task.await.expect("server");
    }
}
