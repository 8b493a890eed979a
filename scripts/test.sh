#!/usr/bin/env bash
# The test suite, the same locally and in CI. Installs what it needs and reuses what is
# already installed, and ends with each step's wall time.
#
#   ./scripts/test.sh           everything (CI runs this): formatting, lints, doc tests, every
#                               test of every crate on real Redis, Pulsar and Kafka brokers and
#                               a real browser, the Kubernetes chart checks, fuzzing, the API
#                               contract
#   ./scripts/test.sh --quick   the edit loop: formatting, lints and the tests that run in one
#                               process (unit, embedded, replay, decision tests); no server,
#                               broker or browser, and nothing installed but cargo-nextest
#
# Everything is compiled once, in one profile and with one feature selection: the binaries, the
# test binaries and the doc tests share their artifacts, and a test that builds the binaries
# itself finds them current. Downloads (Maven, npm, PyPI, Helm) run beside the compilation.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=full
case "${1:-}" in
  "") ;;
  --quick) mode=quick ;;
  -h | --help)
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "test.sh: unknown argument '$1' (use --quick for the edit loop, or nothing for everything)" >&2
    exit 2
    ;;
esac
[ $# -le 1 ] || { echo "test.sh: one argument at most (--quick)" >&2; exit 2; }

# shellcheck source=scripts/tools.sh
source scripts/tools.sh
# shellcheck source=scripts/servers.sh
source scripts/servers.sh # and with it scripts/steps.sh
trap 'code=$?; [ -z "${BATON_TEST_SWEEP:-}" ] || "$BATON_TEST_SWEEP" sweep >/dev/null 2>&1 || true; timing_summary "$code"' EXIT

# Incremental compilation helps edit-compile loops, not one full run, and doubles the disk a
# full run takes.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# One selection for every cargo command here and for the binaries' build inside the tests
# (test-support/src/binaries.rs): every crate, every feature. A different selection would
# resolve the dependencies' features differently and compile the workspace a second time.
selection=(--workspace --all-features --locked)
# Servers that tests killed by a timeout left behind are stopped at exit by this binary.
sweeper="target/debug/test-servers"

status=0

step "cargo-nextest and cargo-fuzz (prebuilt, from PyPI)"
use_cargo_tool nextest 0.9.148
[ "$mode" = quick ] || use_cargo_tool fuzz 0.13.2

if [ "$mode" = full ]; then
  step "system packages (Redis, protoc, Java, Maven, Chromium, Node.js)"
  # protoc first: the Pulsar client crate needs it to compile.
  install_system_packages --browser
  [ ! -x "$sweeper" ] || "$sweeper" sweep

  # Downloads beside the compilation; each is awaited where it is first needed. Helm is built
  # by Go at a low priority, so it takes the cores only where the Rust build leaves them idle.
  background "broker jars (Maven Central)" resolve_broker_jars
  background "Playwright (npm)" install_playwright
  background "Helm, hadolint, kubernetes-validate" nice -n 10 ./scripts/k8s-check.sh --install
  background "schemathesis (PyPI)" ./scripts/api-contract.sh --install
fi

step "formatting"
cargo fmt --all -- --check

step "lints"
cargo clippy "${selection[@]}" --all-targets -- -D warnings

if [ "$mode" = quick ]; then
  step "tests that run in one process (nextest profile 'quick')"
  # test-support refuses to start a server or a binary under this variable, so a test that
  # needs one and is not excluded by the profile fails with a message saying so.
  TEST_TIER=quick cargo nextest run "${selection[@]}" --profile quick --no-fail-fast || { status=$?; step_failed; }
  steps_end
  exit "$status"
fi

step "build: binaries and test binaries"
# The cluster tests run the binaries as separate processes.
cargo build "${selection[@]}" --bins --tests
BATON_TEST_SWEEP="$sweeper"

step "doc tests"
cargo test "${selection[@]}" --doc --quiet || { status=$?; step_failed; }

step "build: fuzz targets (release, with sanitizers)"
./scripts/fuzz.sh --build || { status=$?; step_failed; }

step "Kubernetes packaging (hadolint, helm lint, helm template, Kubernetes schemas)"
await "Helm, hadolint, kubernetes-validate" && ./scripts/k8s-check.sh || { status=$?; step_failed; }

step "test servers ready"
# The jars are in ~/.m2 now: the first test to start a broker only writes its classpath.
await "broker jars (Maven Central)" || { status=$?; step_failed; }
await "Playwright (npm)" || { status=$?; step_failed; }

step "tests"
cargo nextest run "${selection[@]}" --no-fail-fast || { status=$?; step_failed; }

step "fuzzing the decoders (cargo fuzz, 20 s per target)"
./scripts/fuzz.sh --seconds 20 || { status=$?; step_failed; }

step "API contract (schemathesis against /openapi.json)"
await "schemathesis (PyPI)" && ./scripts/api-contract.sh || { status=$?; step_failed; }

steps_end
exit "$status"
