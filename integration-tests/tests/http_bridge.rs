//! The HTTP bridge: a service whose methods are endpoints of an HTTP server started by the test.
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use baton::components::worker::{HttpMethod, HttpService, HttpServiceConfig};
use baton::{CallError, Embedded, Payload, Workflow, WorkflowContext};
use baton_test_support::TestCertificates;
use serde_json::{Value, json};

#[derive(Default)]
struct Api {
    flaky_calls: AtomicU32,
}

async fn reserve(Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let sku = body["args"][0].as_str().unwrap_or_default().to_string();
    if sku == "gone" {
        return (StatusCode::CONFLICT, Json(json!({"error": "out of stock", "sku": sku})));
    }
    (
        StatusCode::OK,
        Json(json!({"reserved": sku, "task": body["task_id"], "attempt": body["attempt"]})),
    )
}

async fn flaky(State(api): State<Arc<Api>>) -> (StatusCode, Json<Value>) {
    if api.flaky_calls.fetch_add(1, Ordering::SeqCst) < 2 {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!("try later")));
    }
    (StatusCode::OK, Json(json!("finally")))
}

fn app() -> (Router, Arc<Api>) {
    let api = Arc::new(Api::default());
    let app = Router::new()
        .route("/reserve", post(reserve))
        .route("/flaky", post(flaky))
        .with_state(api.clone());
    (app, api)
}

async fn start_api() -> (String, Arc<Api>) {
    let (app, api) = app();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{address}"), api)
}

/// A listener that speaks TLS, with the test authority's server certificate; a connection whose
/// handshake fails (an untrusting client, a missing client certificate) is dropped.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, address)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, address);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// The same API over `https://`, asking for a client certificate signed by the test authority
/// when `mutual`.
async fn start_https_api(certs: &TestCertificates, mutual: bool) -> (String, Arc<Api>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&certs.server_cert)
        .expect("server certificate")
        .collect::<Result<_, _>>()
        .expect("server certificate");
    let key = PrivateKeyDer::from_pem_file(&certs.server_key).expect("server key");
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocols");
    let config = if mutual {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(&certs.ca).expect("ca"))
            .expect("ca");
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .expect("client verifier");
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    }
    .with_single_cert(chain, key)
    .expect("server TLS");
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = tcp.local_addr().expect("address");
    let listener = TlsListener {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    };
    let (app, api) = app();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("https://127.0.0.1:{}", address.port()), api)
}

fn method(url: String) -> HttpMethod {
    HttpMethod {
        url,
        timeout_ms: 5_000,
        max_attempts: 4,
        initial_delay_ms: 5,
        max_delay_ms: 50,
        retryable_statuses: vec![502, 503, 504],
    }
}

struct UsesInventory;
impl Workflow for UsesInventory {
    const NAME: &'static str = "UsesInventory";
    type Input = String;
    type Output = String;
    type Error = String;

    async fn run(ctx: WorkflowContext, sku: String) -> Result<String, String> {
        let reserved: Result<Value, CallError<Value>> =
            ctx.call_service("Inventory", "reserve", Payload::json(&(sku,))).await;
        let flaky: Result<Value, CallError<Value>> = ctx.call_service("Inventory", "flaky", Payload::json(&())).await;
        match (reserved, flaky) {
            (Ok(r), Ok(f)) => Ok(format!("{} {}", r["reserved"], f)),
            (Err(CallError::Service(detail)), _) => Ok(format!("refused: {}", detail["error"])),
            (r, f) => Err(format!("unexpected {r:?} {f:?}")),
        }
    }
}

fn inventory(base: &str) -> HttpServiceConfig {
    HttpServiceConfig::new(
        "Inventory",
        BTreeMap::from([
            ("reserve".to_string(), method(format!("{base}/reserve"))),
            ("flaky".to_string(), method(format!("{base}/flaky"))),
        ]),
    )
}

async fn start(base: &str) -> Embedded {
    start_with(inventory(base)).await
}

