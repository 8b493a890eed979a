//! One workflow forms one trace: spans exported over OTLP/HTTP to a receiver that decodes the
//! OTLP protobuf, linked client → engine → worker → engine → worker → engine.
#![allow(missing_docs)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post;
use baton::{Embedded, Workflow, WorkflowContext};
use common::greeter::{GreeterImpl, GreeterService, GreeterStub};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message as _;

pub struct Hello;

impl Workflow for Hello {
    const NAME: &'static str = "Hello";
    type Input = String;
    type Output = String;
    type Error = String;

    async fn run(ctx: WorkflowContext, name: String) -> Result<String, String> {
        let greeter = ctx.service::<GreeterStub>();
        let first = greeter.greet(name).await.map_err(|e| e.to_string())?;
        greeter.greet(first).await.map_err(|e| e.to_string())
    }
}

#[derive(Clone, Debug)]
struct ReceivedSpan {
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent: Vec<u8>,
    name: String,
    service: String,
}

type Received = Arc<Mutex<Vec<ReceivedSpan>>>;

/// An OTLP/HTTP receiver on a loopback port: it decodes each export request and keeps its spans.
async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let spans = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let spans = spans.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export request");
                let mut kept = spans.lock().expect("spans");
                for resource in request.resource_spans {
                    let service = resource
                        .resource
                        .iter()
                        .flat_map(|r| r.attributes.iter())
                        .find(|a| a.key == "service.name")
                        .and_then(|a| a.value.as_ref())
                        .map(|v| format!("{:?}", v.value))
                        .unwrap_or_default();
                    for scope in resource.scope_spans {
                        for span in scope.spans {
                            kept.push(ReceivedSpan {
                                trace_id: span.trace_id,
                                span_id: span.span_id,
                                parent: span.parent_span_id,
                                name: span.name,
                                service: service.clone(),
                            });
                        }
                    }
                }
                ExportTraceServiceResponse::default().encode_to_vec()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{address}"), received)
}

/// The longest chain of spans from `root` down, by name.
fn deepest_chain(root: &ReceivedSpan, children: &HashMap<Vec<u8>, Vec<ReceivedSpan>>) -> Vec<String> {
    let mut best = Vec::new();
    for child in children.get(&root.span_id).into_iter().flatten() {
        let chain = deepest_chain(child, children);
        if chain.len() > best.len() {
            best = chain;
        }
    }
    let mut chain = vec![root.name.clone()];
    chain.extend(best);
    chain
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_workflow_forms_one_trace_across_components() {
    let (endpoint, received) = receiver().await;
    let traces = baton::telemetry::otlp::install("baton-test", &endpoint, 1.0).expect("install the exporter");
    let baton = Embedded::builder()
        .service(GreeterService::new(GreeterImpl))
        .workflow::<Hello>()
        .start()
        .await
        .expect("start");
    let handle = baton.client().start::<Hello>(&"ada".to_string()).await.expect("start");
    assert_eq!(handle.result().await.expect("result"), "hello hello ada");

    // Every span of the run's trace arrives, each one's parent among them.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (root, trace) = loop {
        traces.flush();
        let spans = received.lock().expect("spans").clone();
        let root = spans
            .iter()
            .find(|s| s.parent.is_empty() && s.name == "publish workflow-cmd:Hello")
            .cloned();
        if let Some(root) = root {
            let trace: Vec<ReceivedSpan> = spans.into_iter().filter(|s| s.trace_id == root.trace_id).collect();
            let ids: Vec<&Vec<u8>> = trace.iter().map(|s| &s.span_id).collect();
            let complete = trace.iter().all(|s| s.parent.is_empty() || ids.contains(&&s.parent));
            let reached_the_second_greeting = trace
                .iter()
                .filter(|s| s.name.ends_with("service-task:Greeter"))
                .count()
                == 2;
            if complete && reached_the_second_greeting && trace.len() >= 9 {
                break (root, trace);
            }
        }
        assert!(
            Instant::now() < deadline,
            "the trace never arrived whole: {:#?}",
            received.lock().expect("spans")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        trace.iter().filter(|s| s.parent.is_empty()).count(),
        1,
        "one root: {trace:#?}"
    );
    assert!(trace.iter().all(|s| s.service.contains("baton-test")), "{trace:#?}");

    let mut children: HashMap<Vec<u8>, Vec<ReceivedSpan>> = HashMap::new();
    for span in &trace {
        children.entry(span.parent.clone()).or_default().push(span.clone());
    }
    let chain = deepest_chain(&root, &children);
    // Client → engine (start) → worker (workflow task 1) → engine (its result) → worker (the
    // first greeting) → engine (its result) → worker (workflow task 2) → … → the reply.
    let kinds: Vec<&str> = chain
        .iter()
        .map(|name| name.rsplit(' ').next().unwrap_or_default())
        .map(|topic| topic.split(':').next().unwrap_or_default())
        .collect();
    let expected_prefix = [
        "workflow-cmd",
        "workflow-cmd",
        "workflow-task",
        "workflow-engine",
        "service-task",
        "workflow-engine",
        "workflow-task",
        "workflow-engine",
        "service-task",
        "workflow-engine",
    ];
    assert!(
        kinds.len() >= expected_prefix.len() && kinds[..expected_prefix.len()] == expected_prefix,
        "the trace is not one chain through the components: {chain:#?}"
    );
    baton.shutdown().await;
    drop(traces);
}
