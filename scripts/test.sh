#!/usr/bin/env bash
# The whole test suite, the same locally and in CI: formatting, lints, doc tests and every
# test of every crate. Installs what it needs and reuses what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

# Servers the tests start themselves (each test on its own free loopback port).
if ! command -v redis-server >/dev/null 2>&1; then
  step "installing redis-server"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi

# tansu, a Kafka-compatible broker written in Rust, for the Kafka transport's tests. Building it
# takes about 17 minutes on two cores, so an existing binary is reused.
if ! command -v tansu >/dev/null 2>&1 && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ]; then
  step "installing the tansu broker (once; about 17 minutes)"
  cargo install tansu --locked --features dynostore,libsql
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  step "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

step "formatting"
cargo fmt --all -- --check

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "doc tests"
cargo test --workspace --doc --locked --quiet

step "tests"
cargo nextest run --workspace --locked --no-fail-fast
