# Sourced by the scripts: installs the servers Baton runs on locally, once, reusing what is
# already installed. Each program then starts its own on free loopback ports.

step() { printf '\n== %s\n' "$*"; }

# Redis, the state store.
if ! command -v redis-server >/dev/null 2>&1; then
  step "installing redis-server"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi

# tansu, a Kafka-compatible broker written in Rust. Building it takes about 17 minutes on two
# cores, so an existing binary is reused.
if ! command -v tansu >/dev/null 2>&1 && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ]; then
  step "installing the tansu broker (once; about 17 minutes)"
  cargo install tansu --locked --features dynostore,libsql
fi
