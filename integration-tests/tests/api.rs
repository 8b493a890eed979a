//! The HTTP API through the real components: every route, tokens with two roles, and bad input,
//! on an embedded deployment served on a loopback port.
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use baton::{ApiConfig, ApiRole, ApiToken, Channel, Embedded, Method, Workflow, WorkflowContext};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{0}")]
pub struct ShopError(String);

impl baton::ServiceError for ShopError {
    fn is_retryable(&self) -> bool {
        false
    }
}

#[baton::service]
pub trait Shop {
    /// Charges an order; fails for good while the shop is broken.
    async fn charge(&self, item: String) -> Result<String, ShopError>;
}

#[derive(Default)]
struct ShopImpl {
    broken: AtomicBool,
}

impl Shop for Arc<ShopImpl> {
    async fn charge(&self, item: String) -> Result<String, ShopError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(ShopError(format!("payment provider rejected {item}: bad credentials")));
        }
        Ok(format!("charged {item}"))
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Order {
    /// Charge at once.
    Pay { item: String },
    /// Wait for the `approval` signal, then charge.
    Approve { item: String },
    /// Sleep for an hour (until timers are completed).
    Sleep,
}

pub const APPROVAL: Channel<bool> = Channel::new("approval");
pub const ITEM: Method<(), String> = Method::new("item");

pub struct Checkout;

impl Workflow for Checkout {
    const NAME: &'static str = "Checkout";
    type Input = Order;
    type Output = String;
    type Error = String;

    async fn run(ctx: WorkflowContext, order: Order) -> Result<String, String> {
        let item = match &order {
            Order::Pay { item } | Order::Approve { item } => item.clone(),
            Order::Sleep => "nothing".to_string(),
        };
        ctx.handle(&ITEM, {
            let item = item.clone();
            move |()| {
                let item = item.clone();
                async move { Ok(item) }
            }
        });
        match order {
            Order::Sleep => {
                ctx.sleep(Duration::from_secs(3600)).await;
                Ok("woke".into())
            }
            Order::Approve { .. } => {
                if !ctx.receive(&APPROVAL).await.map_err(|e| e.to_string())? {
                    return Err("not approved".into());
                }
                ctx.service::<ShopStub>().charge(item).await.map_err(|e| e.to_string())
            }
            Order::Pay { .. } => ctx.service::<ShopStub>().charge(item).await.map_err(|e| e.to_string()),
        }
    }
}

const READER: &str = "reader-token-0123456789abcdef";
const OPERATOR: &str = "operator-token-0123456789abcdef";

struct Served {
    baton: Embedded,
    shop: Arc<ShopImpl>,
    base: String,
    http: reqwest::Client,
}

async fn serve(tokens: bool) -> Served {
    serve_with(tokens, |_| {}).await
}

async fn serve_with(tokens: bool, change: impl FnOnce(&mut ApiConfig)) -> Served {
    // reqwest is built without a TLS provider of its own; plain HTTP still asks for one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let shop = Arc::new(ShopImpl::default());
    let mut baton = Embedded::builder()
        .service(ShopService::new(shop.clone()))
        .workflow::<Checkout>()
        .start()
        .await
        .expect("start");
    let config = ApiConfig {
        tokens: if tokens {
            vec![
                ApiToken {
                    token: READER.into(),
                    role: ApiRole::Reader,
                },
                ApiToken {
                    token: OPERATOR.into(),
                    role: ApiRole::Operator,
                },
            ]
        } else {
            Vec::new()
        },
        ..ApiConfig::default()
    };
    let mut config = config;
    change(&mut config);
    let address = baton
        .serve("127.0.0.1:0".parse().expect("address"), config)
        .await
        .expect("serve");
    Served {
        baton,
        shop,
        base: format!("http://{address}"),
        http: reqwest::Client::new(),
    }
}

