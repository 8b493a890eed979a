//! The benchmark program end to end, on a tiny in-memory run: the spec's line, the JSON file,
//! and refusals of bad input.

use std::process::Command;

fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_baton-bench"))
}

#[test]
fn a_small_in_memory_run_prints_the_spec_line_and_writes_the_json() {
    let json = std::env::temp_dir().join(format!("baton-bench-{}.json", std::process::id()));
    let output = bench()
        .args([
            "booking",
            "--topology",
            "memory",
            "-n",
            "20",
            "-c",
            "4",
            "--warmup",
            "2",
            "--json",
        ])
        .arg(&json)
        .output()
        .expect("run baton-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout.lines().last().unwrap_or_default();
    assert!(
        line.starts_with("baton-memory: N=20 C=4 ok=20 errors=0 wall="),
        "{line}"
    );
    assert!(line.contains(" wf/s p50=") && line.ends_with("ms"), "{line}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON file")).expect("JSON");
    std::fs::remove_file(&json).ok();
    assert_eq!(report["N"], 20);
    assert_eq!(report["ok"], 20);
    assert_eq!(report["label"], "baton-memory");
    assert!(report["throughput_wf_s"].as_f64().unwrap_or(0.0) > 0.0);
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let output = bench().args(["booking", "-n", "0"]).output().expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("-n"));
    let output = bench().args(["sweep", "--steps", "0"]).output().expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("positive step counts"));
}

/// Sends one HTTP/1.1 request and returns the status code and body.
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn the_http_form_answers_with_the_workflow_result_and_refuses_bad_bodies() {
    use std::io::BufRead;
    let mut server = bench()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the server");
    let mut first = String::new();
    std::io::BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("the listening line");
    let addr = first.trim().rsplit(' ').next().unwrap_or_default().to_string();
    let input = r#"{"customer":"customer-1","flight":"LH123","hotel":"Hotel Adlon","amountCents":12345}"#;
    let (status, body) = http(&addr, "POST", "/booking/t-run-1/run", input);
    let (again, body_again) = http(&addr, "POST", "/booking/t-run-1/run", input);
    let (bad, bad_body) = http(&addr, "POST", "/booking/t-run-2/run", r#"{"customer":1}"#);
    server.kill().ok();
    server.wait().ok();
    assert_eq!(status, 200, "{body}");
    let result: serde_json::Value = serde_json::from_str(&body).expect("JSON result");
    assert_eq!(
        result,
        serde_json::json!({"bookingId": "t-run-1", "ok": true, "steps": ["payment", "flight", "hotel", "notify"]})
    );
    assert_eq!((again, body_again), (200, body), "the same key is the same instance");
    assert_eq!(bad, 400, "{bad_body}");
    assert!(bad_body.contains("booking input"), "{bad_body}");
}

#[test]
fn a_small_run_on_separate_processes_measures_each_of_them() {
    let bin_dir = baton_test_support::built_binaries();
    let json = std::env::temp_dir().join(format!("baton-bench-processes-{}.json", std::process::id()));
    let output = bench()
        .args([
            "booking",
            "--topology",
            "processes",
            "--transport",
            "pulsar",
            "--mode",
            "fast",
            "-n",
            "10",
            "-c",
            "2",
            "--warmup",
            "2",
            "--bin-dir",
        ])
        .arg(bin_dir)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run baton-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout.lines().last().unwrap_or_default();
    assert!(
        line.starts_with("baton-processes-pulsar-fast: N=10 C=2 ok=10 errors=0"),
        "{line}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON file")).expect("JSON");
    std::fs::remove_file(&json).ok();
    for role in ["driver", "engine", "timer", "tag", "worker", "redis", "broker"] {
        let process = &report["processes"][role];
        assert!(process["peak_rss_kib"].as_u64().unwrap_or(0) > 0, "{role}: {process}");
    }
    assert!(
        report["processes"]["engine"]["cpu_seconds"].as_f64().unwrap_or(0.0) > 0.0,
        "the engine process did the work: {report}"
    );
}

#[test]
fn a_missing_component_binary_is_reported_before_anything_starts() {
    let output = bench()
        .args(["booking", "--topology", "processes", "--bin-dir", "/nonexistent/baton"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/nonexistent/baton/workflow-engine not found"),
        "{stderr}"
    );
}
