//! The `baton` command line as a user runs it, against real binaries (an engine, a tag engine
//! and a booking worker on Redis and Apache Pulsar): every case exits with the code
//! `docs/cli.md` documents and says why, and nothing waits past `--timeout`.
#![allow(missing_docs)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use baton_examples::booking;
use baton_test_support::{ComponentProcess, PulsarBroker, RedisServer, built_binaries, free_port};

/// Runs `baton` with `args` against `env`; returns its output and how long it took.
fn baton(env: &[(&str, String)], args: &[&str]) -> (Output, Duration) {
    let program = built_binaries().join("baton");
    let started = Instant::now();
    let output = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("RUST_LOG")
        .output()
        .expect("running baton");
    (output, started.elapsed())
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Asserts the exit code and that stderr contains `needle`.
fn expect(output: &Output, code: i32, needle: &str, case: &str) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{case}: exit code\nstdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
    assert!(
        stderr(output).contains(needle),
        "{case}: stderr lacks `{needle}`:\n{}",
        stderr(output)
    );
}

#[test]
fn input_that_cannot_work_is_rejected_before_any_broker_is_contacted() {
    // No server runs: each of these must fail on the input alone, at once, with exit 2.
    let nowhere = vec![("BATON_TRANSPORT__URL", format!("pulsar://127.0.0.1:{}", free_port()))];
    let id = baton::WorkflowId::new().to_string();
    let cases: &[(&[&str], &str)] = &[
        (&["--timeout", "0", "status", "Booking", &id], "--timeout"),
        (&["start", "Booking", "{}", "--tag", ""], "must not be empty"),
        (&["start", "Booking", "{}", "--tag", "two\nlines"], "control characters"),
        (
            &["start", "Booking", "{}", "--custom-id", ""],
            "--custom-id must not be empty",
        ),
        (&["start", "Booking", "{not json"], "not valid JSON"),
        (&["list", "Booking", "--tag", ""], "must not be empty"),
        (&["cancel", "Booking", "--tag", "a\tb"], "control characters"),
        (&["cancel", "Booking", "--id", "not-a-uuid"], "is not a workflow id"),
        (
            &["--transport-url", "kafka://", "status", "Booking", &id],
            "bootstrap server",
        ),
        (&["--transport-url", "pulsar://", "status", "Booking", &id], "no host"),
        (&["--storage-url", "redis://", "status", "Booking", &id], "has no host"),
    ];
    for (args, needle) in cases {
        let (output, took) = baton(&nowhere, args);
        expect(&output, 2, needle, &format!("{args:?}"));
        assert!(took < Duration::from_secs(5), "{args:?} took {took:?}");
    }
}

#[test]
fn an_unreachable_broker_is_exit_4_within_the_timeout_in_one_line() {
    for url in [
        format!("pulsar://127.0.0.1:{}", free_port()),
        format!("kafka://127.0.0.1:{}", free_port()),
    ] {
        let env = vec![("BATON_TRANSPORT__URL", url.clone())];
        let id = baton::WorkflowId::new().to_string();
        let (output, took) = baton(&env, &["--timeout", "3", "status", "Booking", &id]);
        expect(&output, 4, &url, &url);
        assert!(took < Duration::from_secs(10), "{url}: took {took:?}");
        let lines = stderr(&output).lines().count();
        assert!(
            lines <= 2,
            "{url}: the broker client's own log lines must not reach stderr:\n{}",
            stderr(&output)
        );
    }
}

