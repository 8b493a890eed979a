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

async fn start_api() -> (String, Arc<Api>) {
    let api = Arc::new(Api::default());
    let app = Router::new()
        .route("/reserve", post(reserve))
        .route("/flaky", post(flaky))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{address}"), api)
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

async fn start(base: &str) -> Embedded {
    let config = HttpServiceConfig {
        name: "Inventory".into(),
        methods: BTreeMap::from([
            ("reserve".to_string(), method(format!("{base}/reserve"))),
            ("flaky".to_string(), method(format!("{base}/flaky"))),
        ]),
    };
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

#[test]
fn a_bridge_with_a_bad_url_is_rejected() {
    let config = HttpServiceConfig {
        name: "X".into(),
        methods: BTreeMap::from([("m".to_string(), method("ftp://nope".into()))]),
    };
    let err = HttpService::new(config).err().expect("rejected");
    assert!(err.contains("must start with http://"), "{err}");
}
