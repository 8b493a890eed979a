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
#
# Functions, so that scripts/test.sh can run the downloads beside the compilation:
#   install_system_packages [--browser]   the Debian packages (Chromium and Node.js with --browser)
#   install_playwright                     Playwright's library (npm ci)
#   resolve_broker_jars                    the brokers' jars into ~/.m2 (Maven Central)
#   install_servers                        all three, for the scripts that run a local cluster

# shellcheck source=scripts/steps.sh
source "$(dirname "${BASH_SOURCE[0]}")/steps.sh"

install_system_packages() {
  local missing=()
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
  # openssl makes the test certificates of the TLS tests (test-support/src/tls.rs).
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v mvn >/dev/null 2>&1 || missing+=(maven)
  if [ "${1:-}" = "--browser" ]; then
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v node >/dev/null 2>&1 || missing+=(nodejs npm)
  fi
  if ! java -version 2>&1 | grep -qE 'version "(1[7-9]|[2-9][0-9])'; then
    missing+=(openjdk-17-jre-headless)
  fi
  [ "${#missing[@]}" -gt 0 ] || return 0
  echo "installing ${missing[*]} (Debian packages)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Playwright's library only (it drives the Debian Chromium; it downloads no browser).
install_playwright() {
  local dir="integration-tests/browser"
  if [ -f "$dir/node_modules/.package-lock.json" ] && cmp -s "$dir/package-lock.json" "$dir/node_modules/.lock-copy"; then
    return 0
  fi
  echo "installing Playwright (npm ci in $dir)"
  (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent && cp package-lock.json node_modules/.lock-copy)
}

# The brokers' jars (a few hundred MB the first time; nothing to download after that), so no
# test waits for Maven. The same Maven goal, settings and POMs as test-support/src/maven.rs,
# which then finds every jar in ~/.m2 and caches the classpath.
resolve_broker_jars() {
  local dir="test-support/brokers" broker out
  for broker in pulsar kafka; do
    out="$(mktemp)"
    if ! mvn -B -q -s "$dir/settings.xml" -f "$dir/$broker/pom.xml" dependency:build-classpath \
      "-Dmdep.outputFile=$out"; then
      rm -f "$out"
      echo "Maven could not resolve the $broker broker from $dir/$broker/pom.xml (is Maven Central reachable?)" >&2
      return 1
    fi
    echo "$broker: $(tr ':' '\n' <"$out" | grep -c .) jars"
    rm -f "$out"
  done
}

install_servers() {
  step "system packages (Redis, protoc, Java, Maven)"
  install_system_packages
  step "resolving the Apache Pulsar and Apache Kafka brokers (Maven Central, cached in ~/.m2)"
  resolve_broker_jars
}
