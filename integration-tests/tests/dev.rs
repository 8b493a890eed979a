//! `baton dev`: the whole local stack as child processes, used as a developer would: a worker
//! of their own joins with the settings it prints, a workflow runs through the API it serves,
//! and Ctrl-C stops everything.
#![allow(missing_docs)]

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use baton::{Workflow, WorkflowContext};
use common::greeter::{GreeterImpl, GreeterService, GreeterStub};
use tokio::io::{AsyncBufReadExt, BufReader};

pub struct Hello;

impl Workflow for Hello {
    const NAME: &'static str = "Hello";
    type Input = String;
    type Output = String;
    type Error = String;

    async fn run(ctx: WorkflowContext, name: String) -> Result<String, String> {
        ctx.service::<GreeterStub>()
            .greet(name)
            .await
            .map_err(|e| e.to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baton_dev_runs_a_stack_a_developers_worker_joins() {
    let bin = baton_test_support::built_binaries().join("baton");
    let listen = format!("127.0.0.1:{}", baton_test_support::free_port());
    let mut dev = tokio::process::Command::new(&bin)
        .args([
            "dev",
            "--workflow",
            "Hello",
            "--service",
            "Greeter",
            "--listen",
            &listen,
        ])
        // Without CARGO it runs the binaries beside it, which `built_binaries` just built;
        // with it, it would rebuild them with its own feature set, under other tests' feet.
        .env_remove("CARGO")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start baton dev");
    let mut lines = BufReader::new(dev.stdout.take().expect("stdout")).lines();
    let mut printed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(240);
    while !printed.iter().any(|l: &String| l.starts_with("press Ctrl-C")) {
        let line = tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), lines.next_line())
            .await
            .expect("baton dev is up within 240 s")
            .expect("read its output")
            .unwrap_or_else(|| panic!("baton dev ended early after printing {printed:?}"));
        printed.push(line);
    }
    assert!(printed.contains(&format!("dashboard: http://{listen}/")), "{printed:?}");
    let setting = |key: &str| {
        printed
            .iter()
            .find_map(|l| l.trim().strip_prefix(&format!("export {key}=")).map(str::to_string))
            .unwrap_or_else(|| panic!("baton dev did not print {key}: {printed:?}"))
    };

    // The developer's worker, with the printed settings.
    let section = baton_server::config::TransportSection {
        url: setting("BATON_TRANSPORT__URL"),
        pulsar: baton_server::config::PulsarSection {
            admin_url: setting("BATON_TRANSPORT__PULSAR__ADMIN_URL"),
            ..Default::default()
        },
        ..Default::default()
    };
    assert!(setting("BATON_STORAGE__URL").starts_with("redis://"));
    let transport = baton_server::connect_transport(&section).await.expect("transport");
    let stop = baton::components::runtime::CancellationToken::new();
    let worker = baton::Worker::new(baton::WorkerConfig::default())
        .service(GreeterService::new(GreeterImpl))
        .expect("service")
        .with_workflow::<Hello>()
        .expect("workflow");
    let running = tokio::spawn(worker.run(transport, std::sync::Arc::new(baton::SystemClock), stop.clone()));

    // A workflow through the stack's API.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let run: serde_json::Value = http
        .post(format!("http://{listen}/api/v1/workflows/Hello/run?timeout=60"))
        .json(&serde_json::json!({"input": "ada"}))
        .send()
        .await
        .expect("POST run")
        .json()
        .await
        .expect("JSON");
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["output"], "hello ada");
    let page: serde_json::Value = http
        .get(format!("http://{listen}/api/v1/instances?workflow=Hello"))
        .send()
        .await
        .expect("GET instances")
        .json()
        .await
        .expect("JSON");
    assert_eq!(page["instances"][0]["status"], "completed", "{page}");

    stop.cancel();
    let _ = running.await;
    // Ctrl-C stops every component and server, and baton dev exits cleanly.
    let pid = dev.id().expect("pid").to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(signalled.success());
    let status = tokio::time::timeout(Duration::from_secs(90), dev.wait())
        .await
        .expect("baton dev stops within 90 s")
        .expect("wait");
    assert!(status.success(), "baton dev exited with {status}");
    let api: std::net::SocketAddr = listen.parse().expect("address");
    assert!(
        std::net::TcpStream::connect_timeout(&api, Duration::from_secs(1)).is_err(),
        "the API still answers after baton dev stopped"
    );
}
