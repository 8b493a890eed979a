# Sourced by the scripts: installs what Baton's tests and local clusters run on, once, reusing
# what is already installed. Each program then starts its own servers on free loopback ports.
#
# - redis-server (Debian package): the state store;
# - protoc (Debian package protobuf-compiler): the Pulsar client crate compiles its protocol;
# - Java 17+ and Maven (Debian packages): the real Apache Pulsar and Apache Kafka brokers run
#   as JVM processes, their jars resolved once from Maven Central into ~/.m2 by the POMs in
#   test-support/brokers/.

step() { printf '\n== %s\n' "$*"; }

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
if ! java -version 2>&1 | grep -qE 'version "(1[7-9]|[2-9][0-9])'; then
  missing+=(openjdk-17-jre-headless)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  step "installing ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The brokers' jars (a few hundred MB the first time; nothing to download after that), so no
# test waits for Maven. Also stops servers left behind by test processes that were killed.
step "resolving the Apache Pulsar and Apache Kafka brokers (Maven Central, cached in ~/.m2)"
cargo run --quiet --locked -p baton-test-support --bin test-servers -- sweep
cargo run --quiet --locked -p baton-test-support --bin test-servers -- resolve
