#!/usr/bin/env bash
# A long fault run: the booking saga on the local multi-process cluster (Redis with AOF, a real
# broker, two engines, a tag engine, a timer service, two workers, the HTTP API) with faults
# picked at random from every kind the fault suite knows (SIGKILL of each component kind, of
# several at once, SIGSTOP, Redis and broker restarts, Redis refusing writes, an engine cut off
# from Redis, a timer service an hour behind) and the chaos transport layer on, then the same
# audit as the fault suite. Ends with one line:
#
#   soak: workflows=… completed=… compensated=… failed=0 lost=0 duplicated_effects=0 faults=… elapsed_ms=…
#
# and exits non-zero when anything was lost, duplicated or left pending.
#
#   scripts/soak.sh --workflows 10000 --minutes 10
#   scripts/soak.sh --workflows 10000 --minutes 10 --transport kafka --seed 7
#
# Options (others go to `cluster-booking`, see its `--help`):
#   --workflows N         bookings to run (default 10000)
#   --minutes M           spread their starts over M minutes (default 10)
#   --chaos RATE          duplicated/reordered delivery rate in every process (default 0.02)
#   --fault-every-secs S  mean time between faults (default 20)
#   --faults LIST         the fault kinds to pick from (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."

workflows=10000
minutes=10
chaos=0.02
fault_every=20
faults=kill,kill-engine,kill-worker,kill-timer,kill-tag,kill-api,kill-all,stop,redis-outage,broker-outage,redis-refuses-writes,engine-redis-cut,timer-behind
passthrough=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --workflows | --minutes | --chaos | --fault-every-secs | --faults)
      if [[ $# -lt 2 || "$2" == --* ]]; then
        echo "soak.sh: $1 needs a value" >&2
        exit 2
      fi
      case "$1" in
        --workflows) workflows="$2" ;;
        --minutes) minutes="$2" ;;
        --chaos) chaos="$2" ;;
        --fault-every-secs) fault_every="$2" ;;
        --faults) faults="$2" ;;
      esac
      shift 2
      ;;
    -h | --help)
      sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      passthrough+=("$1")
      shift
      ;;
  esac
done
if ! [[ "$workflows" =~ ^[1-9][0-9]*$ ]]; then
  echo "soak.sh: --workflows must be a positive whole number, not '$workflows'" >&2
  exit 2
fi

# shellcheck source=scripts/servers.sh
source scripts/servers.sh
install_servers

step "building the binaries (release)"
cargo build --release --workspace --bins --features baton-examples/cluster --locked

step "soaking: $workflows bookings over $minutes minutes, random faults every ~${fault_every}s, chaos $chaos"
log="$(mktemp -t baton-soak.XXXXXX)"
status=0
target/release/cluster-booking \
  --workflows "$workflows" \
  --minutes "$minutes" \
  --random-faults \
  --fault "$faults" \
  --fault-every-secs "$fault_every" \
  --chaos "$chaos" \
  --concurrency 400 \
  --hold-ms 200 \
  --timeout-secs 600 \
  "${passthrough[@]}" | tee "$log" || status=$?

line="$(grep '^cluster-booking:' "$log" || true)"
rm -f "$log"
if [[ -z "$line" ]]; then
  echo "soak: the run ended without a summary (exit $status)" >&2
  exit 1
fi
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
echo "soak: workflows=$(field workflows) completed=$(field completed) compensated=$(field compensated)" \
  "failed=$(field failed) lost=$(field lost) duplicated_effects=$(field duplicated_effects)" \
  "faults=$(field faults) elapsed_ms=$(field elapsed_ms)"
exit "$status"
