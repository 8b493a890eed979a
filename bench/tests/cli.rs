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
