//! The component binaries as an operator runs them: readiness follows Redis and the broker,
//! every component exits within its shutdown deadline even when both died under it, a second
//! signal ends a draining process at once, and a start against an unreachable backend ends
//! with a precise error after the start-up deadline, the same way for Redis, Pulsar and Kafka.
#![allow(missing_docs)]

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use baton_examples::booking;
use baton_test_support::{ComponentProcess, PulsarBroker, RedisServer, free_port};

fn pulsar_env(pulsar: &PulsarBroker, run: &str) -> Vec<(&'static str, String)> {
    vec![
        ("BATON_TRANSPORT__URL", pulsar.service_url.clone()),
        ("BATON_TRANSPORT__PULSAR__ADMIN_URL", pulsar.admin_url.clone()),
        ("BATON_TRANSPORT__PULSAR__NAMESPACE", run.to_string()),
    ]
}

/// A transport on `pulsar`, in the namespace of `run`, as the components have.
async fn connect(pulsar: &PulsarBroker, run: &str) -> std::sync::Arc<dyn baton_transport::Transport> {
    let section = baton_server::config::TransportSection {
        url: pulsar.service_url.clone(),
        pulsar: baton_server::config::PulsarSection {
            admin_url: pulsar.admin_url.clone(),
            namespace: run.to_string(),
            ..Default::default()
        },
        ..Default::default()
    };
    baton_server::connect_transport(&section).await.expect("transport")
}

fn run_name() -> String {
    format!("p{}", baton::WorkflowId::new().as_uuid().simple())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_component_reports_the_outage_and_exits_within_its_deadline_after_redis_and_the_broker_died() {
    let mut redis = RedisServer::start();
    let mut pulsar = PulsarBroker::start();
    let run = run_name();
    let mut env = pulsar_env(&pulsar, &run);
    env.extend([
        ("BATON_STORAGE__URL", redis.url.clone()),
        ("BATON_STORAGE__PREFIX", format!("{run}:")),
        ("BATON_PROCESS__SHUTDOWN_DEADLINE_SECS", "3".to_string()),
    ]);
    let books = format!("{run}:books:");
    let mut tag_args = vec!["--workflow", "Booking"];
    for service in booking::SERVICES {
        tag_args.extend(["--service", service]);
    }
    let mut components = vec![
        ComponentProcess::start("workflow-engine", &["--workflow", "Booking"], &env),
        ComponentProcess::start("timer-service", &[], &env),
        ComponentProcess::start("tag-engine", &tag_args, &env),
        ComponentProcess::start(
            "booking-worker",
            &["--ledger-url", &redis.url, "--ledger-prefix", &books],
            &env,
        ),
    ];
    for component in &mut components {
        component.wait_ready_status(200, Duration::from_secs(120));
    }

    // Some traffic first, so every component holds connections and state.
    let transport = connect(&pulsar, &run).await;
    let client = baton::Client::connect(transport).await.expect("client");
    for n in 0..5 {
        let handle = client
            .start::<booking::Booking>(&booking::request(n))
            .await
            .expect("start");
        handle
            .result_within(Duration::from_secs(60))
            .await
            .expect("a booking ends");
    }
    client.close();

    // Redis and the broker die; every component says so on /ready.
    redis.stop();
    pulsar.stop();
    for component in &mut components {
        let reason = component.wait_ready_status(503, Duration::from_secs(15));
        assert!(reason.contains("unreachable"), "{}: {reason}", component.name);
    }

    // All signalled at the same moment: each exits within its 3 s deadline (plus a margin for
    // the process to be scheduled), whatever it was waiting on.
    for component in &components {
        component.terminate();
    }
    let signalled = Instant::now();
    for component in &mut components {
        let exit = component.wait_exit(Duration::from_secs(10));
        assert!(
            exit.is_some(),
            "{} still runs {:?} after SIGTERM with its servers gone:\n{}",
            component.name,
            signalled.elapsed(),
            component.log_text()
        );
    }
}

#[test]
fn a_second_signal_ends_a_draining_worker_at_once() {
    // An HTTP API that accepts the request and never answers: the bridged attempt runs until
    // its 60 s timeout, so the worker's drain would wait for it.
    let api = TcpListener::bind("127.0.0.1:0").expect("api");
    let api_port = api.local_addr().expect("address").port();
    let (accepted_tx, accepted) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut stream in api.incoming().flatten() {
            let mut buffer = [0u8; 1024];
            let _ = stream.read(&mut buffer);
            let _ = accepted_tx.send(());
            held.push(stream);
        }
    });
    let pulsar = PulsarBroker::start();
    let run = run_name();
    let services = std::env::temp_dir().join(format!("{run}-services.toml"));
    std::fs::write(
        &services,
        format!(
            "[[services]]\nname = \"Slow\"\n[services.methods.wait]\nurl = \"http://127.0.0.1:{api_port}/wait\"\ntimeout_ms = 60000\n"
        ),
    )
    .expect("services file");
    let mut env = pulsar_env(&pulsar, &run);
    env.push(("BATON_PROCESS__SHUTDOWN_DEADLINE_SECS", "60".to_string()));
    let services_arg = services.display().to_string();
    let mut worker = ComponentProcess::start("service-worker", &["--services", &services_arg], &env);
    worker.wait_ready_status(200, Duration::from_secs(120));

    // One task for it, straight onto its topic.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        use baton_shared_schemas::messages::{ExecuteTask, ServiceTaskMessage};
        use baton_shared_schemas::{Payload, TaskId, Timestamp, Topic};
        let transport = connect(&pulsar, &run).await;
        let task = ExecuteTask {
            task_id: TaskId::new(),
            service: "Slow".into(),
            method: "wait".into(),
            args: Payload::json(&serde_json::json!({})).expect("args"),
            attempt: 1,
            workflow_id: baton::WorkflowId::new(),
            workflow_name: "Nobody".into(),
            previous_failures: Vec::new(),
            tags: Vec::new(),
            meta: Default::default(),
        };
        baton_transport::Publisher::new(transport)
            .publish(
                &Topic::service_task("Slow"),
                ServiceTaskMessage::Execute(task),
                Timestamp::now_system(),
            )
            .await
            .expect("publish");
    });
    accepted
        .recv_timeout(Duration::from_secs(60))
        .expect("the worker called the API");

    worker.terminate();
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        worker.try_exit().is_none(),
        "the first signal drains (the attempt still runs):\n{}",
        worker.log_text()
    );
    assert_eq!(
        worker.ready().map(|(code, _)| code),
        Some(503),
        "not ready while draining"
    );
    worker.terminate();
    let exit = worker
        .wait_exit(Duration::from_secs(3))
        .unwrap_or_else(|| panic!("a second signal must end it at once:\n{}", worker.log_text()));
    assert_eq!(exit.code(), Some(130), "{exit:?} (signal {:?})", exit.signal());
    assert!(worker.log_text().contains("second signal"), "{}", worker.log_text());
}

