#!/usr/bin/env bash
# Fuzzes Baton's decoders with libFuzzer (cargo fuzz): every topic's message envelope, stored
# workflow states with their histories, and the other stored records. The checks are in
# fuzz-checks/ (a decoder must refuse bad bytes without panicking, and what it accepts must
# round-trip). Seeds are the golden wire fixtures. A crash is copied into
# fuzz/regressions/{target}/, which `cargo test -p baton-fuzz-checks` replays for good.
#
#   scripts/fuzz.sh                   each target for 20 s (what ./scripts/test.sh runs)
#   scripts/fuzz.sh --seconds 600     longer runs; the corpus in fuzz/corpus/ is kept between runs
#   scripts/fuzz.sh --build           only builds the targets
#
# Runs on stable Rust: RUSTC_BOOTSTRAP=1 lets it take the sanitizer flags cargo fuzz passes.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=20
build_only=false
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="${2:?--seconds needs a number}"; shift 2 ;;
    --build) build_only=true; shift ;;
    *) echo "fuzz.sh: unknown argument $1 (use --seconds N or --build)" >&2; exit 2 ;;
  esac
done
case "$seconds" in ''|*[!0-9]*) echo "fuzz.sh: --seconds takes a whole number, not $seconds" >&2; exit 2 ;; esac

# shellcheck source=scripts/tools.sh
source scripts/tools.sh
use_cargo_tool fuzz 0.13.2
export RUSTC_BOOTSTRAP=1

# Seeds: each golden fixture, with the byte that picks its message enum for `envelope`
# (the order of MESSAGE_KINDS in fuzz-checks/src/lib.rs).
kinds=(engine workflow service timer client task tag)
seeds="$(mktemp -d)"
trap 'rm -rf "$seeds"' EXIT
mkdir -p "$seeds/envelope" "$seeds/stored_workflow" "$seeds/stored_record"
for fixture in shared-schemas/tests/fixtures/*.bin; do
  name="$(basename "$fixture" .bin)"
  prefix="${name%%_*}"
  for i in "${!kinds[@]}"; do
    if [ "${kinds[$i]}" = "$prefix" ]; then
      { printf "\\x$(printf '%02x' "$i")"; cat "$fixture"; } >"$seeds/envelope/$name"
    fi
  done
  cp "$fixture" "$seeds/stored_workflow/$name"
  { printf '\x02'; cat "$fixture"; } >"$seeds/stored_record/$name"
done

cd fuzz
cargo fuzz build -O
if [ "$build_only" = true ]; then exit 0; fi
status=0
for target in envelope stored_workflow stored_record; do
  mkdir -p "corpus/$target" "artifacts/$target" "regressions/$target"
  printf '\n== fuzzing %s for %ss\n' "$target" "$seconds"
  if ! cargo fuzz run -O "$target" "corpus/$target" "$seeds/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
      >"artifacts/$target.log" 2>&1; then
    status=1
    tail -40 "artifacts/$target.log"
    for crash in "artifacts/$target"/*; do
      [ -f "$crash" ] || continue
      cp "$crash" "regressions/$target/"
      echo "fuzz.sh: $target crashed; input kept as fuzz/regressions/$target/$(basename "$crash") (commit it with the fix)" >&2
    done
  else
    grep -E '^stat::(number_of_executed_units|new_units_added|peak_rss_mb)' "artifacts/$target.log" | tr '\n' ' '
    echo
  fi
done
exit "$status"
