#!/usr/bin/env bash
# The whole test suite, the same locally and in CI: formatting, lints, doc tests and every
# test of every crate. Installs what it needs and reuses what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
# Incremental compilation helps edit-compile loops, not one full run, and doubles the disk a
# full run takes.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# Redis, protoc, Java and Maven, and the brokers' jars; the tests start the servers themselves.
# shellcheck source=scripts/servers.sh
source scripts/servers.sh

if ! cargo nextest --version >/dev/null 2>&1; then
  step "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

step "formatting"
cargo fmt --all -- --check

step "lints"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "doc tests"
cargo test --workspace --doc --locked --quiet

step "binaries (the cluster test runs them as separate processes)"
cargo build --workspace --bins --features baton-examples/cluster --locked

status=0
step "Kubernetes packaging (hadolint, helm lint, helm template, Kubernetes schemas)"
# Also installs the Helm that tests/kubernetes.rs renders the chart with.
./scripts/k8s-check.sh || status=$?

step "tests"
cargo nextest run --workspace --locked --no-fail-fast || status=$?

step "fuzzing the decoders (cargo fuzz, 20 s per target)"
./scripts/fuzz.sh --seconds 20 || status=$?

step "API contract (schemathesis against /openapi.json)"
./scripts/api-contract.sh || status=$?

# Servers of test processes that were killed (a timeout) are stopped here, not left running.
cargo run --quiet --locked -p baton-test-support --bin test-servers -- sweep
exit "$status"
