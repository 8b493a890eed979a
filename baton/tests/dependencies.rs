//! An application that depends on `baton` for embedded mode compiles no broker client, Redis
//! client, HTTP stack or command-line parser unless it turns the feature on.
#![allow(missing_docs)]

use std::process::Command;

/// The crates `cargo tree` lists for `baton` with `features`, one name per line.
fn tree(features: &[&str]) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.args([
        "tree",
        "--offline",
        "-p",
        "baton",
        "-e",
        "normal",
        "--prefix",
        "none",
        "--format",
        "{lib}",
    ]);
    if !features.is_empty() {
        command.args(["--features", &features.join(",")]);
    }
    let output = command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo tree");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line.split_whitespace().next().unwrap_or_default().to_string())
        .collect()
}

const HEAVY: [&str; 9] = [
    "redis",
    "rdkafka",
    "pulsar",
    "reqwest",
    "hyper",
    "axum",
    "clap",
    "figment",
    "baton_server",
];

#[test]
fn embedded_mode_compiles_no_backend_client_server_or_parser() {
    let crates = tree(&[]);
    assert!(crates.iter().any(|c| c == "baton"), "{crates:?}");
    for heavy in HEAVY {
        assert!(
            !crates.iter().any(|c| c == heavy),
            "`baton` without features pulls in {heavy}"
        );
    }
}

#[test]
fn each_backend_comes_with_its_feature() {
    for (feature, dependency) in [
        ("redis", "redis"),
        ("pulsar", "pulsar"),
        ("kafka", "rdkafka"),
        ("http-bridge", "reqwest"),
    ] {
        let crates = tree(&[feature]);
        assert!(
            crates.iter().any(|c| c == dependency),
            "feature {feature} must bring {dependency}"
        );
    }
}