impl Served {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, String, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let text = response.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, content_type, json)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (status, _, body) = self.send(reqwest::Method::GET, path, Some(OPERATOR), None).await;
        (status, body)
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let (status, _, body) = self.send(reqwest::Method::POST, path, Some(OPERATOR), Some(body)).await;
        (status, body)
    }

    /// Polls an instance until `done` holds for it.
    async fn wait_for(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self.get(&format!("/api/v1/instances/{id}")).await;
            if status == StatusCode::OK && done(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "instance {id} never became {what}: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn assert_problem(status: StatusCode, content_type: &str, body: &Value, expected: StatusCode, detail_has: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(content_type, "application/problem+json", "{body}");
    assert_eq!(body["status"], expected.as_u16(), "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(detail_has), "`{detail}` should mention `{detail_has}`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_are_started_listed_read_and_repaired_over_http() {
    let api = serve(true).await;
    api.shop.broken.store(true, Ordering::SeqCst);

    // Start and wait: the charge fails for good, so the run fails.
    let (status, run) = api
        .post(
            "/api/v1/workflows/Checkout/run?timeout=20",
            json!({"input": {"kind": "pay", "item": "lamp"}, "tags": ["customer:7"], "meta": {"channel": "web"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["failure"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("bad credentials"),
        "{run}"
    );
    let failed_id = run["id"].as_str().expect("id").to_string();

    // Listed by workflow, status and tag, with counts.
    let (_, page) = api.get("/api/v1/instances?workflow=Checkout&status=failed").await;
    assert_eq!(page["instances"][0]["id"], failed_id.as_str(), "{page}");
    let (_, page) = api.get("/api/v1/instances?tag=customer:7").await;
    assert_eq!(page["instances"].as_array().map(Vec::len), Some(1), "{page}");
    let (_, counts) = api.get("/api/v1/workflows").await;
    assert_eq!(counts[0]["workflow"], "Checkout");
    assert_eq!(counts[0]["failed"], 1, "{counts}");

    // The instance and its history, payloads as JSON.
    let (status, detail) = api.get(&format!("/api/v1/instances/{failed_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["status"], "failed");
    assert_eq!(detail["meta"]["channel"], "web");
    assert_eq!(detail["input"]["item"], "lamp", "{detail}");
    let (_, history) = api.get(&format!("/api/v1/instances/{failed_id}/history?limit=2")).await;
    assert_eq!(history["entries"].as_array().map(Vec::len), Some(2), "{history}");
    assert_eq!(history["nextOffset"], 2, "{history}");
    let (_, rest) = api
        .get(&format!("/api/v1/instances/{failed_id}/history?offset=2"))
        .await;
    let entries = rest["entries"].as_array().expect("entries");
    assert!(
        entries.iter().any(|e| e["kind"] == "ResultDelivered"
            && e["detail"]["outcome"]["Failed"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("bad credentials"))),
        "{rest}"
    );
    let (_, full) = api.get(&format!("/api/v1/instances/{failed_id}/history")).await;
    assert!(
        full["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .any(|e| e["kind"] == "CommandRecorded"
                && e["detail"]["command"]["spec"]["ServiceTask"]["args"] == json!(["lamp"])),
        "service arguments read as JSON: {full}"
    );

    // Retry after the fix: the run resumes and completes.
    api.shop.broken.store(false, Ordering::SeqCst);
    let (status, _) = api
        .post(
            &format!("/api/v1/instances/{failed_id}/retry-tasks"),
            json!({"service": "Shop"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let done = api
        .wait_for(&failed_id, "completed", |d| d["status"] == "completed")
        .await;
    assert_eq!(done["outcome"]["output"], "charged lamp");
    let (_, result) = api.get(&format!("/api/v1/instances/{failed_id}/result")).await;
    assert_eq!(result["output"], "charged lamp", "{result}");

    // Signals and methods on a running instance.
    let (status, started) = api
        .post(
            "/api/v1/workflows/Checkout/instances",
            json!({"input": {"kind": "approve", "item": "desk"}, "customId": "order-42"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let waiting_id = started["id"].as_str().expect("id").to_string();
    api.wait_for(&waiting_id, "waiting on its signal", |d| {
        d["pending"].as_array().is_some_and(|p| !p.is_empty())
    })
    .await;
    let (status, called) = api
        .post(&format!("/api/v1/instances/{waiting_id}/methods/item"), json!(null))
        .await;
    assert_eq!(
        (status, &called["result"]),
        (StatusCode::OK, &json!("desk")),
        "{called}"
    );
    let (status, again) = api
        .post(
            "/api/v1/workflows/Checkout/instances",
            json!({"input": {"kind": "approve", "item": "desk"}, "customId": "order-42"}),
        )
        .await;
    assert_eq!(
        (status, &again["id"]),
        (StatusCode::ACCEPTED, &started["id"]),
        "a custom id names one instance"
    );
    let (status, _) = api
        .post(&format!("/api/v1/instances/{waiting_id}/signals/approval"), json!(true))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, result) = api
        .get(&format!("/api/v1/instances/{waiting_id}/result?timeout=20"))
        .await;
    assert_eq!(result["output"], "charged desk", "{result}");

    // Timers completed by an operator; a cancel.
    let (_, sleeper) = api
        .post(
            "/api/v1/workflows/Checkout/instances",
            json!({"input": {"kind": "sleep"}}),
        )
        .await;
    let sleeper_id = sleeper["id"].as_str().expect("id").to_string();
    api.wait_for(&sleeper_id, "sleeping", |d| {
        d["pending"]
            .as_array()
            .is_some_and(|p| p.iter().any(|c| c["kind"] == "timer"))
    })
    .await;
    let (status, _) = api
        .post(&format!("/api/v1/instances/{sleeper_id}/complete-timers"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let woke = api.wait_for(&sleeper_id, "woken", |d| d["status"] == "completed").await;
    assert_eq!(woke["outcome"]["output"], "woke");
    let (_, doomed) = api
        .post(
            "/api/v1/workflows/Checkout/instances",
            json!({"input": {"kind": "sleep"}}),
        )
        .await;
    let doomed_id = doomed["id"].as_str().expect("id").to_string();
    api.wait_for(&doomed_id, "running", |d| d["status"] == "running").await;
    let (status, _) = api
        .post(
            &format!("/api/v1/instances/{doomed_id}/cancel"),
            json!({"reason": "customer left"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let cancelled = api
        .wait_for(&doomed_id, "cancelled", |d| d["status"] == "cancelled")
        .await;
    assert_eq!(cancelled["outcome"]["reason"], "customer left");

    // Acting on an ended instance is a conflict, not a silent no-op.
    let (status, _, body) = api
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/instances/{doomed_id}/cancel"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = api
        .post(&format!("/api/v1/instances/{doomed_id}/retry-workflow-task"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // Paging through everything, newest first.
    let (_, first) = api.get("/api/v1/instances?workflow=Checkout&limit=2").await;
    let cursor = first["nextCursor"].as_str().expect("a second page").to_string();
    let (_, second) = api
        .get(&format!(
            "/api/v1/instances?workflow=Checkout&limit=2&cursor={}",
            encode(&cursor)
        ))
        .await;
    let seen: Vec<&Value> = first["instances"]
        .as_array()
        .into_iter()
        .chain(second["instances"].as_array())
        .flatten()
        .map(|i| &i["id"])
        .collect();
    assert_eq!(seen.len(), 4, "{first} {second}");
    assert!(first["instances"][0]["startedAt"].as_u64() >= second["instances"][0]["startedAt"].as_u64());
    api.baton.shutdown().await;
}

fn encode(s: &str) -> String {
    s.replace('|', "%7C")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_separate_readers_from_operators() {
    let api = serve(true).await;
    let (status, content_type, body) = api.send(reqwest::Method::GET, "/api/v1/instances", None, None).await;
    assert_problem(status, &content_type, &body, StatusCode::UNAUTHORIZED, "Bearer");
    let (status, content_type, body) = api
        .send(reqwest::Method::GET, "/api/v1/instances", Some("not-a-token"), None)
        .await;
    assert_problem(status, &content_type, &body, StatusCode::UNAUTHORIZED, "api.tokens");
    let (status, _, _) = api
        .send(reqwest::Method::GET, "/api/v1/instances", Some(READER), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let start = json!({"input": {"kind": "sleep"}});
    let (status, content_type, body) = api
        .send(
            reqwest::Method::POST,
            "/api/v1/workflows/Checkout/instances",
            Some(READER),
            Some(start.clone()),
        )
        .await;
    assert_problem(status, &content_type, &body, StatusCode::FORBIDDEN, "operator");
    let (status, content_type, body) = api
        .send(
            reqwest::Method::POST,
            "/api/v1/dead-letters/timers/redrive",
            Some(READER),
            None,
        )
        .await;
    assert_problem(status, &content_type, &body, StatusCode::FORBIDDEN, "operator");
    let (status, _, _) = api
        .send(
            reqwest::Method::POST,
            "/api/v1/workflows/Checkout/instances",
            Some(OPERATOR),
            Some(start),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // The document, the dashboard and the metrics need no token.
    for path in ["/openapi.json", "/", "/assets/app.js", "/metrics"] {
        let (status, _, _) = api.send(reqwest::Method::GET, path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    api.baton.shutdown().await;
}

/// Sends a request on a raw connection and reads the answer until the server closes it (or
/// `wait` passes): what came back, and whether the connection was closed.
async fn raw_exchange(stream: &mut tokio::net::TcpStream, request: &str, wait: Duration) -> (String, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&answer).into_owned(), true),
            Ok(Ok(n)) => answer.extend_from_slice(&buffer[..n]),
            Err(_) => return (String::from_utf8_lossy(&answer).into_owned(), false),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_cut_off_and_connections_are_bounded() {
    let api = serve_with(false, |c| {
        c.header_read_timeout_ms = 1_500;
        c.max_connections = 2;
    })
    .await;
    let address = api.base.trim_start_matches("http://").to_string();
    let address = address.split('/').next().expect("host").to_string();
    let request = "GET /api/v1/workflows HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n";

    // A client that sends half its headers and then nothing is cut off after the timeout.
    let began = Instant::now();
    let mut slow = tokio::net::TcpStream::connect(&address).await.expect("connect");
    let (_, closed) = raw_exchange(
        &mut slow,
        "GET /api/v1/workflows HTTP/1.1\r\nHost: a",
        Duration::from_secs(5),
    )
    .await;
    assert!(closed, "a client that never finishes its headers keeps its connection");
    let held = began.elapsed();
    assert!(
        held >= Duration::from_millis(1_400),
        "cut off after {held:?}, before the timeout"
    );

    // Two connections that send nothing fill the bound: a third waits until one closes.
    let first = tokio::net::TcpStream::connect(&address).await.expect("connect");
    let _second = tokio::net::TcpStream::connect(&address).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = tokio::net::TcpStream::connect(&address).await.expect("connect");
    let (answer, _) = raw_exchange(&mut third, request, Duration::from_millis(500)).await;
    assert!(answer.is_empty(), "a connection past the bound was served: {answer}");
    drop(first);
    let (answer, _) = raw_exchange(&mut third, "", Duration::from_secs(5)).await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "served once a slot was free: {answer}"
    );
    api.baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_over_its_rate_gets_429_and_guessing_tokens_is_limited_too() {
    let api = serve_with(true, |c| {
        c.rate_limit_per_sec = 1;
        c.rate_limit_burst = 5;
    })
    .await;
    let send = |token: Option<&'static str>| api.send(reqwest::Method::GET, "/api/v1/instances", token, None);
    for _ in 0..5 {
        assert_eq!(send(Some(READER)).await.0, StatusCode::OK);
    }
    let (status, content_type, body) = send(Some(READER)).await;
    assert_problem(
        status,
        &content_type,
        &body,
        StatusCode::TOO_MANY_REQUESTS,
        "api.rate_limit_per_sec",
    );
    let response = api
        .http
        .get(format!("{}/api/v1/instances", api.base))
        .bearer_auth(READER)
        .send()
        .await
        .expect("request");
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    // The operator's token has a rate of its own.
    assert_eq!(
        api.post(
            "/api/v1/workflows/Checkout/instances",
            json!({"input": {"kind": "sleep"}})
        )
        .await
        .0,
        StatusCode::ACCEPTED
    );
    // Without a configured token the address is the caller: wrong guesses are answered 401
    // until the address's burst is spent, then 429.
    let mut answers = Vec::new();
    for _ in 0..7 {
        answers.push(send(Some("guess-0123456789abcdef")).await.0.as_u16());
    }
    assert_eq!(answers, [401, 401, 401, 401, 401, 429, 429]);
    // The document, the dashboard and the metrics are not limited.
    for _ in 0..10 {
        assert_eq!(
            api.send(reqwest::Method::GET, "/openapi.json", None, None).await.0,
            StatusCode::OK
        );
    }
    api.baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_precise_problem() {
    let api = serve(false).await;
    let unknown = baton::WorkflowId::new();
    let cases: Vec<(reqwest::Method, String, Option<Value>, StatusCode, &str)> = vec![
        (
            reqwest::Method::GET,
            "/api/v1/instances/not-a-uuid".into(),
            None,
            StatusCode::BAD_REQUEST,
            "not an instance id",
        ),
        (
            reqwest::Method::GET,
            format!("/api/v1/instances/{unknown}"),
            None,
            StatusCode::NOT_FOUND,
            "unknown",
        ),
        (
            reqwest::Method::GET,
            format!("/api/v1/instances/{unknown}/history"),
            None,
            StatusCode::NOT_FOUND,
            "unknown",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/instances?status=sleeping".into(),
            None,
            StatusCode::BAD_REQUEST,
            "status",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/instances?limit=0".into(),
            None,
            StatusCode::BAD_REQUEST,
            "limit",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/instances?cursor=abc".into(),
            None,
            StatusCode::BAD_REQUEST,
            "cursor",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/instances?colour=red".into(),
            None,
            StatusCode::BAD_REQUEST,
            "colour",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/workflows/Checkout/instances".into(),
            Some(json!([null, null])),
            StatusCode::BAD_REQUEST,
            "object",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/workflows/Nobody/instances".into(),
            Some(json!({"input": 1})),
            StatusCode::NOT_FOUND,
            "Nobody",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/workflows/Checkout/instances".into(),
            Some(json!({"inptu": 1})),
            StatusCode::BAD_REQUEST,
            "inptu",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/workflows/Checkout/instances".into(),
            Some(json!({"input": 1, "tags": [""]})),
            StatusCode::BAD_REQUEST,
            "tag",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/workflows/Checkout/instances".into(),
            Some(json!({"input": 1, "tags": (0..10_000).map(|i| format!("t{i}")).collect::<Vec<_>>()})),
            StatusCode::BAD_REQUEST,
            "at most 100 tags, not 10000",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/workflows/Checkout/instances".into(),
            Some(json!({"input": 1, "customId": ""})),
            StatusCode::BAD_REQUEST,
            "customId",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/workflows/Checkout/instances".into(),
            None,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/workflows/Checkout/instances".into(),
            Some(json!({"input": "x".repeat(2 * 1024 * 1024)})),
            StatusCode::PAYLOAD_TOO_LARGE,
            "api.max_body_bytes",
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/instances/{unknown}/retry-tasks"),
            Some(json!({"service": "y".repeat(2 * 1024 * 1024)})),
            StatusCode::PAYLOAD_TOO_LARGE,
            "api.max_body_bytes",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/workflows/Checkout/run?timeout=0".into(),
            Some(json!({"input": 1})),
            StatusCode::BAD_REQUEST,
            "timeout",
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/instances/{unknown}/retry-tasks"),
            Some(json!({"failure": "Gremlins"})),
            StatusCode::BAD_REQUEST,
            "Gremlins",
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/instances/{unknown}/retry-tasks"),
            Some(json!({"taskId": "x"})),
            StatusCode::BAD_REQUEST,
            "task id",
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/instances/{unknown}/cancel"),
            None,
            StatusCode::NOT_FOUND,
            "unknown",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/services/Shop/tasks/nope/complete".into(),
            Some(json!({"result": 1})),
            StatusCode::BAD_REQUEST,
            "task id",
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/services/Shop/tasks/{unknown}/fail"),
            Some(json!({"message": " "})),
            StatusCode::BAD_REQUEST,
            "why",
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/services/Nowhere/tasks/{unknown}/complete"),
            Some(json!({"result": 1})),
            StatusCode::NOT_FOUND,
            "no service `Nowhere` has its delegated tasks completed here (known: Shop",
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/services/Nowhere/tasks/{unknown}/fail"),
            Some(json!({"message": "gave up"})),
            StatusCode::NOT_FOUND,
            "no service `Nowhere`",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/dead-letters/timers?cursor=zz".into(),
            None,
            StatusCode::BAD_REQUEST,
            "cursor",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/dead-letters/timers/nope".into(),
            None,
            StatusCode::NOT_FOUND,
            "nope",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/no-such-route".into(),
            None,
            StatusCode::NOT_FOUND,
            "no such route",
        ),
    ];
    for (method, path, body, expected, detail) in cases {
        let (status, content_type, problem) = api.send(method.clone(), &path, None, body).await;
        assert_problem(status, &content_type, &problem, expected, detail);
    }
    api.baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_route() {
    let api = serve(false).await;
    let (status, _, doc) = api.send(reqwest::Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/api/v1/workflows",
        "/api/v1/instances",
        "/api/v1/instances/{id}",
        "/api/v1/instances/{id}/history",
        "/api/v1/instances/{id}/result",
        "/api/v1/workflows/{workflow}/instances",
        "/api/v1/workflows/{workflow}/run",
        "/api/v1/instances/{id}/signals/{channel}",
        "/api/v1/instances/{id}/methods/{method}",
        "/api/v1/instances/{id}/cancel",
        "/api/v1/instances/{id}/retry-workflow-task",
        "/api/v1/instances/{id}/retry-tasks",
        "/api/v1/instances/{id}/complete-timers",
        "/api/v1/services/{service}/tasks/{task_id}/complete",
        "/api/v1/services/{service}/tasks/{task_id}/fail",
        "/api/v1/dead-letters",
        "/api/v1/dead-letters/{topic}",
        "/api/v1/dead-letters/{topic}/{id}",
        "/api/v1/dead-letters/{topic}/redrive",
        "/api/v1/dead-letters/{topic}/{id}/redrive",
    ] {
        assert!(paths.contains_key(path), "{path} is not documented");
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    api.baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_decoded_and_redriven() {
    use baton::components::transport::OutgoingMessage;
    let api = serve(false).await;
    let transport = api.baton.transport().clone();
    // Messages no engine can decode, on a topic whose dead letters are collected: the same
    // bytes three times, twice under one key. Each is a letter of its own.
    for key in ["k1", "k1", "k2"] {
        transport
            .publish("workflow-cmd:Checkout", OutgoingMessage::new(key, b"garbage".to_vec()))
            .await
            .expect("publish");
    }
    let letters_held = |count: usize| {
        let api = &api;
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let (_, page) = api.get("/api/v1/dead-letters/workflow-cmd:Checkout").await;
                if page["letters"].as_array().is_some_and(|l| l.len() == count) {
                    break page["letters"].as_array().cloned().unwrap_or_default();
                }
                assert!(Instant::now() < deadline, "{count} letters were never held: {page}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let letters = letters_held(3).await;
    for letter in &letters {
        assert!(
            letter["reason"].as_str().is_some_and(|r| r.contains("undecodable")),
            "{letter}"
        );
        assert!(letter["body"].is_null() && letter["bodyError"].is_string(), "{letter}");
    }
    let mut keys: Vec<&str> = letters.iter().filter_map(|l| l["key"].as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["k1", "k1", "k2"]);
    let (_, topics) = api.get("/api/v1/dead-letters").await;
    assert_eq!(topics, json!([{"topic": "workflow-cmd:Checkout", "count": 3}]));
    let id = letters[0]["id"].as_str().expect("id");
    let (status, one) = api
        .get(&format!("/api/v1/dead-letters/workflow-cmd:Checkout/{id}"))
        .await;
    assert_eq!((status, &one["id"]), (StatusCode::OK, &letters[0]["id"]));
    // Redriven, they fail again and come back, as letters of their own: the engine still
    // cannot decode them.
    let (status, redriven) = api
        .post("/api/v1/dead-letters/workflow-cmd:Checkout/redrive", json!({}))
        .await;
    assert_eq!(
        (status, &redriven["redriven"]),
        (StatusCode::OK, &json!(3)),
        "{redriven}"
    );
    let back = letters_held(3).await;
    for letter in &back {
        assert!(
            !letters.iter().any(|l| l["id"] == letter["id"]),
            "a new letter: {letter}"
        );
        let id = letter["id"].as_str().expect("id");
        let (status, _, _) = api
            .send(
                reqwest::Method::DELETE,
                &format!("/api/v1/dead-letters/workflow-cmd:Checkout/{id}"),
                None,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let (_, topics) = api.get("/api/v1/dead-letters").await;
    assert_eq!(topics, json!([]));
    api.baton.shutdown().await;
}

/// The value of one sample of the Prometheus text (`name{labels} value`), 0 when absent.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_a_run_did() {
    const RUNS: usize = 12;
    let api = serve(false).await;
    for i in 0..RUNS {
        let (status, run) = api
            .post(
                "/api/v1/workflows/Checkout/run?timeout=20",
                json!({"input": {"kind": "pay", "item": format!("item-{i}")}}),
            )
            .await;
        assert_eq!((status, &run["status"]), (StatusCode::OK, &json!("completed")), "{run}");
    }
    api.shop.broken.store(true, Ordering::SeqCst);
    let (_, failed) = api
        .post(
            "/api/v1/workflows/Checkout/run?timeout=20",
            json!({"input": {"kind": "pay", "item": "x"}}),
        )
        .await;
    assert_eq!(failed["status"], "failed");
    let response = reqwest::get(format!("{}/metrics", api.base)).await.expect("scrape");
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.expect("text");
    let runs = RUNS as f64;
    let checkout = [("workflow", "Checkout")];
    assert_eq!(
        sample(&text, "baton_workflows_started_total", &checkout),
        runs + 1.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "baton_workflows_ended_total",
            &[("workflow", "Checkout"), ("status", "completed")]
        ),
        runs
    );
    assert_eq!(
        sample(
            &text,
            "baton_workflows_ended_total",
            &[("workflow", "Checkout"), ("status", "failed")]
        ),
        1.0
    );
    let shop = [("service", "Shop")];
    assert_eq!(sample(&text, "baton_task_attempts_total", &shop), runs + 1.0);
    assert_eq!(sample(&text, "baton_task_completions_total", &shop), runs);
    assert_eq!(
        sample(
            &text,
            "baton_task_failures_total",
            &[("service", "Shop"), ("kind", "ServiceError")]
        ),
        1.0
    );
    let tasks = [("topic", "service-task:Shop")];
    assert_eq!(sample(&text, "baton_messages_published_total", &tasks), runs + 1.0);
    assert_eq!(sample(&text, "baton_messages_consumed_total", &tasks), runs + 1.0);
    assert!(
        sample(&text, "baton_handler_duration_seconds_count", &[]) > 0.0,
        "{text}"
    );
    assert!(sample(&text, "baton_engine_cache_hits_total", &[]) > 0.0, "{text}");
    assert!(text.contains("# TYPE baton_task_duration_seconds histogram"), "{text}");
    api.baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stuck_on_its_workflow_task_is_reported_at_once() {
    let api = serve(false).await;
    let began = Instant::now();
    let (status, run) = api
        .post(
            "/api/v1/workflows/Checkout/run?timeout=60",
            json!({"input": "not an order"}),
        )
        .await;
    assert_eq!((status, &run["status"]), (StatusCode::OK, &json!("stuck")), "{run}");
    assert!(
        began.elapsed() < Duration::from_secs(30),
        "a stuck run is not waited on"
    );
    assert_eq!(run["failure"]["kind"], "InvalidArguments", "{run}");
    let id = run["id"].as_str().expect("id");
    let (status, body) = api
        .post(&format!("/api/v1/instances/{id}/methods/item"), json!(null))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "a stuck instance runs no method: {body}");
    let (_, page) = api.get("/api/v1/instances?status=stuck").await;
    assert_eq!(page["instances"][0]["id"], id, "{page}");
    let (status, _) = api
        .post(&format!("/api/v1/instances/{id}/retry-workflow-task"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    api.baton.shutdown().await;
}