#[test]
fn a_start_against_an_unreachable_backend_fails_after_the_startup_deadline_with_a_precise_message() {
    let nobody = || free_port().to_string();
    let cases = [
        (
            format!("pulsar://127.0.0.1:{}", nobody()),
            "redis://127.0.0.1:1/0".to_string(),
            "broker unreachable",
        ),
        (
            format!("kafka://127.0.0.1:{}", nobody()),
            "redis://127.0.0.1:1/0".to_string(),
            "broker unreachable",
        ),
        (
            "memory://".to_string(),
            format!("redis://127.0.0.1:{}/0", nobody()),
            "store unreachable",
        ),
    ];
    // Built first: a build inside the timed part would count as start-up time.
    baton_test_support::built_binaries();
    for (transport, storage, needle) in cases {
        let env = vec![
            ("BATON_TRANSPORT__URL", transport.clone()),
            ("BATON_STORAGE__URL", storage.clone()),
            ("BATON_PROCESS__STARTUP_DEADLINE_SECS", "3".to_string()),
        ];
        let started = Instant::now();
        let mut engine = ComponentProcess::start("workflow-engine", &["--workflow", "Booking"], &env);
        // The first answer can come before the first connection attempt ("starting").
        let reason = loop {
            let reason = engine.wait_ready_status(503, Duration::from_secs(10));
            if !reason.contains("starting") || started.elapsed() > Duration::from_secs(10) {
                break reason;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            reason.contains("unreachable") || reason.contains("connecting"),
            "{reason}"
        );
        let exit = engine
            .wait_exit(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{transport} {storage}: still running:\n{}", engine.log_text()));
        assert_eq!(exit.code(), Some(1), "{transport} {storage}:\n{}", engine.log_text());
        let log = engine.log_text();
        let last = log.lines().last().unwrap_or_default();
        assert!(
            last.contains(needle) && last.contains("startup_deadline_secs"),
            "{transport} {storage}: the last line names what was unreachable and the setting: {last}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "took {:?}",
            started.elapsed()
        );
        assert!(
            !log.contains("pulsar::") && !log.contains("librdkafka"),
            "broker clients' own lines stay out of the log:\n{log}"
        );
    }

    // A signal while it still waits for the broker stops it at once.
    let env = vec![
        ("BATON_TRANSPORT__URL", format!("pulsar://127.0.0.1:{}", nobody())),
        ("BATON_PROCESS__STARTUP_DEADLINE_SECS", "120".to_string()),
    ];
    let mut engine = ComponentProcess::start("workflow-engine", &["--workflow", "Booking"], &env);
    engine.wait_ready_status(503, Duration::from_secs(10));
    engine.terminate();
    assert!(
        engine.wait_exit(Duration::from_secs(5)).is_some(),
        "a signal during start-up must stop it:\n{}",
        engine.log_text()
    );
}