/// Redis, Pulsar, and the components the commands talk to.
struct Cluster {
    env: Vec<(&'static str, String)>,
    _components: Vec<ComponentProcess>,
    _pulsar: PulsarBroker,
    _redis: RedisServer,
}

fn cluster() -> Cluster {
    let redis = RedisServer::start();
    let pulsar = PulsarBroker::start();
    let run = format!("cli{}", baton::WorkflowId::new().as_uuid().simple());
    let env = vec![
        ("BATON_TRANSPORT__URL", pulsar.service_url.clone()),
        ("BATON_TRANSPORT__PULSAR__ADMIN_URL", pulsar.admin_url.clone()),
        ("BATON_TRANSPORT__PULSAR__NAMESPACE", run.clone()),
        ("BATON_STORAGE__URL", redis.url.clone()),
        ("BATON_STORAGE__PREFIX", format!("{run}:")),
    ];
    let mut tag_args = vec!["--workflow", "Booking"];
    for service in booking::SERVICES {
        tag_args.extend(["--service", service]);
    }
    let books = format!("{run}:books:");
    let mut components = vec![
        ComponentProcess::start("workflow-engine", &["--workflow", "Booking"], &env),
        ComponentProcess::start("tag-engine", &tag_args, &env),
        ComponentProcess::start(
            "booking-worker",
            &[
                "--ledger-url",
                &redis.url,
                "--ledger-prefix",
                &books,
                "--transient-rate",
                "0",
                "--business-rate",
                "0",
            ],
            &env,
        ),
    ];
    for component in &mut components {
        component.wait_ready_status(200, Duration::from_secs(120));
    }
    Cluster {
        env,
        _components: components,
        _pulsar: pulsar,
        _redis: redis,
    }
}

#[test]
fn commands_against_a_running_cluster_exit_with_the_documented_codes() {
    let cluster = cluster();
    let env = &cluster.env;
    let input = serde_json::to_string(&booking::request(7)).expect("input");

    // A booking that completes: its result on stdout, exit 0.
    let (output, _) = baton(
        env,
        &["--timeout", "60", "start", "Booking", &input, "--tag", "cli", "--wait"],
    );
    expect(&output, 0, "", "start --wait");
    assert!(stdout(&output).contains("Booked"), "{}", stdout(&output));

    // Started without waiting: the id, once an engine took it.
    let (output, _) = baton(env, &["--timeout", "30", "start", "Booking", &input, "--tag", "cli"]);
    expect(&output, 0, "", "start");
    let started = stdout(&output).trim().to_string();
    assert!(started.parse::<baton::WorkflowId>().is_ok(), "{started}");
    let (output, _) = baton(env, &["--timeout", "60", "result", "Booking", &started]);
    expect(&output, 0, "", "result");

    // Unknown instances: exit 3, within seconds rather than at the timeout (a wait, signal,
    // cancel or repair of an id not stored yet is deferred a few times first, in case it
    // overtook its start).
    let unknown = baton::WorkflowId::new().to_string();
    for args in [
        vec!["--timeout", "20", "result", "Booking", &unknown],
        vec!["--timeout", "20", "status", "Booking", &unknown],
        vec!["--timeout", "20", "cancel", "Booking", "--id", &unknown],
        vec!["--timeout", "20", "signal", "Booking", "--id", &unknown, "go", "1"],
        vec!["--timeout", "20", "retry-workflow-task", "Booking", "--id", &unknown],
        vec!["--timeout", "20", "complete-timers", "Booking", "--id", &unknown],
    ] {
        let (output, took) = baton(env, &args);
        expect(&output, 3, "is unknown", &format!("{args:?}"));
        assert!(took < Duration::from_secs(15), "{args:?} took {took:?}");
    }

    // Input the workflow cannot decode: the workflow-task failure is reported, exit 1; the
    // instance stays, findable by tag, until it is repaired or cancelled.
    let (output, took) = baton(
        env,
        &[
            "--timeout",
            "30",
            "start",
            "Booking",
            "\"just a string\"",
            "--tag",
            "stuck",
            "--wait",
        ],
    );
    expect(&output, 1, "workflow task failed", "undecodable input");
    assert!(stderr(&output).contains("retry-workflow-task"), "{}", stderr(&output));
    assert!(took < Duration::from_secs(25), "took {took:?}");
    let stuck = stderr(&output)
        .split_whitespace()
        .find_map(|word| word.parse::<baton::WorkflowId>().ok())
        .expect("the stuck instance's id in the message")
        .to_string();
    let (output, _) = baton(env, &["--timeout", "30", "list", "Booking", "--tag", "stuck"]);
    expect(&output, 0, "", "list");
    assert_eq!(stdout(&output).trim(), stuck, "list --tag");
    let (output, _) = baton(
        env,
        &["--timeout", "30", "retry-workflow-task", "Booking", "--id", &stuck],
    );
    expect(&output, 0, "", "retry-workflow-task of a known instance");
    let (output, _) = baton(env, &["--timeout", "30", "cancel", "Booking", "--tag", "stuck"]);
    expect(&output, 0, "", "cancel by tag");
    let (output, _) = baton(env, &["--timeout", "30", "result", "Booking", &stuck]);
    expect(&output, 1, "cancelled", "result of a cancelled instance");

    // A workflow no engine serves: said so, exit 4, within the timeout. The timeout leaves
    // room for connecting to the broker on a loaded machine (a connection that takes all of
    // it is reported as the broker not answering, which is not what this case checks).
    for args in [
        vec!["--timeout", "8", "start", "Nobody", "{}"],
        vec!["--timeout", "8", "start", "Nobody", "{}", "--wait"],
        vec!["--timeout", "8", "list", "Nobody", "--tag", "x"],
        vec!["--timeout", "8", "cancel", "Nobody", "--tag", "x"],
    ] {
        let (output, took) = baton(env, &args);
        expect(&output, 4, "answered for workflow `Nobody`", &format!("{args:?}"));
        assert!(took < Duration::from_secs(16), "{args:?} took {took:?}");
    }

    // Cancelling a known instance (here one that already ended) succeeds.
    let (output, _) = baton(env, &["--timeout", "30", "cancel", "Booking", "--id", &started]);
    expect(&output, 0, "", "cancel of a known instance");
}