async fn start_with(config: HttpServiceConfig) -> Embedded {
    let service = HttpService::new(config).expect("valid bridge");
    let options = service.options();
    Embedded::builder()
        .service_with(service, options)
        .workflow::<UsesInventory>()
        .start()
        .await
        .expect("start")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridged_service_answers_retries_retryable_statuses_and_reports_others_typed() {
    let (base, api) = start_api().await;
    let baton = start(&base).await;
    let ok = baton
        .client()
        .start::<UsesInventory>(&"sku-7".to_string())
        .await
        .expect("start");
    assert_eq!(ok.result().await.expect("result"), r#""sku-7" "finally""#);
    assert_eq!(api.flaky_calls.load(Ordering::SeqCst), 3, "two 503s were retried");
    let refused = baton
        .client()
        .start::<UsesInventory>(&"gone".to_string())
        .await
        .expect("start");
    assert_eq!(refused.result().await.expect("result"), r#"refused: "out of stock""#);
    baton.shutdown().await;
}

/// Runs the two bookings of the bridge scenario; returns what the first one ended with.
async fn book_through(baton: &Embedded) -> Result<String, String> {
    let handle = baton
        .client()
        .start::<UsesInventory>(&"sku-7".to_string())
        .await
        .expect("start");
    handle.result().await.map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_endpoint_signed_by_a_private_authority_is_trusted_through_tls_ca_file() {
    let certs = TestCertificates::generate("bridge");
    let (base, api) = start_https_api(&certs, false).await;
    let config = HttpServiceConfig {
        tls_ca_file: certs.ca.display().to_string(),
        ..inventory(&base)
    };
    let baton = start_with(config).await;
    assert_eq!(book_through(&baton).await, Ok(r#""sku-7" "finally""#.to_string()));
    assert_eq!(api.flaky_calls.load(Ordering::SeqCst), 3);
    baton.shutdown().await;

    // Without the authority, the public roots do not know the server: no call gets through.
    let (base, api) = start_https_api(&certs, false).await;
    let baton = start_with(inventory(&base)).await;
    let outcome = book_through(&baton).await;
    assert!(
        outcome.as_ref().is_ok_and(|o| o.starts_with("unexpected")) || outcome.is_err(),
        "{outcome:?}"
    );
    assert_eq!(
        api.flaky_calls.load(Ordering::SeqCst),
        0,
        "no request reached the server"
    );
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_endpoint_that_asks_for_a_client_certificate_gets_tls_cert_file() {
    let certs = TestCertificates::generate("bridge-mtls");
    let (base, api) = start_https_api(&certs, true).await;
    let config = HttpServiceConfig {
        tls_ca_file: certs.ca.display().to_string(),
        tls_cert_file: certs.client_cert.display().to_string(),
        tls_key_file: certs.client_key.display().to_string(),
        ..inventory(&base)
    };
    let baton = start_with(config).await;
    assert_eq!(book_through(&baton).await, Ok(r#""sku-7" "finally""#.to_string()));
    assert_eq!(api.flaky_calls.load(Ordering::SeqCst), 3);
    baton.shutdown().await;

    // The same server refuses a client without a certificate.
    let (base, api) = start_https_api(&certs, true).await;
    let config = HttpServiceConfig {
        tls_ca_file: certs.ca.display().to_string(),
        ..inventory(&base)
    };
    let baton = start_with(config).await;
    let outcome = book_through(&baton).await;
    assert!(
        outcome.as_ref().map_or(true, |o| o.starts_with("unexpected")),
        "{outcome:?}"
    );
    assert_eq!(api.flaky_calls.load(Ordering::SeqCst), 0);
    baton.shutdown().await;
}

#[test]
fn a_bridge_with_a_bad_url_or_bad_tls_files_is_rejected_with_the_setting_named() {
    let rejected = |config: HttpServiceConfig| HttpService::new(config).err().expect("rejected");
    let ftp = HttpServiceConfig::new("X", BTreeMap::from([("m".to_string(), method("ftp://nope".into()))]));
    assert!(rejected(ftp).contains("must start with http:// or https://"));
    let plain_with_ca = HttpServiceConfig {
        tls_ca_file: "/etc/ssl/ca.pem".into(),
        ..inventory("http://127.0.0.1:1")
    };
    assert!(rejected(plain_with_ca).contains("apply to https:// URLs"));
    let missing_ca = HttpServiceConfig {
        tls_ca_file: "/nonexistent/ca.pem".into(),
        ..inventory("https://127.0.0.1:1")
    };
    let err = rejected(missing_ca);
    assert!(err.contains("Inventory.tls_ca_file /nonexistent/ca.pem"), "{err}");
    let certs = TestCertificates::generate("bridge-bad");
    let cert_without_key = HttpServiceConfig {
        tls_cert_file: certs.client_cert.display().to_string(),
        ..inventory("https://127.0.0.1:1")
    };
    assert!(rejected(cert_without_key).contains("go together"));
    let key_as_ca = HttpServiceConfig {
        tls_ca_file: certs.client_key.display().to_string(),
        ..inventory("https://127.0.0.1:1")
    };
    assert!(rejected(key_as_ca).contains("holds no PEM certificate"));
}
