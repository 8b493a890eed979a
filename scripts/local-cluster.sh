#!/usr/bin/env bash
# Runs the booking saga on a local multi-process cluster: Redis, a real broker (Apache Pulsar by
# default, Apache Kafka with --transport kafka), two workflow-engine replicas, a tag-engine, a
# timer-service and two booking workers. Mid-run it SIGKILLs one engine and one worker and
# restarts them, then checks every booking's side effects.
#
#   scripts/local-cluster.sh --workflows 500
#   scripts/local-cluster.sh --workflows 500 --transport kafka
#
# Flags go to `cluster-booking` (see `--help`), e.g. `--redis-url redis://127.0.0.1:6379/0` and
# `--broker-url pulsar://127.0.0.1:6650` to use servers that are already running.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/servers.sh
source scripts/servers.sh
install_servers

step "building the binaries (release)"
cargo build --release --workspace --bins --features baton-examples/cluster --locked

step "running the cluster"
exec target/release/cluster-booking "$@"
