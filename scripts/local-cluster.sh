#!/usr/bin/env bash
# Runs the booking saga on a local multi-process cluster: Redis, a tansu broker, two
# workflow-engine replicas, a tag-engine, a timer-service and two booking workers. Mid-run it
# SIGKILLs one engine and one worker and restarts them, then checks every booking's side effects.
#
#   scripts/local-cluster.sh --workflows 500
#
# Flags go to `cluster-booking` (see `--help`), e.g. `--redis-url redis://127.0.0.1:6379/0` and
# `--kafka 127.0.0.1:9092` to use servers that are already running.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/servers.sh
source scripts/servers.sh

step "building the binaries (release)"
cargo build --release --workspace --bins --locked

step "running the cluster"
exec target/release/cluster-booking "$@"
