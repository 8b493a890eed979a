# Sourced by the scripts: installs what Baton's tests and local clusters run on, once, reusing
# what is already installed. Each program then starts its own servers on free loopback ports.
#
# - redis-server (Debian package): the state store;
# - protoc (Debian package protobuf-compiler): the Pulsar client crate compiles its protocol;
# - Java 17+ and Maven (Debian packages): the real Apache Pulsar and Apache Kafka brokers run
#   as JVM processes, their jars resolved once from Maven Central into ~/.m2 by the POMs in
#   test-support/brokers/.
# - Chromium (Debian package) and Playwright (npm, integration-tests/browser): the dashboard's
#   test drives a real headless browser.

step() { printf '\n== %s\n' "$*"; }

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
# openssl makes the test certificates of the TLS tests (test-support/src/tls.rs).
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs npm)
if ! java -version 2>&1 | grep -qE 'version "(1[7-9]|[2-9][0-9])'; then
  missing+=(openjdk-17-jre-headless)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  step "installing ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Playwright's library only (it drives the Debian Chromium; it downloads no browser).
browser_dir="integration-tests/browser"
if [ ! -f "$browser_dir/node_modules/.package-lock.json" ] || ! cmp -s "$browser_dir/package-lock.json" "$browser_dir/node_modules/.lock-copy"; then
  step "installing Playwright (npm ci in $browser_dir)"
  (cd "$browser_dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent && cp package-lock.json node_modules/.lock-copy)
fi

# The brokers' jars (a few hundred MB the first time; nothing to download after that), so no
# test waits for Maven. Also stops servers left behind by test processes that were killed.
step "resolving the Apache Pulsar and Apache Kafka brokers (Maven Central, cached in ~/.m2)"
cargo run --quiet --locked -p baton-test-support --bin test-servers -- sweep
cargo run --quiet --locked -p baton-test-support --bin test-servers -- resolve
